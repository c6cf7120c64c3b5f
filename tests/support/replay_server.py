"""A scripted HTTP/1.1 server on 127.0.0.1 for tests.

The server runs an asyncio loop in a background thread and parses requests with h11. Each request is
answered by the next scripted response (by path first, then from the any-path queue). A response is a
status, headers and a body given as byte pieces, each with an optional delay before it, so a test can
stream slowly, split a body at any byte, stop cleanly anywhere, reset the connection or hang.

While a body is being sent, a reader task keeps reading the connection, so the moment the client
closes it (FIN or RST) is recorded within a millisecond or two, even while the server sleeps between
pieces. All times are ``time.monotonic()`` values, comparable with the test's own clock.

Usage::

    with ReplayServer(stream_response(sse_events(body), delay=0.05)) as server:
        httpx.post(server.url + "/v1/chat/completions", json={...})
        exchange = server.wait_client_closed(timeout=1.0)
        assert exchange.closed_early
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import h11
import pytest

__all__ = [
    "Exchange",
    "Piece",
    "RecordedRequest",
    "ReplayServer",
    "ScriptedResponse",
    "error_response",
    "json_response",
    "replay_server_fixture",
    "split_at",
    "split_every",
    "sse_events",
    "stream_response",
]

Framing = Literal["chunked", "close", "length"]
"""How the body is delimited: chunked transfer-encoding, closing the connection, or Content-Length."""

Outcome = Literal["streaming", "complete", "client_closed", "reset", "server_stopped", "write_failed"]

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]


# --------------------------------------------------------------------------------------------------
# Scripted responses


@dataclass(frozen=True)
class Piece:
    """One write of the body: ``data``, sent ``delay`` seconds after the previous write."""

    data: bytes
    delay: float = 0.0


@dataclass(frozen=True)
class ScriptedResponse:
    """What the server sends for one request.

    ``reset_after=N`` aborts the connection with a TCP RST after N pieces (0: right after the headers).
    ``hang_after=N`` sends N pieces, then keeps the connection open without sending anything more until
    the client closes it or the server stops. ``delay`` is waited before the status line.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    pieces: tuple[Piece, ...] = ()
    framing: Framing = "chunked"
    reset_after: int | None = None
    hang_after: int | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("reset_after", "hang_after"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= len(self.pieces):
                raise ValueError(f"{name}={value} is outside 0..{len(self.pieces)}")
        if self.reset_after is not None and self.hang_after is not None:
            raise ValueError("reset_after and hang_after are exclusive")

    @property
    def body(self) -> bytes:
        """The whole body, as it would be sent if nothing interrupted it."""
        return b"".join(piece.data for piece in self.pieces)


def _headers(headers: HeadersLike) -> tuple[tuple[str, str], ...]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name), str(value)) for name, value in items)


def _pieces(pieces: Iterable[bytes | Piece], delay: float) -> tuple[Piece, ...]:
    return tuple(p if isinstance(p, Piece) else Piece(bytes(p), delay) for p in pieces)


def stream_response(
    pieces: Iterable[bytes | Piece] | bytes,
    *,
    delay: float = 0.0,
    status: int = 200,
    content_type: str = "text/event-stream",
    headers: HeadersLike = (),
    framing: Framing = "chunked",
    reset_after: int | None = None,
    hang_after: int | None = None,
    headers_delay: float = 0.0,
) -> ScriptedResponse:
    """A streamed body. ``delay`` is waited before every piece given as plain bytes.

    A single ``bytes`` value is sent as one piece. To end the body early but cleanly (e.g. without the
    ``[DONE]`` event), pass fewer pieces.
    """
    if isinstance(pieces, bytes | bytearray):
        pieces = [bytes(pieces)]
    return ScriptedResponse(
        status=status,
        headers=(("content-type", content_type), *_headers(headers)),
        pieces=_pieces(pieces, delay),
        framing=framing,
        reset_after=reset_after,
        hang_after=hang_after,
        delay=headers_delay,
    )


def json_response(payload: Any, *, status: int = 200, headers: HeadersLike = ()) -> ScriptedResponse:
    """A non-streaming JSON response with a Content-Length."""
    return ScriptedResponse(
        status=status,
        headers=(("content-type", "application/json"), *_headers(headers)),
        pieces=(Piece(json.dumps(payload).encode()),),
        framing="length",
    )


