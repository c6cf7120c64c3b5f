"""``/ws``: chat over a WebSocket.

The client sends ``{"type": "message", "content", "model", "conversation_id"}`` (or ``messages``
instead of ``content``, and ``options``); the server answers ``{"type": "start",
"conversation_id"}``, one message per cllm event (``{"type": "text-delta", "text": ...}``...),
then ``{"type": "done", "response", "response_id", "conversation_id"}``. ``{"type": "cancel"}``
stops the running reply (it ends with an ``error`` of kind ``cancelled``). A bad message or a
failed reply gives ``{"type": "error", "message", ...}`` and the connection stays open. The reply
belongs to the connection: when the client goes, the upstream request is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket

from cllm.server.guards import ClientLimiter, client_key
from cllm.server.session import ChatRequest, ChatService, parse_chat_request
from cllm.server.settings import RequestError
from cllm.server.wire import dumps
from cllm.store import StoreError

__all__ = ["ChatSocket"]


class ChatSocket:
    """The ``/ws`` endpoint."""

    def __init__(self, service: ChatService, limiter: ClientLimiter) -> None:
        self.service = service
        self.limiter = limiter

    async def handle(self, websocket: WebSocket) -> None:
        await websocket.accept()
        outbox: asyncio.Queue[str] = asyncio.Queue()

        def emit(kind: str, data: dict[str, Any]) -> None:
            outbox.put_nowait(dumps({"type": kind, **data}))

        sender = asyncio.create_task(_send_all(websocket, outbox))
        reply: asyncio.Task[None] | None = None
        client = client_key(websocket.scope)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                try:
                    incoming = json.loads(text)
                except ValueError:
                    emit("error", _bad("the message is not valid JSON"))
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
            if reply is not None and not reply.done():
                reply.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reply
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _reply(self, request: ChatRequest, client: str, emit: Any) -> None:
        if not self.limiter.acquire(client):
            emit("error", _bad(f"too many concurrent streams (limit {self.limiter.limit})", 429))
            return
        try:
            try:
                turn = await self.service.turn(request)
            except RequestError as e:
                emit("error", _bad(e.message, e.status))
                return
            except StoreError as e:
                emit("error", {"message": str(e), "kind": "store_error", "status_code": 500})
                return
            emit("start", {"conversation_id": turn.conversation_id})
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
        finally:
            self.limiter.release(client)


def _bad(message: str, status: int = 400) -> dict[str, Any]:
    return {"message": message, "kind": "bad_request", "status_code": status}


async def _send_all(websocket: WebSocket, outbox: asyncio.Queue[str]) -> None:
    with contextlib.suppress(Exception):
        while True:
            await websocket.send_text(await outbox.get())
