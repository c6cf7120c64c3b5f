"""The sync facade: the upstream runs on one background event loop, the state in the caller's thread.

No ``asyncio.run``: the sync API works where an event loop is already running (Jupyter, a thread
of an async app), and sync and async share every line of streaming logic.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import weakref
from collections.abc import Coroutine, Generator, Iterator
from typing import Any, TypeVar, cast

from cllm._stream import AsyncStream, Source, _StreamBase
from cllm.core.accumulator import Chunk
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
        _cancel(future)
        raise


def _cancel(future: concurrent.futures.Future[Any]) -> None:
    if not future.done():
        future.cancel()
        concurrent.futures.wait([future], timeout=2.0)


_END = object()
Handoff = queue.SimpleQueue[Chunk | Event | BaseException | object]


async def _pump(upstream: Source, handoff: Handoff) -> None:
    try:
        while (chunk := await upstream.next()) is not None:
            handoff.put(chunk)
    except asyncio.CancelledError:
        await upstream.aclose()
        raise
    except Exception as exc:
        await upstream.aclose()
        handoff.put(exc)
    else:
        handoff.put(_END)


class Stream(_StreamBase):
    """A streaming response, iterated with ``for``. Made by `cllm.stream`.

    Iterating yields events as each provider chunk arrives. `response` is a snapshot while the
    stream runs and final once it has ended. Leaving the ``with`` block, breaking out of the loop
    or `close` stops the stream and closes the upstream connection.
    """

    def __init__(self, stream: AsyncStream) -> None:
        super().__init__(stream._up, stream._state)
        # Weak, so that a loop that breaks out drops the last reference to the generator, which
        # then closes at once and takes the upstream connection with it.
        self._iter: weakref.ref[Generator[Event]] | None = None

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        events = self._iter() if self._iter is not None else None
        if events is None:
            events = self._events()
            self._iter = weakref.ref(events)
        return events

    def _events(self) -> Generator[Event]:
        # The background loop reads ahead and hands over chunks through a queue: one queue read per
        # chunk here, no cross-thread round trip.
        handoff: Handoff = queue.SimpleQueue()
        pump = asyncio.run_coroutine_threadsafe(_pump(self._up, handoff), _background_loop())
        state = self._state
        try:
            while True:
                item = handoff.get()
                if item is _END:
                    yield from state.end()
                    return
                if isinstance(item, BaseException):
                    raise state.fail(item) from item
                yield from state.feed(cast("Chunk | Event", item))
        finally:
            _cancel(pump)
            self.close()

    @property
    def text_stream(self) -> Iterator[str]:
        """The text deltas only, as strings."""
        return (event.text for event in self if isinstance(event, TextDelta))

    def close(self) -> None:
        """Stop the stream and close the upstream connection. Safe to call more than once."""
        if not self._up.exhausted:
            run(self._up.aclose())
        self._state.cancel()

    def until_done(self) -> Response:
        """Consume the rest of the stream and return the final response."""
        for _ in self:
            pass
        return self.response
