"""``/v1/chat/completions`` and ``/v1/models``: OpenAI's API in front of any LiteLLM model.

The reply is streamed with cllm and its events are turned back into OpenAI chunks, so every
provider looks like OpenAI to the client, with normalized finish reasons and tool calls. The
upstream request lives exactly as long as the client's: a disconnect closes it at once.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send

import cllm
from cllm.core.events import Finish
from cllm.errors import CllmError, ProviderError, StreamTimeout
from cllm.server.guards import ClientLimiter, client_key
from cllm.server.responses import (
    SSE_HEADERS,
    BatchingWriter,
    Body,
    WatchedResponse,
    error_response,
    request_error_response,
)
from cllm.server.session import check_messages, filter_options
from cllm.server.settings import ModelTable, RequestError, Scrubber
from cllm.server.wire import ChunkEncoder, error_message, openai_completion

__all__ = ["OpenAIRoutes"]

_KIND_STATUS = {
    "AuthenticationError": 401,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "BadRequestError": 400,
    "UnprocessableEntityError": 422,
    "RateLimitError": 429,
    "ContextWindowExceededError": 400,
    "ContentPolicyViolationError": 400,
    "Timeout": 504,
    "APIConnectionError": 502,
    "ServiceUnavailableError": 503,
}


def error_status(exc: BaseException) -> int:
    """The HTTP status to answer a failed call with."""
    if isinstance(exc, StreamTimeout):
        return 504
    if isinstance(exc, ProviderError):
        if exc.status_code and 400 <= exc.status_code < 600:
            return exc.status_code
        return _KIND_STATUS.get(exc.kind or "", 502)
    if isinstance(exc, ValueError):
        return 400
    return 500 if not isinstance(exc, CllmError) else 502


def parse_completion_request(
    body: Any,
) -> tuple[str | None, list[dict[str, Any]], bool, bool, dict[str, Any]]:
    """(model, messages, stream, include_usage, options) from a request body, or `RequestError`."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, "'model' must be a string", param="model")
    messages = check_messages(body.get("messages"))
    if body.get("n", 1) not in (1, None):
        raise RequestError(400, "only n=1 is supported", param="n")
    stream = bool(body.get("stream", False))
    stream_options = body.get("stream_options") or {}
    include_usage = bool(isinstance(stream_options, dict) and stream_options.get("include_usage"))
    return model or None, messages, stream, include_usage, filter_options(body)


class OpenAIRoutes:
    """The handlers, bound to the server's model table, scrubber and limiter."""

    def __init__(self, models: ModelTable, scrubber: Scrubber, limiter: ClientLimiter) -> None:
        self.models = models
        self.scrub = scrubber
        self.limiter = limiter

    async def list_models(self, request: Request) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "cllm"} for name in self.models.names()
        ]
        return JSONResponse({"object": "list", "data": data})

    def _error(self, exc: BaseException) -> Response:
        code = getattr(exc, "kind", None)
        return error_response(error_status(exc), self.scrub(error_message(exc)), code=code)

    async def chat_completions(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error_response(400, "the request body is not valid JSON")
        try:
            requested, messages, stream, include_usage, options = parse_completion_request(body)
            litellm_model, params = self.models.resolve(requested)
        except RequestError as e:
            return request_error_response(e)
        name = requested or litellm_model
        kwargs = {**params, **options}
        if not stream:
            return WatchedResponse(self._complete_body(name, litellm_model, messages, kwargs))
        client = client_key(request.scope)
        if not self.limiter.acquire(client):
            return error_response(
                429, f"too many concurrent streams (limit {self.limiter.limit})", code="too_many_streams"
            )
        encoder = ChunkEncoder(name, include_usage=include_usage)
        return WatchedResponse(
            self._stream_body(encoder, litellm_model, messages, kwargs),
            on_close=lambda: self.limiter.release(client),
        )

    def _complete_body(
        self, name: str, litellm_model: str, messages: list[dict[str, Any]], kwargs: dict[str, Any]
    ) -> Body:
        async def body(send: Send) -> None:
            try:
                response = await cllm.acomplete(litellm_model, messages, stream=False, **kwargs)
            except Exception as e:
                await self._error(e)(_scope_less, _no_receive, send)
                return
            await JSONResponse(openai_completion(response, name))(_scope_less, _no_receive, send)

        return body

    def _stream_body(
        self,
        encoder: ChunkEncoder,
        litellm_model: str,
        messages: list[dict[str, Any]],
        kwargs: dict[str, Any],
    ) -> Body:
        async def body(send: Send) -> None:
            try:
                stream = cllm.astream(litellm_model, messages, **kwargs)
            except Exception as e:
                await self._error(e)(_scope_less, _no_receive, send)
                return
            async with stream:
                events = stream.__aiter__()
                try:
                    first = await events.__anext__()
                except StopAsyncIteration:
                    first = None
                except Exception as e:
                    # Nothing sent yet: the client gets a proper status.
                    await self._error(e)(_scope_less, _no_receive, send)
                    return
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                writer = BatchingWriter(send)
                try:
                    writer.write(encoder.first().decode())
                    if first is not None:
                        writer.write(
                            encoder.encode(first, stream.response if isinstance(first, Finish) else None)
                        )
                    try:
                        async for event in events:
                            text = encoder.encode(
                                event, stream.response if isinstance(event, Finish) else None
                            )
                            if text:
                                writer.write(text)
                    except CllmError as e:
                        writer.write(encoder.error(error_status(e), self.scrub(error_message(e))).decode())
                    await writer.aclose()
                finally:
                    writer.cancel()

        return body


# Starlette responses need a scope and receive only for websocket denials and range requests.
_scope_less: dict[str, Any] = {"type": "http"}


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}
