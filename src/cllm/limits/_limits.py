"""`Limits`: concurrency, requests per minute and tokens per minute, per model, waited for in order."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from cllm.limits.store import Bucket, LimiterStore, MemoryStore, default_store

__all__ = ["Limits", "Permit"]

# How often a request waiting for a concurrency slot asks the store again. Releases in this process
# wake it at once; this only matters for a store shared with other processes.
_SLOT_POLL = 0.25
_names = itertools.count(1)
# Lateness of a waiter's wake-up (seconds) that is caught up rather than added to the schedule: a
# busy event loop (LiteLLM's set-up of each call holds it for milliseconds) wakes waiters late.
_SLACK = 0.1


def _positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


class _Waiter:
    """One request in the queue. Woken from any thread or event loop."""

    __slots__ = ("_future", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] | None = None

    async def sleep(self, timeout: float | None) -> None:
        """Until `wake` or ``timeout`` seconds, whichever comes first."""
        self._future = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._future
        except TimeoutError:
            pass
        finally:
            self._future = None

    def wake(self) -> None:
        def done() -> None:
            future = self._future
            if future is not None and not future.done():
                future.set_result(None)

        if self._loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            done()
        else:
            self._loop.call_soon_threadsafe(done)


class _Queue:
    """The requests waiting for one model, first come first served: only the head asks the store,
    so a large reservation is never starved by smaller ones behind it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    def __len__(self) -> int:
        return len(self._waiters)

    def join(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.append(waiter)

    def is_head(self, waiter: _Waiter) -> bool:
        with self._lock:
            return bool(self._waiters) and self._waiters[0] is waiter

    def leave(self, waiter: _Waiter) -> None:
        with self._lock:
            head = bool(self._waiters) and self._waiters[0] is waiter
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return
            following = self._waiters[0] if head and self._waiters else None
        if following is not None:
            following.wake()

    def wake_head(self) -> None:
        with self._lock:
            head = self._waiters[0] if self._waiters else None
        if head is not None:
            head.wake()


@dataclass(eq=False)
class Permit:
    """What one admitted request holds: a concurrency slot (when limited) and its token reservation.

    `finish` gives both back; it is safe to call more than once (only the first call counts).
    """

    limits: Limits
    model: str
    holder: str
    tokens: int
    _done: bool = field(default=False, init=False)

    async def finish(self, used_tokens: int | None, *, refund: bool = False) -> None:
        """Release the slot and settle the token reservation.

        ``refund``: the request cost nothing (it failed before the provider produced anything);
        else ``used_tokens`` is what the provider reported, and None keeps the estimate.
        """
        if self._done:
            return
        self._done = True
        await self.limits._finish(self, used_tokens, refund=refund)


class Limits:
    """Concurrency, requests per minute and tokens per minute for calls to a model.

    Any subset may be given. The limits apply per model: each model a `Limits` is used with gets
    its own budget, shared by everything in the process that uses this object (threads, event
    loops, the sync and async APIs, `batch`). A request waits, in order of arrival, until it fits;
    it never fails for want of capacity, and waiting can be cancelled.

    Requests and tokens are both metered by GCRA (see `cllm.limits.store`): requests are spaced
    ``60 / rpm`` seconds apart; a request reserves its prompt's tokens plus ``max_tokens`` (or
    ``reserve_tokens`` when not given) before it is sent, and is settled with the usage the
    provider reports (refunded in full if it fails before any output). A provider's 429 with a
    ``Retry-After`` pauses that model for every `Limits` on the same store.

    Args:
        concurrency: most requests in flight at once; a slot is held until the stream ends, is
            closed or is cancelled.
        rpm: requests per minute.
        tpm: tokens (prompt plus completion) per minute.
        reserve_tokens: the completion tokens reserved when a request sets no ``max_tokens``.
        name: the prefix of this object's keys in the store (objects with one name share budgets;
            by default each object has its own).
        store: where the state lives (default: the process-wide `MemoryStore`).
    """

    def __init__(
        self,
        concurrency: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        reserve_tokens: int = 1024,
        name: str | None = None,
        store: LimiterStore | None = None,
    ) -> None:
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.concurrency = concurrency
        self.rpm = _positive("rpm", rpm)
        self.tpm = _positive("tpm", tpm)
        if isinstance(reserve_tokens, bool) or not isinstance(reserve_tokens, int) or reserve_tokens < 0:
            raise ValueError(f"reserve_tokens must be a non-negative integer, got {reserve_tokens!r}")
        self.reserve_tokens = reserve_tokens
        self.name = name or f"limits-{next(_names)}"
        self.store: LimiterStore = store if store is not None else default_store()
        self._queues: dict[str, _Queue] = {}
        self._lock = threading.Lock()
        self._holders = itertools.count(1)

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k in ("concurrency", "rpm", "tpm") if (v := getattr(self, k)) is not None]
        return f"Limits({', '.join(parts)})"

    # -- keys -------------------------------------------------------------------------------------

    def _key(self, model: str, what: str) -> str:
        return f"cllm:{self.name}:{model}:{what}"

    @staticmethod
    def pause_key(model: str) -> str:
        """The store key a 429 from ``model`` pauses (one per model, whatever the `Limits`)."""
        return f"cllm:pause:{model}"

    def _buckets(self, model: str, tokens: int) -> list[Bucket]:
        buckets = []
        if self.rpm is not None:
            interval = 60.0 / self.rpm
            buckets.append(Bucket(self._key(model, "rpm"), 1.0, interval, min(_SLACK, interval / 2)))
        if self.tpm is not None and tokens > 0:
            buckets.append(Bucket(self._key(model, "tpm"), float(tokens), 60.0 / self.tpm, _SLACK))
        return buckets

    def _queue(self, model: str) -> _Queue:
        with self._lock:
            queue = self._queues.get(model)
            if queue is None:
                queue = self._queues[model] = _Queue()
            return queue

    # -- admission --------------------------------------------------------------------------------

    async def acquire(self, model: str, tokens: int = 0, *, wait: bool = True) -> Permit | None:
        """Wait until a request to ``model`` reserving ``tokens`` fits, and take its place.

        With ``wait=False``: the permit if it fits right now and nobody is waiting, else None
        (nothing taken). Cancelling the wait gives back whatever was taken.
        """
        queue = self._queue(model)
        holder = f"{self.name}:{next(self._holders)}"
        buckets = self._buckets(model, tokens)
        if not wait:
            if len(queue):
                return None
            return await self._try_now(model, holder, buckets, tokens)
        waiter = _Waiter()
        queue.join(waiter)
        slot = False
        try:
            while True:
                delay: float | None = None
                if queue.is_head(waiter):
                    if self.concurrency is not None and not slot:
                        slot = await self.store.acquire(self._key(model, "slots"), holder, self.concurrency)
                    if slot or self.concurrency is None:
                        delay = await self.store.reserve(buckets, self.pause_key(model))
                        if delay <= 0:
                            break
                    else:
                        delay = _SLOT_POLL
                await waiter.sleep(delay)
        except BaseException:
            queue.leave(waiter)
            if slot:
                await _shielded(self.store.release(self._key(model, "slots"), holder))
                queue.wake_head()
            raise
        queue.leave(waiter)
        return Permit(self, model, holder, tokens)

    async def _try_now(self, model: str, holder: str, buckets: list[Bucket], tokens: int) -> Permit | None:
        slots = self._key(model, "slots")
        if self.concurrency is not None and not await self.store.acquire(slots, holder, self.concurrency):
            return None
        if await self.store.reserve(buckets, self.pause_key(model)) > 0:
            if self.concurrency is not None:
                await self.store.release(slots, holder)
            return None
        return Permit(self, model, holder, tokens)

    async def _finish(self, permit: Permit, used_tokens: int | None, *, refund: bool) -> None:
        model = permit.model
        if self.tpm is not None and permit.tokens > 0:
            delta = (
                -permit.tokens if refund else (None if used_tokens is None else used_tokens - permit.tokens)
            )
            if delta:
                await self.store.adjust(Bucket(self._key(model, "tpm"), float(delta), 60.0 / self.tpm))
        if self.concurrency is not None:
            await self.store.release(self._key(model, "slots"), permit.holder)
        self._queue(model).wake_head()

    async def pause(self, model: str, seconds: float) -> None:
        """Hold back every request to ``model`` for ``seconds`` (a provider asked to wait)."""
        await self.store.pause(self.pause_key(model), seconds)
        # Those waiting go back to sleep for the pause's length.
        self._queue(model).wake_head()

    def in_flight(self, model: str) -> int | None:
        """Requests to ``model`` holding a slot now (None when the store cannot tell)."""
        store = self.store
        if isinstance(store, MemoryStore):
            return store.in_use(self._key(model, "slots"))
        return None


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
