"""The async stream: one upstream LiteLLM stream driven through the core accumulator.

Everything that waits lives here; the sync facade (`cllm._sync`) runs these same coroutines on a
background event loop, so both share one implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from cllm import _provider
from cllm.core.accumulator import Chunk, StreamAccumulator
from cllm.core.events import Event, TextDelta
from cllm.core.response import Response
from cllm.errors import CllmError, StreamInterrupted, StreamTimeout

__all__ = ["AsyncStream"]

# Longest stretch of buffered chunks processed before letting other tasks run.
_YIELD_EVERY = 0.004

TimeoutKind = Literal["first_token", "idle", "total"]


class AsyncStream:
    """A streaming response, iterated with ``async for``. Made by `cllm.astream`.

    Iterating yields events as each provider chunk arrives. `response` is a snapshot while the
    stream runs and final once it has ended. Leaving the ``async with`` block, breaking out of the
    loop or `aclose` stops the stream and closes the upstream connection.
    """

    def __init__(self, request: _provider.Request) -> None:
        self._request = request
        self._acc = StreamAccumulator()
        self._upstream: Any = None
        self._chunks: AsyncIterator[Any] | None = None
        self._agen: AsyncIterator[Event] | None = None
        self._started: float | None = None
        self._last_chunk = 0.0
        self._last_yield = 0.0
        self._ttft: float | None = None
        self._duration: float | None = None
        self._final: Response | None = None
        self._exhausted = False

    # -- public ----------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._agen is None:
            self._agen = self._events()
        return self._agen

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """The text deltas only, as strings."""
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        async for event in self:
            if isinstance(event, TextDelta):
                yield event.text

    @property
    def response(self) -> Response:
        """The response so far; final once the stream has ended."""
        if self._final is not None:
            return self._final
        return self._acc.snapshot(**self._meta())

    @property
    def done(self) -> bool:
        """Whether the stream has ended (finished, failed or closed)."""
        return self._final is not None

    async def aclose(self) -> None:
        """Stop the stream and close the upstream connection. Safe to call more than once."""
        if self._agen is not None:
            await self._agen.aclose()  # type: ignore[attr-defined]
        await self._shutdown("the stream was closed by the consumer", cancelled=True)

    async def until_done(self) -> Response:
        """Consume the rest of the stream and return the final response."""
        async for _ in self:
            pass
        return self.response

    # -- the machinery shared with the sync facade -----------------------------------------------

    async def _events(self) -> AsyncIterator[Event]:
        try:
            while events := await self._next_events():
                for event in events:
                    yield event
        finally:
            await self._shutdown("the stream was closed by the consumer", cancelled=True)

    async def _next_events(self) -> list[Event]:
        """The events of the next chunk(s) that give any; an empty list once the stream has ended."""
        if self._final is not None:
            return []
        try:
            if self._chunks is None:
                await self._open()
            while True:
                if self._exhausted:
                    return self._end()
                events = await self._next_chunk_events()
                if events:
                    return events
        except asyncio.CancelledError:
            await self._shutdown("the stream was cancelled", cancelled=True)
            raise
        except CllmError:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc

    async def _open(self) -> None:
        request = self._request
        self._started = time.perf_counter()
        self._last_yield = self._started
        lib = _provider.litellm()
        try:
            coro = lib.acompletion(**request.kwargs)
            deadline = self._deadline()
            if deadline is None:
                self._upstream = await coro
            else:
                async with asyncio.timeout_at(deadline):
                    self._upstream = await coro
        except TimeoutError as exc:
            raise self._timed_out() from exc
        self._last_chunk = time.perf_counter()
        self._chunks = self._upstream.__aiter__()

    async def _next_chunk_events(self) -> list[Event]:
        assert self._chunks is not None
        deadline = self._deadline()
        try:
            if deadline is None:
                chunk = await self._chunks.__anext__()
            else:
                async with asyncio.timeout_at(deadline):
                    chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._exhausted = True
            return []
        except TimeoutError as exc:
            raise self._timed_out() from exc
        except Exception:
            if self._acc.finished:
                # The provider had already said it was done; a connection dropped afterwards loses nothing.
                self._exhausted = True
                return []
            raise
        now = time.perf_counter()
        self._last_chunk = now
        events = self._acc.feed(_provider.to_chunk(chunk, self._upstream))
        if events and self._ttft is None and self._started is not None:
            self._ttft = now - self._started
        if now - self._last_yield > _YIELD_EVERY:
            # LiteLLM never suspends while chunks are buffered: let other tasks run. Twice, because
            # timers that fell due meanwhile are queued behind this task's first wake-up.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            self._last_yield = time.perf_counter()
        return events

    def _end(self) -> list[Event]:
        usage = _provider.reported_usage(self._upstream)
        if usage is not None:
            self._acc.feed(Chunk(usage=usage))
        events = self._acc.end()
        self._finalize()
        return events

    def _meta(self) -> dict[str, Any]:
        duration = self._duration
        if duration is None and self._started is not None:
            duration = time.perf_counter() - self._started
        return {"model": self._acc.model or self._request.model, "ttft": self._ttft, "duration": duration}

    def _finalize(self) -> Response:
        if self._final is None:
            if self._started is not None:
                self._duration = time.perf_counter() - self._started
            meta = self._meta()
            usage = self._acc.usage
            meta["cost"] = _provider.cost(self._request.model, self._request.provider, usage)
            if meta["cost"] is None and self._acc.model:
                meta["cost"] = _provider.cost(self._acc.model, self._request.provider, usage)
            self._final = self._acc.snapshot(**meta)
        return self._final

    async def _shutdown(self, reason: str, *, cancelled: bool) -> None:
        """Close the upstream connection if it is open and settle the response."""
        upstream, self._upstream = self._upstream, None
        if upstream is not None and not self._exhausted:
            self._exhausted = True
            # Shielded: cleanup must finish even when the task that owns the stream is being cancelled.
            close = asyncio.ensure_future(_close_upstream(upstream))
            try:
                await asyncio.shield(close)
            except asyncio.CancelledError:
                await close
                raise
            finally:
                self._settle(reason, cancelled)
        else:
            self._settle(reason, cancelled)

    def _settle(self, reason: str, cancelled: bool) -> None:
        if self._final is None:
            self._acc.interrupt(reason, cancelled=cancelled)
            self._finalize()

    def _fail(self, exc: BaseException) -> CllmError:
        """Turn a failure into `ProviderError` (no output yet) or `StreamInterrupted` (output began)."""
        received = self._acc.received_output
        message = _provider.clean_message(_provider.root_cause(exc))
        self._acc.interrupt(message)
        self._exhausted = True
        response = self._finalize()
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            _close_in_background(upstream)
        if not received:
            return _provider.provider_error(exc, self._request.model)
        return StreamInterrupted(f"the stream was interrupted: {message}", response)

    def _deadline(self) -> float | None:
        request = self._request
        started = self._started or time.perf_counter()
        deadlines = []
        if request.total_timeout is not None:
            deadlines.append(started + request.total_timeout)
        if request.first_token_timeout is not None and not self._acc.received_output:
            deadlines.append(started + request.first_token_timeout)
        if request.idle_timeout is not None and self._chunks is not None:
            deadlines.append(self._last_chunk + request.idle_timeout)
        if not deadlines:
            return None
        # asyncio's clock, not perf_counter: convert the earliest deadline.
        return asyncio.get_running_loop().time() + (min(deadlines) - time.perf_counter())

    def _timed_out(self) -> StreamTimeout:
        request = self._request
        now = time.perf_counter()
        started = self._started or now
        kind: TimeoutKind
        if request.total_timeout is not None and now >= started + request.total_timeout - 1e-3:
            kind, limit = "total", request.total_timeout
        elif request.first_token_timeout is not None and not self._acc.received_output:
            kind, limit = "first_token", request.first_token_timeout
        else:
            kind, limit = "idle", request.idle_timeout or 0.0
        words = {"first_token": "no output within", "idle": "no data for", "total": "not finished within"}
        message = f"{kind.replace('_', ' ')} timeout: {words[kind]} {limit:g} s"
        self._acc.interrupt(message)
        self._exhausted = True
        response = self._finalize()
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            _close_in_background(upstream)
        return StreamTimeout(message, response, kind)


async def _close_upstream(upstream: Any) -> None:
    # Best effort: the connection may already be gone.
    with contextlib.suppress(Exception):
        await upstream.aclose()


_closing: set[asyncio.Task[None]] = set()


def _close_in_background(upstream: Any) -> None:
    task = asyncio.ensure_future(_close_upstream(upstream))
    _closing.add(task)  # keep a reference until done: the loop holds tasks only weakly
    task.add_done_callback(_closing.discard)


async def acomplete_once(request: _provider.Request) -> Response:
    """A non-streaming call, turned into the same `Response` a stream of it would give."""
    lib = _provider.litellm()
    started = time.perf_counter()
    try:
        if request.total_timeout is not None:
            async with asyncio.timeout(request.total_timeout):
                result = await lib.acompletion(**request.kwargs)
        else:
            result = await lib.acompletion(**request.kwargs)
    except TimeoutError as exc:
        acc = StreamAccumulator()
        acc.interrupt(f"total timeout: not finished within {request.total_timeout:g} s")
        message = f"total timeout: not finished within {request.total_timeout:g} s"
        raise StreamTimeout(message, acc.snapshot(model=request.model), "total") from exc
    except CllmError:
        raise
    except Exception as exc:
        raise _provider.provider_error(exc, request.model) from exc
    acc = StreamAccumulator()
    acc.feed(_provider.non_stream_chunk(result))
    acc.end()
    duration = time.perf_counter() - started
    usage = acc.usage
    model = acc.model or request.model
    cost = _provider.cost(request.model, request.provider, usage) or _provider.cost(
        model, request.provider, usage
    )
    return acc.snapshot(model=model, ttft=duration, duration=duration, cost=cost)
