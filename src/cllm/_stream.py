"""Streams in two halves: the upstream (LiteLLM I/O, on an event loop) and the state (the core
accumulator, wherever the consumer runs).

`AsyncStream` runs both on the caller's loop. The sync `Stream` runs the upstream on cllm's
background loop and the state in the caller's thread, so the live values in events are only ever
touched by the thread that reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal, Protocol

from cllm import _provider
from cllm.core.accumulator import NO_FINISH_REASON, Chunk, StreamAccumulator
from cllm.core.events import Attempt, Event, TextDelta
from cllm.core.response import Response, Usage
from cllm.errors import CllmError, StreamInterrupted, StreamTimeout

__all__ = ["AsyncStream", "OneShot", "Source", "Upstream"]

# Longest stretch of buffered chunks processed before letting other tasks run.
_YIELD_EVERY = 0.004

TimeoutKind = Literal["first_token", "idle", "total"]
_TIMEOUT_WORDS = {"first_token": "no output within", "idle": "no data for", "total": "not finished within"}


class UpstreamTimeout(Exception):
    """Raised by `Upstream.next` when one of cllm's timeouts fires."""

    def __init__(self, kind: TimeoutKind, limit: float) -> None:
        super().__init__(f"{kind.replace('_', ' ')} timeout: {_TIMEOUT_WORDS[kind]} {limit:g} s")
        self.kind: TimeoutKind = kind


class StreamTruncated(Exception):
    """The provider's stream ended cleanly without ever giving a finish reason: the answer was cut off."""

    def __init__(self) -> None:
        super().__init__(NO_FINISH_REASON)


# LiteLLM 1.110 raises this itself at such an end (1.106 made up a "stop"): one contract on both.
_LITELLM_TRUNCATED = "Stream ended before a finish_reason was received"


def _has_output(chunk: Chunk) -> bool:
    return bool(chunk.text or chunk.reasoning or chunk.tool_calls or chunk.refusal)


class Source(Protocol):
    """The upstream half of a stream: where its chunks come from.

    `Upstream` (one LiteLLM stream) and `OneShot` (one non-streaming call) are the plain sources.
    Retries, fallbacks and limits are sources that wrap others: the state half and the sync and
    async facades only ever see this interface. A source that makes several attempts returns an
    `Attempt` from `next` when one starts, and has ``attempts`` (the records) and ``cost`` (their sum).
    """

    request: _provider.Request

    # Read-only here, so that a layer may compute them from the source it wraps.
    @property
    def started(self) -> float | None:
        """When the request was made (``perf_counter``): time spent waiting for capacity counts."""
        ...

    @property
    def ttft(self) -> float | None:
        """Seconds from `started` to the first output."""
        ...

    @property
    def usage(self) -> Usage | None:
        """The usage the provider reported, once the stream has ended."""
        ...

    @property
    def exhausted(self) -> bool:
        """True once `next` has nothing more to give (ended, failed or closed)."""
        ...

    async def next(self) -> Chunk | Event | None:
        """The next chunk, or None once the stream has ended normally; raises on failure.

        A layer may also return an `Event` of its own (`Queued`): it goes to the consumer as it is.
        An `Attempt` (a retrying layer's) also resets the answer when it says ``discard``.
        """
        ...

    async def aclose(self) -> None:
        """Close the connection (best effort, never raises, safe to call more than once)."""
        ...


