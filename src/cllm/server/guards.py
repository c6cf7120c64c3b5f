"""Guards in front of every route: the bearer token, the request body limit, and the per-client
limit on concurrent streams.

Plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which would buffer streamed
responses and hide the client's disconnect).
"""

from __future__ import annotations

import hmac
from collections import Counter
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cllm.server.wire import error_body

__all__ = ["OPEN_PATHS", "ClientLimiter", "Guard", "client_key"]

# The health check, and the web page's own files: they hold no data, and a browser cannot send a
# bearer token when it navigates to a page. The page asks for the token and sends it on every call.
OPEN_PATHS = ("/healthz", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)


def client_key(scope: Scope) -> str:
    """Who a request comes from, for the concurrency limit: the peer address."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class ClientLimiter:
    """Counts each client's running streams."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: Counter[str] = Counter()

    def acquire(self, client: str) -> bool:
        """Take a slot; False when the client already has ``limit`` streams running."""
        if self._running[client] >= self.limit:
            return False
        self._running[client] += 1
        return True

    def release(self, client: str) -> None:
        self._running[client] -= 1
        if self._running[client] <= 0:
            del self._running[client]


def _token_from(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return str(credentials.strip())
    if scope["type"] == "websocket":
        # Browsers cannot set headers on a WebSocket handshake.
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = query.get("token")
        if values:
            return str(values[0])
    return None


class Guard:
    """Checks the token and the body size before the app sees a request."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
        if self.token is not None and not open_path and not self._authorized(scope):
            if scope["type"] == "websocket":
                # Closing before accepting makes the server answer the handshake with 403.
                await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
                return
            await _send_error(send, 401, "missing or wrong bearer token", "invalid_api_key")
            return
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            await self._limited_body(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        given = _token_from(scope)
        assert self.token is not None
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def _limited_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole body (bounded) before the app runs, then replay it."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "bad Content-Length", None)
                    return
                if declared > self.max_body:
                    await _send_error(send, 413, _too_large(self.max_body), "request_too_large")
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body:
                await _send_error(send, 413, _too_large(self.max_body), "request_too_large")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_large(limit: int) -> str:
    return f"request body larger than {limit} bytes"


async def _send_error(send: Send, status: int, message: str, code: str | None) -> None:
    body = error_body(status, message, code=code)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
