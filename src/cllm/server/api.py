"""cllm's own HTTP API: ``/api/chat`` (SSE of cllm events), stream resume and cancel, conversations.

``POST /api/chat`` starts a generation in the `StreamRegistry` and reads it; the generation does
not depend on the request, so a client that drops can resume with ``GET /api/streams/{id}`` and
``Last-Event-ID`` and get every event after that one, then the rest live.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from cllm.server import payloads
from cllm.server.guards import ClientLimiter, client_key
from cllm.server.responses import SSE_HEADERS, WatchedResponse, error_response, request_error_response
from cllm.server.session import ChatService, parse_chat_request
from cllm.server.settings import RequestError
from cllm.server.streams import StreamRegistry, StreamsUnavailable, StreamView
from cllm.store import StoreError
from cllm.store.records import clean_title

__all__ = ["ChatRoutes"]


def _store_error(e: StoreError) -> Response:
    return error_response(500, str(e), code="store_error")


def _unavailable(e: StreamsUnavailable) -> Response:
    return error_response(503, str(e), code="streams_unavailable", type="service_unavailable")


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(400, f"'{name}' must be an integer", param=name) from None
    if not 0 <= value <= maximum:
        raise RequestError(400, f"'{name}' must be between 0 and {maximum}", param=name)
    return value


class ChatRoutes:
    """The ``/api`` handlers, bound to the chat service, the stream registry and the limiter."""

    def __init__(self, service: ChatService, registry: StreamRegistry, limiter: ClientLimiter) -> None:
        self.service = service
        self.registry = registry
        self.limiter = limiter

    async def chat(self, request: Request) -> Response:
        client = client_key(request.scope)
        try:
            chat_request = parse_chat_request(payloads.loads(await request.body()))
            self.limiter.acquire(client)
        except RequestError as e:
            return request_error_response(e)
        stream: StreamView | None = None
        try:
            turn = await self.service.turn(chat_request)
            stream = await self.registry.open(
                turn.conversation_id, turn.run, on_done=lambda: self.limiter.release(client)
            )
        except RequestError as e:
            return request_error_response(e)
        except StreamsUnavailable as e:
            return _unavailable(e)
        except StoreError as e:
            return _store_error(e)
        finally:
            if stream is None:  # the generation never started: its slot is free again
                self.limiter.release(client)
        return self._read(stream, 0)

    async def resume(self, request: Request) -> Response:
        """Events after ``Last-Event-ID``. 204 when a finished stream has nothing more to give
        (an EventSource then stops reconnecting); 400 for an id the stream never reached."""
        try:
            stream = await self.registry.find(request.path_params["stream_id"])
        except StreamsUnavailable as e:
            return _unavailable(e)
        if stream is None:
            return error_response(404, "no such stream (it may have expired)", code="stream_not_found")
        raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "0"
        try:
            after = int(raw)
        except ValueError:
            after = -1
        if after < 0:
            return error_response(400, "Last-Event-ID must be an event number", param="Last-Event-ID")
        if after > stream.last_id:
            return error_response(
                400,
                f"Last-Event-ID {after} is beyond this stream's last event ({stream.last_id})",
                code="event_id_out_of_range",
                param="Last-Event-ID",
            )
        if stream.finished and after == stream.last_id:
            return Response(status_code=204, headers={"x-cllm-stream-id": stream.id})
        return self._read(stream, after)

    async def cancel(self, request: Request) -> Response:
        stream_id = request.path_params["stream_id"]
        try:
            found = await self.registry.cancel(stream_id)
        except StreamsUnavailable as e:
            return _unavailable(e)
        if not found:
            return error_response(404, "no such stream (it may have expired)", code="stream_not_found")
        return JSONResponse({"stream_id": stream_id, "cancelled": True})

    def _read(self, stream: StreamView, after: int) -> Response:
        registry = self.registry

        async def body(send: Send) -> None:
            registry.attach(stream)
            try:
                headers = [*SSE_HEADERS, (b"x-cllm-stream-id", stream.id.encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": stream.head(), "more_body": True})
                async for piece in stream.read(after):
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                registry.detach(stream)

        return WatchedResponse(body)

    # -- conversations ---------------------------------------------------------------------------

    async def conversations(self, request: Request) -> Response:
        try:
            limit = _int_param(request, "limit", 50, 1000)
            offset = _int_param(request, "offset", 0, 10**9)
            found = await run_in_threadpool(self.service.store.list_conversations, limit, offset)
        except RequestError as e:
            return request_error_response(e)
        except StoreError as e:
            return _store_error(e)
        return JSONResponse({"conversations": [c.to_dict() for c in found]})

    async def conversation(self, request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]
        store = self.service.store
        try:
            conversation = await run_in_threadpool(store.get_conversation, conversation_id)
            if conversation is None:
                return error_response(
                    404, f"no conversation {conversation_id}", code="conversation_not_found"
                )
            responses = await run_in_threadpool(
                lambda: store.responses(limit=None, conversation_id=conversation_id)
            )
        except StoreError as e:
            return _store_error(e)
        data: dict[str, Any] = conversation.to_dict()
        data["responses"] = [r.to_dict() for r in reversed(responses)]
        return JSONResponse(data)

    async def delete_conversation(self, request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]
        try:
            deleted = await run_in_threadpool(self.service.store.delete_conversation, conversation_id)
        except StoreError as e:
            return _store_error(e)
        if not deleted:
            return error_response(404, f"no conversation {conversation_id}", code="conversation_not_found")
        return JSONResponse({"id": conversation_id, "deleted": True})

    async def rename_conversation(self, request: Request) -> Response:
        """``PATCH {"title": "..."}``: the renamed conversation."""
        conversation_id = request.path_params["conversation_id"]
        try:
            body = payloads.loads(await request.body())
            if not isinstance(body, dict) or not isinstance(body.get("title"), str):
                raise RequestError(400, "give the new 'title' (a string)", param="title")
            unknown = sorted(set(body) - {"title"})
            if unknown:
                raise RequestError(400, f"fields not allowed: {', '.join(unknown)}", param=unknown[0])
            try:
                title = clean_title(body["title"])
            except ValueError as e:
                raise RequestError(400, str(e), param="title") from None
            renamed = await run_in_threadpool(self.service.store.rename_conversation, conversation_id, title)
        except RequestError as e:
            return request_error_response(e)
        except StoreError as e:
            return _store_error(e)
        if renamed is None:
            return error_response(404, f"no conversation {conversation_id}", code="conversation_not_found")
        return JSONResponse(renamed.to_dict())
