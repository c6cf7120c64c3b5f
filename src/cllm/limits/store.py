"""Where limiter state lives: the `LimiterStore` interface and its in-process implementation.

Every operation is one atomic step on the store's own clock, so that a store shared by several
processes (Redis, with one Lua script per operation and ``redis.call('TIME')``) gives the same
guarantees as the in-process one. Nothing here waits: an operation that cannot be granted says how
long to wait, and the caller (`cllm.Limits`) does the waiting, in order, cancellably.

Rates are GCRA (the generic cell rate algorithm) with a cost per reservation. A bucket is a key
holding one number, its theoretical arrival time ``tat``; ``interval`` is the seconds one unit of
cost takes at the limit's rate (``60 / rpm``, ``60 / tpm``). A reservation of cost ``c`` is granted
when ``tat <= now``, and moves ``tat`` to ``max(tat, now) + c * interval``. So in any window of
``w`` seconds the cost granted is at most ``w / interval`` plus the cost of one reservation, and
requests are spaced evenly rather than let through in bursts. A negative cost given to `adjust`
is a refund (``tat`` moves back, never before ``now``); a positive one is spending beyond the
estimate (later reservations wait longer).

A waiter wakes a little after ``tat`` (timers and busy event loops are late by milliseconds). So
that this lateness does not add up over thousands of requests, a reservation granted at most
``slack`` seconds after ``tat`` is charged from ``tat`` rather than from ``now``: the schedule
stays on its grid and nothing is ever granted before its time. The bound above grows by
``slack / interval``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Bucket", "LimiterStore", "MemoryStore", "default_store"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One rate to charge: the bucket's ``key``, the ``cost`` to reserve, the ``interval`` (seconds)
    one unit of cost takes, and the ``slack`` (seconds) of lateness that is caught up."""

    key: str
    cost: float
    interval: float
    slack: float = 0.0


class LimiterStore(Protocol):
    """The state behind `cllm.Limits`. Each method is one atomic operation on the store's clock.

    Keys are opaque strings chosen by the caller (`Limits` puts its name and the model in them).
    """

    async def reserve(self, buckets: Sequence[Bucket], pause_key: str) -> float:
        """Charge every bucket, or none: 0.0 when granted, else the seconds to wait before trying again.

        Refused while ``pause_key`` is paused (the wait is then what is left of the pause).
        """
        ...

    async def adjust(self, bucket: Bucket) -> None:
        """Add ``bucket.cost`` (negative: a refund) to a bucket without waiting."""
        ...

    async def acquire(self, key: str, holder: str, limit: int) -> bool:
        """Take one of ``limit`` concurrency slots under ``key`` for ``holder`` (True if taken, or
        already held). A shared store should expire slots whose holder died (a lease)."""
        ...

    async def release(self, key: str, holder: str) -> None:
        """Give back ``holder``'s slot under ``key`` (nothing if it holds none)."""
        ...

    async def pause(self, key: str, seconds: float) -> None:
        """Refuse reservations naming ``key`` for ``seconds`` from now (a longer pause already set wins)."""
        ...


class MemoryStore:
    """A `LimiterStore` in this process's memory, safe to share between threads and event loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._slots: dict[str, set[str]] = {}
        self._paused: dict[str, float] = {}

    @staticmethod
    def now() -> float:
        """The store's clock (monotonic seconds)."""
        return time.monotonic()

    async def reserve(self, buckets: Sequence[Bucket], pause_key: str) -> float:
        return self.reserve_now(buckets, pause_key)

    def reserve_now(self, buckets: Sequence[Bucket], pause_key: str) -> float:
        """`reserve` without the coroutine (the in-process store never blocks)."""
        with self._lock:
            now = self.now()
            paused = self._paused.get(pause_key, 0.0) - now
            if paused > 0:
                return paused
            wait = max((self._tat.get(b.key, now) - now for b in buckets), default=0.0)
            if wait > 0:
                return wait
            for b in buckets:
                tat = self._tat.get(b.key)
                base = tat if tat is not None and 0 <= now - tat <= b.slack else max(tat or now, now)
                self._tat[b.key] = base + b.cost * b.interval
            return 0.0

    async def adjust(self, bucket: Bucket) -> None:
        with self._lock:
            now = self.now()
            tat = self._tat.get(bucket.key, now) + bucket.cost * bucket.interval
            self._tat[bucket.key] = max(tat, now)

    async def acquire(self, key: str, holder: str, limit: int) -> bool:
        with self._lock:
            holders = self._slots.setdefault(key, set())
            if holder in holders:
                return True
            if len(holders) >= limit:
                return False
            holders.add(holder)
            return True

    async def release(self, key: str, holder: str) -> None:
        with self._lock:
            holders = self._slots.get(key)
            if holders is not None:
                holders.discard(holder)
                if not holders:
                    del self._slots[key]

    async def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self.now() + seconds
            if until > self._paused.get(key, 0.0):
                self._paused[key] = until

    def in_use(self, key: str) -> int:
        """How many slots under ``key`` are held (for tests and progress displays)."""
        with self._lock:
            return len(self._slots.get(key, ()))


_default = MemoryStore()


def default_store() -> MemoryStore:
    """The process-wide store every `Limits` uses unless given another: a 429's pause reaches them all."""
    return _default
