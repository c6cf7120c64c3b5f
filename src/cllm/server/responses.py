"""Responses: JSON errors in OpenAI's format, and a streamed response that stops its producer the
moment the client goes away (not at the next write, which for a slow model may be seconds later).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cllm.server.settings import RequestError
from cllm.server.wire import error_body

__all__ = [
    "SSE_HEADERS",
    "BatchingWriter",
    "Body",
    "WatchedResponse",
    "error_response",
    "request_error_response",
]

SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Tells nginx-style proxies not to buffer the stream.
    (b"x-accel-buffering", b"no"),
)
"""The headers of every SSE response (raw ASGI headers; a tuple, so no one can change them for all)."""


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error in OpenAI's format."""
    return Response(
        error_body(status, message, code=code, param=param, type=type),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def request_error_response(error: RequestError) -> Response:
    return error_response(error.status, error.message, code=error.code, param=error.param)


Body = Callable[[Send], Awaitable[None]]


class WatchedResponse(Response):
    """Runs ``body(send)`` (which sends the whole response itself) while watching for the client's
    disconnect; on disconnect the body's task is cancelled at once, so whatever it holds open (an
    upstream request) is closed right away.
    """

    def __init__(self, body: Body, on_close: Callable[[], None] | None = None) -> None:
        self._body = body
        self._on_close = on_close
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        producer = asyncio.ensure_future(self._body(send))
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not producer.done():
                producer.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await producer
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if self._on_close is not None:
                self._on_close()


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class BatchingWriter:
    """Writes a streamed body from a task of its own: whatever the producer wrote while it ran
    goes out as one piece, so a burst of events costs one send, not one each."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pieces: list[str] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.ensure_future(self._run())

    def write(self, text: str) -> None:
        if self._task.done():
            self._task.result()  # the client is gone: raise why
        self._pieces.append(text)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pieces:
                data = "".join(self._pieces).encode()
                self._pieces.clear()
                await self._send({"type": "http.response.body", "body": data, "more_body": True})
            if self._closing:
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
                return

    async def aclose(self) -> None:
        """Send what is left and end the body."""
        self._closing = True
        self._wake.set()
        await self._task

    def cancel(self) -> None:
        self._task.cancel()