class Upstream:
    """One LiteLLM stream: opens it, reads it chunk by chunk under the timeouts, closes it."""

    def __init__(self, request: _provider.Request) -> None:
        self.request = request
        self.started: float | None = None
        self.ttft: float | None = None
        self.usage: Usage | None = None
        self.exhausted = False
        self._wrapper: Any = None
        self._reader: _provider.ChunkReader | None = None
        self._chunks: AsyncIterator[Any] | None = None
        self._last_chunk = 0.0
        self._last_yield = 0.0
        self._output = False
        self._finished = False
        self._truncated = False

    async def next(self) -> Chunk | None:
        """The next chunk, or None once the provider's stream has ended normally."""
        if self.exhausted:
            return self._ended()
        if self._chunks is None:
            await self._open()
        assert self._chunks is not None
        deadline = self._deadline()
        try:
            if deadline is None:
                raw = await self._chunks.__anext__()
            else:
                async with asyncio.timeout_at(deadline):
                    raw = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._exhaust()
            return self._ended()
        except TimeoutError as exc:
            self._keep_usage()
            raise self._timed_out() from exc
        except Exception as exc:
            self._keep_usage()
            if self._finished:
                # The provider had already said it was done: a connection dropped afterwards loses nothing.
                self._exhaust()
                return None
            if _LITELLM_TRUNCATED in str(exc):
                self._exhaust()
                return self._ended()
            raise
        now = time.perf_counter()
        self._last_chunk = now
        chunk = self._convert(raw)
        if chunk.finish_reason:
            self._finished = True
        if self._delivered():
            # LiteLLM 1.106 hands over its usage after a "stop" it made up: then the next call says
            # the answer was cut off.
            self._exhaust()
        if not self._output and _has_output(chunk):
            self._output = True
            self.ttft = now - (self.started or now)
        if now - self._last_yield > _YIELD_EVERY:
            # LiteLLM never suspends while chunks are buffered: let other tasks run. Twice, because
            # timers that fell due meanwhile are queued behind this task's first wake-up.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            self._last_yield = time.perf_counter()
        return chunk

    async def aclose(self) -> None:
        """Close the upstream connection (best effort, never raises)."""
        wrapper, self._wrapper = self._wrapper, None
        self.exhausted = True
        if wrapper is not None:
            with contextlib.suppress(Exception):
                await wrapper.aclose()

    async def _open(self) -> None:
        lib = await _provider.aload()
        _provider.resolve(self.request)
        self.started = time.perf_counter()
        self._last_yield = self.started
        coro = lib.acompletion(**self.request.kwargs)
        deadline = self._deadline()
        try:
            if deadline is None:
                self._wrapper = await coro
            else:
                async with asyncio.timeout_at(deadline):
                    self._wrapper = await coro
        except TimeoutError as exc:
            raise self._timed_out() from exc
        self._last_chunk = time.perf_counter()
        self._reader = _provider.ChunkReader(self._wrapper)
        self._chunks = self._wrapper.__aiter__()

    # What a different wire (`cllm._fast.FastUpstream`) replaces: how a raw item becomes a `Chunk`,
    # whether the stream has handed over all it holds, and the usage it reported.

    def _convert(self, raw: Any) -> Chunk:
        assert self._reader is not None
        return self._reader(raw)

    def _delivered(self) -> bool:
        return _provider.stream_delivered(self._wrapper)

    def _reported_usage(self) -> Usage | None:
        return None if self._reader is None else self._reader.usage()

    def _keep_usage(self) -> None:
        # A failed stream may still have reported usage (some providers send it on every chunk).
        with contextlib.suppress(Exception):
            self.usage = self._reported_usage()

    def _exhaust(self) -> None:
        self.exhausted = True
        self._truncated = not self._finished
        self.usage = self._reported_usage()

    def _ended(self) -> Chunk | None:
        """None for a stream the provider ended; `StreamTruncated` (once) for one it just stopped sending."""
        if self._truncated:
            self._truncated = False
            raise StreamTruncated()
        return None

    def _deadline(self) -> float | None:
        request = self.request
        started = self.started or time.perf_counter()
        deadlines = []
        if request.total_timeout is not None:
            deadlines.append(started + request.total_timeout)
        if request.first_token_timeout is not None and not self._output:
            deadlines.append(started + request.first_token_timeout)
        if request.idle_timeout is not None and self._chunks is not None:
            deadlines.append(self._last_chunk + request.idle_timeout)
        if not deadlines:
            return None
        # Convert from perf_counter to the loop's clock.
        return asyncio.get_running_loop().time() + (min(deadlines) - time.perf_counter())

    def _timed_out(self) -> UpstreamTimeout:
        request = self.request
        now = time.perf_counter()
        started = self.started or now
        if request.total_timeout is not None and now >= started + request.total_timeout - 1e-3:
            return UpstreamTimeout("total", request.total_timeout)
        if request.first_token_timeout is not None and not self._output:
            return UpstreamTimeout("first_token", request.first_token_timeout)
        return UpstreamTimeout("idle", request.idle_timeout or 0.0)


class OneShot:
    """One non-streaming LiteLLM call as a source: the whole response is one chunk."""

    def __init__(self, request: _provider.Request) -> None:
        self.request = request
        self.started: float | None = None
        self.ttft: float | None = None
        self.usage: Usage | None = None
        self.exhausted = False

    async def next(self) -> Chunk | None:
        if self.exhausted:
            return None
        self.exhausted = True
        lib = await _provider.aload()
        _provider.resolve(self.request)
        self.started = time.perf_counter()
        limit = self.request.total_timeout
        try:
            async with asyncio.timeout(limit):
                result = await lib.acompletion(**self.request.kwargs)
        except TimeoutError as exc:
            raise UpstreamTimeout("total", limit or 0.0) from exc
        chunk = _provider.non_stream_chunk(result)
        self.usage, chunk.usage = chunk.usage, None
        if _has_output(chunk):
            self.ttft = time.perf_counter() - self.started
        return chunk

    async def aclose(self) -> None:
        self.exhausted = True


