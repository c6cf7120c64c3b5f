"""Resumable streams: generation runs in a task owned by a registry, not by the HTTP request.

Each event is encoded once into an SSE frame numbered from 1 and kept in the stream's buffer.
Readers (the first client and any that resume with ``Last-Event-ID``) read frames after a sequence
number and then wait for new ones, so a client that drops and comes back loses and repeats
nothing. Generation goes on without readers for at most ``ttl`` seconds; a finished stream stays
resumable for ``ttl`` seconds, then it is forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from cllm.server.wire import dumps, sse_frame

__all__ = ["Emit", "ResumableStream", "StreamRegistry", "StreamView", "StreamsUnavailable"]

logger = logging.getLogger("cllm.server")

Emit = Callable[[str, dict[str, Any]], None]
"""Called by a generation with each event's type and payload."""

# A comment line keeps idle connections (and proxies in between) from timing out.
PING = b": ping\n\n"


class StreamsUnavailable(Exception):
    """The shared stream store cannot be reached: the request gets a 503 saying so."""


class StreamView(Protocol):
    """What a reader needs of a stream, wherever its events are kept."""

    id: str
    conversation_id: str | None

    @property
    def last_id(self) -> int: ...

    @property
    def finished(self) -> bool: ...

    def head(self) -> bytes: ...

    def read(self, after: int = 0, ping_interval: float = 15.0) -> AsyncIterator[bytes]: ...


class ResumableStream:
    """One generation's events, kept for its readers."""

    def __init__(self, stream_id: str, conversation_id: str | None) -> None:
        self.id = stream_id
        self.conversation_id = conversation_id
        self.frames: list[bytes] = []
        self.finished = False
        self.readers = 0
        self.task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def last_id(self) -> int:
        """The sequence number of the latest event (0 before the first)."""
        return len(self.frames)

    def head(self) -> bytes:
        """The ``stream`` event that opens every response reading this stream (it has no id)."""
        return sse_frame("stream", dumps({"stream_id": self.id, "conversation_id": self.conversation_id}))

    def append(self, event: str, data: dict[str, Any]) -> None:
        """Add an event (called by the generation)."""
        if self.finished:
            return
        self.frames.append(sse_frame(event, dumps(data), len(self.frames) + 1))
        self._notify()

    def finish(self) -> None:
        self.finished = True
        self._notify()

    def _notify(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.set()

    async def read(self, after: int = 0, ping_interval: float = 15.0) -> AsyncIterator[bytes]:
        """Frames after sequence number ``after``, then new ones as they come, until the end.

        Everything already buffered is yielded as one piece: a reader that fell behind catches up
        in one write.
        """
        position = max(0, after)
        while True:
            if position < len(self.frames):
                end = len(self.frames)
                yield b"".join(self.frames[position:end])
                position = end
                continue
            if self.finished:
                return
            if self._wake is None:
                self._wake = asyncio.Event()
            try:
                await asyncio.wait_for(self._wake.wait(), ping_interval)
            except TimeoutError:
                yield PING


class StreamRegistry:
    """The live and recently finished streams of one server."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._streams: dict[str, ResumableStream] = {}

    def get(self, stream_id: str) -> ResumableStream | None:
        return self._streams.get(stream_id)

    # The interface the routes use; a registry on a shared store overrides these.

    async def open(
        self,
        conversation_id: str | None,
        generate: Callable[[Emit], Awaitable[object]],
        on_done: Callable[[], None] | None = None,
    ) -> StreamView:
        """`start`, where a shared store may first have to record the stream (`StreamsUnavailable`)."""
        return self.start(conversation_id, generate, on_done)

    async def find(self, stream_id: str) -> StreamView | None:
        """The stream with this id, live or recently finished, or None."""
        return self.get(stream_id)

    async def health(self) -> dict[str, Any]:
        """What ``/healthz`` reports about where streams are kept (raises `StreamsUnavailable`)."""
        return {"streams": "memory"}

    def start(
        self,
        conversation_id: str | None,
        generate: Callable[[Emit], Awaitable[object]],
        on_done: Callable[[], None] | None = None,
    ) -> ResumableStream:
        """Run ``generate(emit)`` in a task of its own; its events go to a new stream's buffer."""
        return self._launch(ResumableStream(uuid.uuid4().hex, conversation_id), generate, on_done)

    def _launch(
        self,
        stream: ResumableStream,
        generate: Callable[[Emit], Awaitable[object]],
        on_done: Callable[[], None] | None,
    ) -> ResumableStream:
        self._streams[stream.id] = stream
        stream.task = asyncio.create_task(
            self._run(stream, generate, on_done), name=f"cllm-stream-{stream.id}"
        )
        self._arm(stream)
        return stream

    async def _run(
        self,
        stream: ResumableStream,
        generate: Callable[[Emit], Awaitable[object]],
        on_done: Callable[[], None] | None,
    ) -> None:
        try:
            await generate(stream.append)
        except asyncio.CancelledError:
            pass  # cancelled on purpose: the generation has said so in its last event
        except Exception:
            # A generation reports its own failures as events, so this is a bug: still, never hang readers.
            logger.exception("stream %s failed", stream.id)
            stream.append(
                "error", {"message": "internal error", "kind": "internal_error", "status_code": None}
            )
        finally:
            stream.finish()
            if on_done is not None:
                on_done()
            self._arm(stream)

    def attach(self, stream: StreamView) -> None:
        """A reader starts: generation must not be stopped for want of readers."""
        if isinstance(stream, ResumableStream):
            stream.readers += 1
            self._disarm(stream)

    def detach(self, stream: StreamView) -> None:
        if isinstance(stream, ResumableStream):
            stream.readers -= 1
            if stream.readers <= 0:
                self._arm(stream)

    async def cancel(self, stream_id: str) -> bool:
        """Stop a stream's generation. False when there is no such stream."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return False
        task = stream.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return True

    async def aclose(self) -> None:
        """Cancel every running generation (server shutdown)."""
        tasks = [s.task for s in self._streams.values() if s.task is not None and not s.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in self._streams.values():
            self._disarm(stream)
        self._streams.clear()

    # A running stream with no reader is cancelled after ttl; a finished one is forgotten after ttl.
    def _arm(self, stream: ResumableStream) -> None:
        self._disarm(stream)
        if stream.readers > 0 and not stream.finished:
            return
        loop = asyncio.get_running_loop()
        stream._timer = loop.call_later(self.ttl, self._expire, stream)

    @staticmethod
    def _disarm(stream: ResumableStream) -> None:
        if stream._timer is not None:
            stream._timer.cancel()
            stream._timer = None

    def _expire(self, stream: ResumableStream) -> None:
        stream._timer = None
        if stream.finished:
            self._streams.pop(stream.id, None)
        elif stream.task is not None:
            logger.info("stream %s had no reader for %g s: stopping it", stream.id, self.ttl)
            stream.task.cancel()
