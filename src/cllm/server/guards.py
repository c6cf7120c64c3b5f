"""Guards in front of every route: where a request comes from (Host and Origin), the bearer
token, the body's type and size, and the per-client limits on concurrent streams and sockets.

Plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which would buffer streamed
responses and hide the client's disconnect).

A server on loopback without a token is still reachable from every web page the user opens: a
page on another origin can post a "simple" (``text/plain``) request or open a WebSocket, and a
page on a name the attacker controls can rebind that name to 127.0.0.1. So requests carrying an
``Origin`` other than the server's own (or a configured CORS origin) are refused, as are ``Host``
names the server does not answer to, and JSON endpoints take only ``application/json`` bodies.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cllm.server.settings import RequestError
from cllm.server.wire import error_body

__all__ = ["OPEN_PATHS", "ClientLimiter", "Guard", "HostPolicy", "client_key"]

# The health check, and the web page's own files: they hold no data, and a browser cannot send a
# bearer token when it navigates to a page. The page asks for the token and sends it on every call.
OPEN_PATHS = ("/healthz", "/", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)

_LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("0.0.0.0", "::", "")


def client_key(scope: Scope) -> str:
    """Who a request comes from, for the concurrency limits: the peer address."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class ClientLimiter:
    """Counts each client's running streams (or sockets), and the server's, against limits."""

    def __init__(self, limit: int, total: int | None = None, *, what: str = "streams") -> None:
        self.limit = limit
        self.total = total
        self.what = what
        self._running: Counter[str] = Counter()
        self._count = 0

    def acquire(self, client: str) -> None:
        """Take a slot, or raise `RequestError`: 429 when the client already holds ``limit``,
        503 when the whole server holds ``total``. Every acquire needs one `release`."""
        if self._running[client] >= self.limit:
            raise RequestError(
                429, f"too many concurrent {self.what} (limit {self.limit})", code=f"too_many_{self.what}"
            )
        if self.total is not None and self._count >= self.total:
            raise RequestError(
                503, f"the server is busy: {self.total} {self.what} are running", code="server_busy"
            )
        self._running[client] += 1
        self._count += 1

    def release(self, client: str) -> None:
        self._count -= 1
        self._running[client] -= 1
        if self._running[client] <= 0:
            del self._running[client]


class HostPolicy:
    """The ``Host`` names the server answers to and the origins it serves.

    Allowed names: ``localhost``, 127.0.0.1, ::1, the bound address (when bound to all interfaces,
    any IP address: an address cannot be rebound, a name can) and the configured ``allowed_hosts``
    (``"*"``: any). Ports are not compared: rebinding changes the name, not the port. An
    ``Origin`` is allowed when it is the server's own (the same host and port as ``Host``) or
    one of the CORS origins.
    """

    def __init__(self, bound: str, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()):
        bound = _bare(bound)
        self.any_address = bound in _WILDCARDS
        names = {*_LOCAL_NAMES, *(_bare(h) for h in allowed_hosts)}
        if not self.any_address:
            names.add(bound)
        self.any_host = "*" in names
        self.names = frozenset(names)
        self.origins = frozenset(o.rstrip("/").lower() for o in cors_origins)

    def host_allowed(self, host: str | None) -> bool:
        if host is None or self.any_host:
            return True  # only browsers matter here, and they always send Host
        name = _bare(_split_port(host)[0])
        if name in self.names:
            return True
        return self.any_address and _is_address(name)

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not a browser, or a same-origin GET
        if origin.rstrip("/").lower() in self.origins:
            return True
        if host is None or origin == "null":
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        default = "443" if parts.scheme == "https" else "80"
        return _netloc(parts.netloc, default) == _netloc(host, default)


def _split_port(host: str) -> tuple[str, str]:
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest.removeprefix(":")
    name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    return name, port


def _netloc(netloc: str, default_port: str) -> tuple[str, str]:
    name, port = _split_port(netloc)
    return _bare(name), port or default_port


def _bare(host: str) -> str:
    return host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return None


def _text_header(scope: Scope, wanted: bytes) -> str | None:
    value = _header(scope, wanted)
    return None if value is None else value.decode("latin-1")


def _token_from(scope: Scope) -> bytes | None:
    """The credentials as raw bytes (a non-ASCII token arrives as its UTF-8 bytes)."""
    value = _header(scope, b"authorization")
    if value is not None:
        scheme, _, credentials = value.partition(b" ")
        if scheme.lower() == b"bearer":
            return credentials.strip()
    if scope["type"] == "websocket":
        # Browsers cannot set headers on a WebSocket handshake.
        for pair in bytes(scope.get("query_string", b"")).split(b"&"):
            name, _, value = pair.partition(b"=")
            if name == b"token":
                return unquote_to_bytes(value.replace(b"+", b" "))
    return None


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


class Guard:
    """Checks Host, Origin, the token, and the body's type and size before the app sees a request."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, max_body: int, hosts: HostPolicy | None = None
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body
        self.hosts = hosts or HostPolicy("127.0.0.1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, message, code = refusal
            if scope["type"] == "websocket":
                # Closing before accepting makes the server answer the handshake with 403.
                await send({"type": "websocket.close", "code": 1008, "reason": code})
                return
            await _send_error(send, status, message, code)
            return
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            if not _is_json(_header(scope, b"content-type")):
                await _send_error(
                    send, 415, "the request body must be application/json", "unsupported_media_type"
                )
                return
            await self._limited_body(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        host = _text_header(scope, b"host")
        if not self.hosts.host_allowed(host):
            return (
                403,
                "this server does not answer to that Host name (see --allowed-host)",
                "host_not_allowed",
            )
        if not self.hosts.origin_allowed(_text_header(scope, b"origin"), host):
            return 403, "cross-origin requests are not allowed (see --cors-origin)", "origin_not_allowed"
        path = scope["path"]
        open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
        if self.token is not None and not open_path and not self._authorized(scope):
            return 401, "missing or wrong bearer token", "invalid_api_key"
        return None

    def _authorized(self, scope: Scope) -> bool:
        given = _token_from(scope)
        assert self.token is not None
        return given is not None and hmac.compare_digest(given, self.token)

    async def _limited_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole body (bounded) before the app runs, then replay it."""
        declared_raw = _header(scope, b"content-length")
        if declared_raw is not None:
            try:
                declared = int(declared_raw)
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
