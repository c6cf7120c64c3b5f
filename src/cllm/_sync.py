"""The sync facade: `AsyncStream`'s coroutines run on one background event loop.

No ``asyncio.run``: the sync API works where an event loop is already running (Jupyter, a thread
of an async app), and sync and async share every line of streaming logic.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from cllm._stream import AsyncStream
from cllm.core.events import Event, TextDelta
from cllm.core.response import Response

__all__ = ["Stream", "run"]

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None:
        with _loop_lock:
            if _loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="cllm-loop", daemon=True).start()
                _loop = loop
    return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the background loop and wait for it.

    If the waiting thread is interrupted (Ctrl-C), the coroutine is cancelled and given a moment
    to clean up (close its connection) before the interruption goes on.
    """
    future = asyncio.run_coroutine_threadsafe(coro, _background_loop())
    try:
        return future.result()
    except BaseException:
        if not future.done():
            future.cancel()
            concurrent.futures.wait([future], timeout=2.0)
        raise


async def _pump(stream: AsyncStream, handoff: queue.SimpleQueue[list[Event] | BaseException | None]) -> None:
    try:
        while events := await stream._next_events():
            handoff.put(events)
    except BaseException as exc:
        handoff.put(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        handoff.put(None)


class Stream:
    """A streaming response, iterated with ``for``. Made by `cllm.stream`.

    Iterating yields events as each provider chunk arrives. `response` is a snapshot while the
    stream runs and final once it has ended. Leaving the ``with`` block, breaking out of the loop
    or `close` stops the stream and closes the upstream connection.
    """

    def __init__(self, stream: AsyncStream) -> None:
        self._stream = stream
        self._iter: Iterator[Event] | None = None

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        if self._iter is None:
            self._iter = self._events()
        return self._iter

    def _events(self) -> Iterator[Event]:
        # The background loop reads ahead and hands over each chunk's events through a queue, so
        # the consuming thread pays one queue read per chunk, not a cross-thread round trip.
        handoff: queue.SimpleQueue[list[Event] | BaseException | None] = queue.SimpleQueue()
        pump = asyncio.run_coroutine_threadsafe(_pump(self._stream, handoff), _background_loop())
        try:
            while (item := handoff.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield from item
        finally:
            if not pump.done():
                pump.cancel()
                concurrent.futures.wait([pump], timeout=2.0)
            self.close()

    @property
    def text_stream(self) -> Iterator[str]:
        """The text deltas only, as strings."""
        return (event.text for event in self if isinstance(event, TextDelta))

    @property
    def response(self) -> Response:
        """The response so far; final once the stream has ended."""
        return self._stream.response

    @property
    def done(self) -> bool:
        """Whether the stream has ended (finished, failed or closed)."""
        return self._stream.done

    def close(self) -> None:
        """Stop the stream and close the upstream connection. Safe to call more than once."""
        if not self._stream.done:
            run(self._stream._shutdown("the stream was closed by the consumer", cancelled=True))

    def until_done(self) -> Response:
        """Consume the rest of the stream and return the final response."""
        for _ in self:
            pass
        return self.response