class StreamState:
    """The consumer's half: chunks in, events and the `Response` out. No I/O, no waiting."""

    def __init__(self, upstream: Source) -> None:
        self._up = upstream
        self._acc = StreamAccumulator()
        self.final: Response | None = None

    def feed(self, chunk: Chunk | Event) -> list[Event]:
        if isinstance(chunk, Attempt):
            return self.attempt(chunk)
        if not isinstance(chunk, Chunk):
            return [chunk]  # a layer's own event (`Queued`)
        return self._acc.feed(chunk)

    def attempt(self, marker: Attempt) -> list[Event]:
        """A new attempt starts: over from nothing when it discards what was shown, else spliced on."""
        if marker.discard:
            self._acc = StreamAccumulator()
        else:
            self._acc.forget_model()
        return [marker]

    def end(self) -> list[Event]:
        """The provider's stream ended normally."""
        if self.final is not None:
            return []
        if self._up.usage is not None:
            self._acc.feed(Chunk(usage=self._up.usage))
        events = self._acc.end()
        self._finalize()
        return events

    def fail(self, exc: BaseException) -> CllmError:
        """The error to raise for a failure: `ProviderError` before any output, else `StreamInterrupted`."""
        if isinstance(exc, UpstreamTimeout):
            self._acc.interrupt(str(exc))
            return StreamTimeout(str(exc), self._finalize(), exc.kind)
        if isinstance(exc, CllmError):
            self.cancel(str(exc))
            return exc
        received = self._acc.received_output
        message = _provider.clean_message(_provider.root_cause(exc))
        self._acc.interrupt(message)
        response = self._finalize()
        if not received:
            return _provider.provider_error(exc, self._up.request.model)
        return StreamInterrupted(f"the stream was interrupted: {message}", response)

    def cancel(self, reason: str = "the stream was closed by the consumer") -> None:
        if self.final is None:
            self._acc.interrupt(reason, cancelled=True)
            self._finalize()

    @property
    def response(self) -> Response:
        if self.final is not None:
            return self.final
        return self._acc.snapshot(**self._meta())

    def _meta(self) -> dict[str, Any]:
        up = self._up
        duration = None if up.started is None else time.perf_counter() - up.started
        model = _provider.response_model(up.request.model, self._acc.model)
        return {"model": model, "ttft": up.ttft, "duration": duration}

    def _finalize(self) -> Response:
        if self.final is None:
            meta = self._meta()
            request, usage = self._up.request, self._acc.usage
            records = getattr(self._up, "attempts", None)
            if records is not None:
                meta["attempts"] = list(records)
                meta["cost"] = getattr(self._up, "cost", None)
            else:
                meta["cost"] = _provider.cost(request.model, request.provider, usage)
                if meta["cost"] is None and self._acc.model:
                    meta["cost"] = _provider.cost(self._acc.model, request.provider, usage)
            self.final = self._acc.snapshot(**meta)
        return self.final


class _StreamBase:
    """What the sync and async streams share: one upstream and one state."""

    def __init__(self, upstream: Source, state: StreamState) -> None:
        self._up = upstream
        self._state = state

    @property
    def response(self) -> Response:
        """The response so far; final once the stream has ended."""
        return self._state.response

    @property
    def done(self) -> bool:
        """Whether the stream has ended (finished, failed or closed)."""
        return self._state.final is not None


class AsyncStream(_StreamBase):
    """A streaming response, iterated with ``async for``. Made by `cllm.astream`.

    Iterating yields events as each provider chunk arrives. `response` is a snapshot while the
    stream runs and final once it has ended. Leaving the ``async with`` block, breaking out of the
    loop or `aclose` stops the stream and closes the upstream connection.
    """

    def __init__(self, request: _provider.Request, source: Source | None = None) -> None:
        upstream = source if source is not None else Upstream(request)
        super().__init__(upstream, StreamState(upstream))
        # Weak, so that a loop that breaks out drops the last reference and the generator is closed.
        self._agen: weakref.ref[AsyncGenerator[Event]] | None = None

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Event]:
        events = self._agen() if self._agen is not None else None
        if events is None:
            events = self._events()
            self._agen = weakref.ref(events)
        return events

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """The text deltas only, as strings."""
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        async for event in self:
            if isinstance(event, TextDelta):
                yield event.text

    async def aclose(self) -> None:
        """Stop the stream and close the upstream connection. Safe to call more than once."""
        events = self._agen() if self._agen is not None else None
        if events is not None:
            await events.aclose()
        await self._up.aclose()
        self._state.cancel()

    async def until_done(self) -> Response:
        """Consume the rest of the stream and return the final response."""
        async for _ in self:
            pass
        return self.response

    async def _events(self) -> AsyncGenerator[Event]:
        try:
            while events := await self._next_events():
                for event in events:
                    yield event
        finally:
            # Shielded: the connection must be closed even when the consuming task is cancelled.
            await _shielded(self._up.aclose())
            self._state.cancel()

    async def _next_events(self) -> list[Event]:
        state = self._state
        while state.final is None:
            try:
                chunk = await self._up.next()
            except asyncio.CancelledError:
                await _shielded(self._up.aclose())
                state.cancel("the stream was cancelled")
                raise
            except Exception as exc:
                await _shielded(self._up.aclose())
                raise state.fail(exc) from exc
            if chunk is None:
                return state.end()
            if events := state.feed(chunk):
                return events
        return []


async def _shielded(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
