"""``/ws``: chat over a WebSocket.

The client sends ``{"type": "message", "content", "model", "conversation_id"}`` (or ``messages``
instead of ``content``, and ``options``); the server answers ``{"type": "start",
"conversation_id"}``, one message per cllm event (``{"type": "text-delta", "text": ...}``...),
then ``{"type": "done", "response", "response_id", "conversation_id"}``. ``{"type": "cancel"}``
stops the running reply (it ends with an ``error`` of kind ``cancelled``). A bad message or a
failed reply gives ``{"type": "error", "message", ...}`` and the connection stays open. The reply
belongs to the connection: when the client goes, the upstream request is closed at once.

A connection with no reply running that receives nothing for ``idle_timeout`` seconds is closed
(code 1000, reason ``idle``); each client may hold a limited number of connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket

from cllm.server import payloads
from cllm.server.guards import ClientLimiter, client_key
from cllm.server.responses import request_error_response
from cllm.server.session import ChatRequest, ChatService, parse_chat_request
from cllm.server.settings import RequestError
from cllm.server.streams import Emit
from cllm.server.wire import dumps
from cllm.store import StoreError

__all__ = ["ChatSocket"]

logger = logging.getLogger("cllm.server")


class ChatSocket:
    """The ``/ws`` endpoint."""

    def __init__(
        self, service: ChatService, limiter: ClientLimiter, sockets: ClientLimiter, idle_timeout: float
    ) -> None:
        self.service = service
        self.limiter = limiter
        self.sockets = sockets
        self.idle_timeout = idle_timeout

    async def handle(self, websocket: WebSocket) -> None:
        client = client_key(websocket.scope)
        try:
            self.sockets.acquire(client)
        except RequestError as e:
            await _refuse(websocket, e)
            return
        try:
            await websocket.accept()
            await self._converse(websocket, client)
        finally:
            self.sockets.release(client)

    async def _converse(self, websocket: WebSocket, client: str) -> None:
        outbox: asyncio.Queue[str] = asyncio.Queue()

        def emit(kind: str, data: dict[str, Any]) -> None:
            outbox.put_nowait(dumps({"type": kind, **data}))

        sender = asyncio.create_task(_send_all(websocket, outbox))
        reply: asyncio.Task[None] | None = None
        receiving = asyncio.ensure_future(websocket.receive())
        try:
            while True:
                busy = reply is not None and not reply.done()
                waiting: set[asyncio.Future[Any]] = {receiving, reply} if busy and reply else {receiving}
                done, _ = await asyncio.wait(
                    waiting, timeout=None if busy else self.idle_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    await websocket.close(1000, "idle")
                    break
                if receiving not in done:
                    continue  # the reply ended: the idle clock starts now
                message = receiving.result()
                if message["type"] == "websocket.disconnect":
                    break
                receiving = asyncio.ensure_future(websocket.receive())
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                try:
                    incoming = payloads.loads(text, "the message")
                except RequestError as e:
                    emit("error", _bad(e.message, e.status))
                    continue
                kind = incoming.get("type") if isinstance(incoming, dict) else None
                if kind == "message":
                    if reply is not None and not reply.done():
                        emit("error", _bad("a reply is already running: cancel it first"))
                        continue
                    try:
                        request = parse_chat_request({k: v for k, v in incoming.items() if k != "type"})
                    except RequestError as e:
                        emit("error", _bad(e.message, e.status))
                        continue
                    reply = asyncio.create_task(self._reply(request, client, emit))
                elif kind == "cancel":
                    if reply is not None and not reply.done():
                        reply.cancel()
                elif kind == "ping":
                    emit("pong", {})
                else:
                    emit("error", _bad(f"unknown message type {kind!r}: use message, cancel or ping"))
        finally:
            receiving.cancel()
            if reply is not None and not reply.done():
                reply.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reply
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _reply(self, request: ChatRequest, client: str, emit: Emit) -> None:
        try:
            self.limiter.acquire(client)
        except RequestError as e:
            emit("error", _bad(e.message, e.status))
            return
        try:
            await self._run(request, emit)
        except Exception as e:
            # A reply reports its own failures; this is a bug, but the client still gets an answer.
            logger.exception("WebSocket reply failed")
            emit(
                "error",
                {
                    "message": f"internal error: {type(e).__name__}",
                    "kind": "internal_error",
                    "status_code": 500,
                },
            )
        finally:
            self.limiter.release(client)

    async def _run(self, request: ChatRequest, emit: Emit) -> None:
        try:
            turn = await self.service.turn(request)
        except RequestError as e:
            emit("error", _bad(e.message, e.status))
            return
        except StoreError as e:
            emit("error", {"message": str(e), "kind": "store_error", "status_code": 500})
            return
        emit("start", {"conversation_id": turn.conversation_id, "model": turn.model})
        finished: dict[str, Any] = {}

        def forward(kind: str, data: dict[str, Any]) -> None:
            if kind == "finish":
                finished.update(data)
            emit(kind, data)

        with contextlib.suppress(asyncio.CancelledError):
            await turn.run(forward)
        if finished:
            emit(
                "done",
                {
                    "response": finished.get("response"),
                    "response_id": finished.get("response_id"),
                    "conversation_id": turn.conversation_id,
                },
            )


def _bad(message: str, status: int = 400) -> dict[str, Any]:
    return {"message": message, "kind": "bad_request", "status_code": status}


async def _refuse(websocket: WebSocket, error: RequestError) -> None:
    """Answer the handshake with the error's status (or, where the server cannot, a 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(request_error_response(error))
    else:
        await websocket.close(1013, error.message)


async def _send_all(websocket: WebSocket, outbox: asyncio.Queue[str]) -> None:
    with contextlib.suppress(Exception):
        while True:
            await websocket.send_text(await outbox.get())
