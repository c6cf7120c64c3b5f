"""The ASGI app: routes, guards, CORS, the web page, and the lifetime of the store and streams."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

import cllm
from cllm import _provider
from cllm.limits import LimiterStore, MemoryStore
from cllm.server.api import ChatRoutes
from cllm.server.guards import ClientLimiter, Guard, HostPolicy
from cllm.server.openai_compat import OpenAIRoutes
from cllm.server.session import ChatService
from cllm.server.settings import Settings
from cllm.server.streams import StreamRegistry, StreamsUnavailable
from cllm.server.ws import ChatSocket
from cllm.store import Store, open_store

__all__ = ["STATIC_DIR", "allow_connections", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"


def _healthz(registry: StreamRegistry) -> Callable[[Request], Awaitable[Response]]:
    async def healthz(request: Request) -> Response:
        """``ok``, or ``degraded`` (503) when a shared service the server needs is out of reach."""
        try:
            details = await registry.health()
        except StreamsUnavailable as e:
            body = {
                "status": "degraded",
                "version": cllm.__version__,
                "streams": "unavailable",
                "error": str(e),
            }
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "version": cllm.__version__, **details})

    return healthz


def _limits_store(settings: Settings) -> LimiterStore:
    """Redis when the server shares it with others (limits and 429 pauses then hold across them
    all), else a store of this app's own."""
    if settings.redis_url is None:
        return MemoryStore()
    from cllm.limits.redis_store import RedisStore

    return RedisStore(settings.redis_url, lease=max(30.0, settings.stream_lease))


def _registry(settings: Settings) -> StreamRegistry:
    if settings.redis_url is None:
        return StreamRegistry(settings.resume_ttl)
    from cllm.server.redis_streams import RedisStreamRegistry

    return RedisStreamRegistry(settings.resume_ttl, settings.redis_url, settings.stream_lease)


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)


async def favicon(request: Request) -> Response:
    return FileResponse(
        STATIC_DIR / "favicon.ico", media_type="image/x-icon", headers={"cache-control": "max-age=86400"}
    )


# The page loads nothing from elsewhere; say so to the browser, so injected markup could not either.
_PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


_CONNECTION_LIMITS = ("AIOHTTP_CONNECTOR_LIMIT", "AIOHTTP_CONNECTOR_LIMIT_PER_HOST")


def allow_connections(count: int) -> None:
    """Let LiteLLM open ``count`` connections to one provider host.

    Its aiohttp transport opens at most ``AIOHTTP_CONNECTOR_LIMIT_PER_HOST`` (500) per host and
    ``AIOHTTP_CONNECTOR_LIMIT`` (1000) in all, and queues further requests without a word: past
    those, streams would wait for a connection while the server counted them as running. LiteLLM
    reads both variables when it is imported; if it already is, its copies are raised too (for the
    transports it builds from now on). A larger value already set is kept.
    """
    for name in _CONNECTION_LIMITS:
        current = os.environ.get(name, "")
        if not (current.isdigit() and int(current) >= count):
            os.environ[name] = str(count)
    handler = sys.modules.get("litellm.llms.custom_httpx.http_handler")
    for name in _CONNECTION_LIMITS:
        if handler is not None and 0 < getattr(handler, name, count) < count:
            setattr(handler, name, count)


FULL_GC_EVERY = 300.0


async def _collect_garbage(interval: float) -> None:
    """Run the garbage collector's young generations often and full collections on a timer.

    LiteLLM keeps every chunk of a running stream, so hundreds of concurrent streams make a heap of
    live objects that a full collection scans in hundreds of milliseconds, and by default those
    run every few seconds under load, stalling every stream. LiteLLM's import-time heap is frozen
    (never scanned again); full collections run every ``interval`` seconds instead.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000_000_000)
    while True:
        await asyncio.sleep(interval)
        gc.collect()


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    warm_up: bool = True,
    tune_gc: bool = False,
) -> Starlette:
    """The server's ASGI app.

    Args:
        settings: options, aliases and limits (see `Settings.load`).
        store: the conversation store to use; by default one is opened on
            ``settings.database_url`` (PostgreSQL) or ``settings.db`` (or cllm's default database)
            and closed at shutdown.
        warm_up: import LiteLLM at startup rather than on the first request.
        tune_gc: tune the process's garbage collector for many concurrent streams (`cllm serve`
            owns its process and does; an app embedded elsewhere leaves that to its host).
    """
    own_store = store is None
    store = store if store is not None else open_store(settings.database_url or settings.db, pool_size=16)
    # Every upstream request holds a slot, so LiteLLM never needs more connections than that.
    limiter = ClientLimiter(settings.max_streams_per_client, settings.max_streams)
    sockets = ClientLimiter(settings.max_websockets_per_client, what="websockets")
    allow_connections(settings.max_streams)
    registry = _registry(settings)
    limits_store = _limits_store(settings)
    models = settings.models.with_limits(limits_store, every_model=settings.redis_url is not None)
    service = ChatService(store, models, settings.scrubber)
    openai = OpenAIRoutes(models, settings.scrubber, limiter)
    chat = ChatRoutes(service, registry, limiter)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if warm_up:
            # LiteLLM takes seconds to import (with what its first call would load lazily): pay
            # that at startup, off the loop, not on the first request.
            await _provider.aload()
        collector = asyncio.create_task(_collect_garbage(FULL_GC_EVERY)) if tune_gc else None
        try:
            yield
        finally:
            if collector is not None:
                collector.cancel()
            await registry.aclose()
            aclose = getattr(limits_store, "aclose", None)
            if aclose is not None:
                await aclose()
            if own_store:
                store.close()

    routes = [
        Route("/healthz", _healthz(registry), methods=["GET"]),
        Route("/v1/models", openai.list_models, methods=["GET"]),
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/api/chat", chat.chat, methods=["POST"]),
        Route("/api/streams/{stream_id}", chat.resume, methods=["GET"]),
        Route("/api/streams/{stream_id}", chat.cancel, methods=["DELETE"]),
        Route("/api/conversations", chat.conversations, methods=["GET"]),
        Route("/api/conversations/{conversation_id}", chat.conversation, methods=["GET"]),
        Route("/api/conversations/{conversation_id}", chat.delete_conversation, methods=["DELETE"]),
        Route("/api/conversations/{conversation_id}", chat.rename_conversation, methods=["PATCH"]),
        WebSocketRoute("/ws", ChatSocket(service, limiter, sockets, settings.ws_idle_timeout).handle),
        Route("/", index, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    hosts = HostPolicy(settings.host, settings.allowed_hosts, settings.cors_origins)
    middleware = [Middleware(Guard, token=settings.token, max_body=settings.max_body, hosts=hosts)]
    if settings.cors_origins:
        # Outside the guard, so preflight requests (which carry no token) are answered.
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["authorization", "content-type", "last-event-id"],
                expose_headers=["x-cllm-stream-id"],
            ),
        )
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.registry = registry
    app.state.store = store
    app.state.limiter = limiter
    app.state.sockets = sockets
    return app