def error_response(
    status: int = 401,
    message: str = "Incorrect API key provided: sk-test.",
    *,
    type: str = "invalid_request_error",
    code: str | None = "invalid_api_key",
    param: str | None = None,
    headers: HeadersLike = (),
) -> ScriptedResponse:
    """An HTTP error with an OpenAI-style body: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return json_response(body, status=status, headers=headers)


_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


def sse_events(body: bytes) -> list[bytes]:
    """Split an SSE body after each blank line, keeping the separators (so the pieces join back to
    ``body``). Handles LF, CRLF and CR line ends; a trailing partial event is kept as the last piece."""
    events: list[bytes] = []
    start = 0
    for match in _BLANK_LINE.finditer(body):
        events.append(body[start : match.end()])
        start = match.end()
    if start < len(body):
        events.append(body[start:])
    return events


def split_every(body: bytes, size: int) -> list[bytes]:
    """Split ``body`` into pieces of ``size`` bytes (the last may be shorter)."""
    if size < 1:
        raise ValueError("size must be >= 1")
    return [body[i : i + size] for i in range(0, len(body), size)]


def split_at(body: bytes, offsets: Iterable[int]) -> list[bytes]:
    """Split ``body`` at the given byte offsets (sorted, deduplicated; 0 and len(body) are ignored)."""
    cuts = sorted({o for o in offsets if 0 < o < len(body)})
    bounds = [0, *cuts, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds)]


# --------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it. Header names are lower-case."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    json: Any
    received_at: float

    @property
    def path(self) -> str:
        """The target without its query string."""
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)


@dataclass(eq=False)
class Exchange:
    """One request and what became of its response. Updated live by the server thread.

    ``client_closed_at`` is set when the client closed the connection while this was the connection's
    latest exchange: during the body (``closed_early``) or after it (a keep-alive connection closed
    later, which is not "early"). ``outcome`` is ``"streaming"`` until the response ends.
    """

    index: int
    connection: int
    request: RecordedRequest
    response: ScriptedResponse
    started_at: float
    headers_sent_at: float | None = None
    piece_times: list[float] = field(default_factory=list)
    completed_at: float | None = None
    client_closed_at: float | None = None
    outcome: Outcome = "streaming"
    _closed: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    @property
    def pieces_sent(self) -> int:
        return len(self.piece_times)

    @property
    def body_complete(self) -> bool:
        """True when the whole body (and its end marker) was written."""
        return self.completed_at is not None

    @property
    def closed_early(self) -> bool:
        """True when the client closed the connection before the body was complete."""
        return self.client_closed_at is not None and self.completed_at is None

    def wait_client_closed(self, timeout: float = 1.0) -> float:
        """Block until the client has closed this exchange's connection; return the time it did."""
        if not self._closed.wait(timeout):
            raise TimeoutError(f"client did not close connection of exchange {self.index} in {timeout}s")
        assert self.client_closed_at is not None
        return self.client_closed_at

    async def await_client_closed(self, timeout: float = 1.0) -> float:
        """Async twin of :meth:`wait_client_closed` (polls every millisecond)."""
        await _apoll(lambda: self.client_closed_at, timeout, f"client close of exchange {self.index}")
        assert self.client_closed_at is not None
        return self.client_closed_at

    def wait_done(self, timeout: float = 2.0) -> Outcome:
        """Block until the response has ended one way or another; return the outcome."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"exchange {self.index} still {self.outcome} after {timeout}s")
        return self.outcome

    # Called from the server thread.
    def _piece_sent(self) -> None:
        self.piece_times.append(time.monotonic())

    def _finish(self, outcome: Outcome) -> None:
        if self.outcome == "streaming":
            self.outcome = outcome
            if outcome == "complete":
                self.completed_at = time.monotonic()
        self._done.set()

    def _client_closed(self, when: float) -> None:
        if self.client_closed_at is None:
            self.client_closed_at = when
        self._finish("client_closed")
        self._closed.set()


async def _apoll(get: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while (value := get()) is None:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.001)
    return value


# --------------------------------------------------------------------------------------------------
# Server

Responder = Callable[[RecordedRequest], ScriptedResponse]


class _Connection:
    """Per-connection state, used only on the server's loop."""

    def __init__(self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.number = number
        self.reader = reader
        self.writer = writer
        self.inbox = bytearray()
        self.readable = asyncio.Event()
        self.peer_closed = asyncio.Event()
        self.server_closing = False
        self.exchange: Exchange | None = None

    async def pump(self) -> None:
        """Read continuously so a close by the client is seen at once, whatever the writer is doing."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await self.reader.read(65536):
                self.inbox += data
                self.readable.set()
        if not self.server_closing:
            when = time.monotonic()
            if self.exchange is not None:
                self.exchange._client_closed(when)
            self.peer_closed.set()
        self.readable.set()

    async def sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; False (at once) if the client closes the connection meanwhile."""
        if self.peer_closed.is_set():
            return False
        try:
            await asyncio.wait_for(self.peer_closed.wait(), delay)
        except TimeoutError:
            return True
        return False

    async def write(self, data: bytes) -> None:
        if data:
            self.writer.write(data)
            # The write buffer limit is 0, so this returns once the kernel has taken every byte.
            await self.writer.drain()

    def reset(self) -> None:
        self.server_closing = True
        sock = self.writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class ReplayServer:
    """A real HTTP/1.1 server on 127.0.0.1 (random free port) serving scripted responses.

    Use it as a context manager (``with ReplayServer(resp) as server:``) or call ``start()``/``stop()``.
    Responses passed to the constructor go to the any-path queue; see :meth:`add`.
    """

    def __init__(self, *responses: ScriptedResponse | Responder, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queues: dict[str | None, deque[ScriptedResponse | Responder]] = {}
        self._repeat: set[str | None] = set()
        self._exchanges: list[Exchange] = []
        self._unmatched: list[RecordedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._connection_count = 0
        if responses:
            self.add(*responses)

    # -- set-up ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def add(
        self, *responses: ScriptedResponse | Responder, path: str | None = None, repeat: bool = False
    ) -> None:
        """Queue responses, served in order.

        With ``path``, they answer only requests whose path (or full target, if ``path`` has a query)
        equals it; path queues are tried before the any-path queue. A callable is called with the
        request and returns the response. With ``repeat``, the last response is served again and again.
        """
        with self._lock:
            self._queues.setdefault(path, deque()).extend(responses)
            if repeat:
                self._repeat.add(path)

    @property
    def pending(self) -> int:
        """How many queued responses have not been served (a repeating last response counts as one)."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def start(self) -> ReplayServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="ReplayServer", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (hanging ones too) and stop the thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None
            self._loop = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- inspection --------------------------------------------------------------------------------

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [exchange.request for exchange in self._exchanges]

    @property
    def unmatched(self) -> list[RecordedRequest]:
        """Requests that found no scripted response (they got a 500)."""
        with self._lock:
            return list(self._unmatched)

    def _get_exchange(self, index: int) -> Exchange | None:
        with self._lock:
            return self._get_exchange_locked(index)

    def wait_exchange(self, index: int = -1, timeout: float = 2.0) -> Exchange:
        """Block until exchange ``index`` exists (``-1``: the latest, once there is one) and return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (exchange := self._get_exchange_locked(index)) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = len(self._exchanges)
                    raise TimeoutError(f"no exchange {index} after {timeout}s ({seen} so far)")
                self._changed.wait(remaining)
        return exchange

    async def await_exchange(self, index: int = -1, timeout: float = 2.0) -> Exchange:
        """Async twin of :meth:`wait_exchange`."""
        exchange: Exchange = await _apoll(lambda: self._get_exchange(index), timeout, f"exchange {index}")
        return exchange

    def wait_requests(self, count: int, timeout: float = 2.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests have arrived; return them all."""
        self.wait_exchange(count - 1, timeout)
        return self.requests

    def wait_client_closed(self, index: int = -1, timeout: float = 1.0) -> Exchange:
        """Block until the client has closed the connection of exchange ``index``; return the exchange."""
        deadline = time.monotonic() + timeout
        exchange = self.wait_exchange(index, timeout)
        exchange.wait_client_closed(max(0.0, deadline - time.monotonic()))
        return exchange

    async def await_client_closed(self, index: int = -1, timeout: float = 1.0) -> Exchange:
        """Async twin of :meth:`wait_client_closed`."""
        deadline = time.monotonic() + timeout
        exchange = await self.await_exchange(index, timeout)
        await exchange.await_client_closed(max(0.0, deadline - time.monotonic()))
        return exchange

    def _get_exchange_locked(self, index: int) -> Exchange | None:
        if (index < 0 and len(self._exchanges) >= -index) or 0 <= index < len(self._exchanges):
            return self._exchanges[index]
        return None

    # -- serving (server thread) -------------------------------------------------------------------

    def _begin(self, request: RecordedRequest, connection: _Connection) -> Exchange:
        item: ScriptedResponse | Responder | None = None
        with self._lock:
            for key in (request.target, request.path, None):
                queue = self._queues.get(key)
                if queue:
                    item = queue[0] if len(queue) == 1 and key in self._repeat else queue.popleft()
                    break
            else:
                self._unmatched.append(request)
        if item is None:
            response = error_response(
                500,
                f"replay server has no scripted response for {request.method} {request.target}",
                type="replay_server_error",
                code=None,
            )
        elif isinstance(item, ScriptedResponse):
            response = item
        else:
            try:
                response = item(request)
            except Exception as exc:  # a broken responder should fail the test, not hang the client
                message = f"responder raised {exc!r}"
                response = error_response(500, message, type="replay_server_error", code=None)
        with self._changed:
            exchange = Exchange(
                index=len(self._exchanges),
                connection=connection.number,
                request=request,
                response=response,
                started_at=time.monotonic(),
            )
            self._exchanges.append(exchange)
            self._changed.notify_all()
        connection.exchange = exchange
        return exchange

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._connection_count += 1
        connection = _Connection(self._connection_count, reader, writer)
        writer.transport.set_write_buffer_limits(high=0)
        pump = asyncio.create_task(connection.pump())
        h11_connection = h11.Connection(h11.SERVER)
        try:
            while (request := await self._read_request(h11_connection, connection)) is not None:
                exchange = self._begin(request, connection)
                if not await self._respond(h11_connection, connection, exchange):
                    break
                try:
                    h11_connection.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except asyncio.CancelledError:
            # Only stop() cancels a handler. Not re-raising keeps Python 3.11's stream callback, which
            # calls task.exception() on a finished handler, from logging the cancellation as an error.
            if connection.exchange is not None:
                connection.exchange._finish("server_stopped")
        finally:
            self._handlers.discard(task)
            if not connection.peer_closed.is_set():
                connection.server_closing = True
            pump.cancel()
            writer.close()

    @staticmethod
    async def _read_request(h: h11.Connection, connection: _Connection) -> RecordedRequest | None:
        method = target = ""
        headers: list[tuple[str, str]] = []
        body = bytearray()
        eof_fed = False
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError:
                return None
            if event is h11.NEED_DATA:
                if connection.inbox:
                    data = bytes(connection.inbox)
                    connection.inbox.clear()
                    h.receive_data(data)
                elif connection.peer_closed.is_set() or connection.reader.at_eof():
                    if eof_fed:
                        return None
                    h.receive_data(b"")
                    eof_fed = True
                else:
                    connection.readable.clear()
                    await connection.readable.wait()
            elif isinstance(event, h11.Request):
                method = event.method.decode("ascii")
                target = event.target.decode("ascii")
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                return RecordedRequest(method, target, tuple(headers), bytes(body), parsed, time.monotonic())
            else:  # ConnectionClosed (or PAUSED, which cannot happen before a response)
                return None

    async def _respond(self, h: h11.Connection, connection: _Connection, exchange: Exchange) -> bool:
        """Send the scripted response; True if the connection can serve another request."""
        response = exchange.response
        if response.delay and not await connection.sleep(response.delay):
            return False
        try:
            await connection.write(self._head(h, response))
            exchange.headers_sent_at = time.monotonic()
            for number, piece in enumerate(response.pieces):
                if not await self._before_piece(connection, exchange, number):
                    return False
                if piece.delay > 0:
                    if not await connection.sleep(piece.delay):
                        return False
                elif connection.peer_closed.is_set():
                    return False
                data = piece.data if response.framing == "close" else h.send(h11.Data(data=piece.data))
                await connection.write(data or b"")
                exchange._piece_sent()
            if not await self._before_piece(connection, exchange, len(response.pieces)):
                return False
            if response.framing == "close":
                exchange._finish("complete")
                connection.server_closing = True
                return False
            await connection.write(h.send(h11.EndOfMessage()) or b"")
            exchange._finish("complete")
        except (ConnectionError, OSError, h11.LocalProtocolError):
            # The reader task usually sees a client's close first; give it a moment to say so.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connection.peer_closed.wait(), 0.05)
            exchange._finish("write_failed")
            return False
        return h.our_state is h11.DONE and h.their_state is h11.DONE

    @staticmethod
    async def _before_piece(connection: _Connection, exchange: Exchange, number: int) -> bool:
        response = exchange.response
        if response.reset_after == number:
            connection.reset()
            exchange._finish("reset")
            return False
        if response.hang_after == number:
            await connection.peer_closed.wait()
            return False
        return True

    @staticmethod
    def _head(h: h11.Connection, response: ScriptedResponse) -> bytes:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        framing_headers = ("content-length", "transfer-encoding")
        headers = [(k, v) for k, v in response.headers if k.lower() not in framing_headers]
        if response.framing == "close":
            # h11 always chunks an unsized body for an HTTP/1.1 peer, so write this head by hand.
            kept = [f"{k}: {v}" for k, v in headers if k.lower() != "connection"]
            lines = [f"HTTP/1.1 {response.status} {reason}", *kept]
            lines.append("connection: close")
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if response.framing == "length":
            headers.append(("content-length", str(len(response.body))))
        head = h.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        return head or b""

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@pytest.fixture(name="replay_server")
def replay_server_fixture() -> Iterator[ReplayServer]:
    """A started :class:`ReplayServer`, stopped after the test. Register with
    ``from support.replay_server import replay_server_fixture  # noqa: F401`` or ``pytest_plugins``."""
    with ReplayServer() as server:
        yield server
