"""``/v1/chat/completions`` and ``/v1/models``: OpenAI's API in front of any LiteLLM model.

The reply is streamed with cllm and its events are turned back into OpenAI chunks, so every
provider looks like OpenAI to the client, with normalized finish reasons and tool calls. The
upstream request lives exactly as long as the client's: a disconnect closes it at once.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send

import cllm
from cllm.core.events import Attempt, Event, Finish, Queued
from cllm.errors import CllmError, ProviderError, StreamTimeout
from cllm.server import payloads
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
from cllm.server.wire import DONE, ChunkEncoder, error_message, openai_completion

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
    "ServiceUnavailableError": 503,
}

# Whatever status LiteLLM gives these (500 for a dropped connection, 408 for its own timeout),
# the client's request is fine: the provider could not be reached, or did not answer in time.
_GATEWAY_STATUS = {"APIConnectionError": 502, "Timeout": 504}
# What those look like further down the chain, where LiteLLM reports a dropped connection as an
# InternalServerError (its non-streaming calls do).
_CAUSE_KIND = {
    "APIConnectionError": "APIConnectionError",
    "ClientConnectionError": "APIConnectionError",
    "ClientPayloadError": "APIConnectionError",
    "ServerDisconnectedError": "APIConnectionError",
    "ConnectError": "APIConnectionError",
    "ReadError": "APIConnectionError",
    "RemoteProtocolError": "APIConnectionError",
    "APITimeoutError": "Timeout",
    "TimeoutException": "Timeout",
    "ReadTimeout": "Timeout",
    "ConnectTimeout": "Timeout",
}


def failure_kind(exc: ProviderError) -> str | None:
    """LiteLLM's kind of failure, or the gateway kind (a dropped connection, a timeout) found in
    the exception's causes when LiteLLM gave it another name."""
    if exc.kind in _GATEWAY_STATUS:
        return exc.kind
    cause: BaseException | None = exc.__cause__
    for _ in range(10):
        if cause is None:
            break
        if (found := _CAUSE_KIND.get(type(cause).__name__)) is not None:
            return found
        cause = cause.__cause__ or cause.__context__
    return exc.kind


def error_status(exc: BaseException) -> int:
    """The HTTP status to answer a failed call with."""
    if isinstance(exc, StreamTimeout):
        return 504
    if isinstance(exc, ProviderError):
        kind = failure_kind(exc)
        if kind in _GATEWAY_STATUS:
            return _GATEWAY_STATUS[kind]
        if exc.status_code and 400 <= exc.status_code < 600:
            return exc.status_code
        return _KIND_STATUS.get(kind or "", 502)
    if isinstance(exc, ValueError):
        return 400
    return 500 if not isinstance(exc, CllmError) else 502


def _error_fields(exc: BaseException) -> tuple[int, str | None, str | None]:
    """(status, code, type) of an OpenAI error body for a failed call: the provider's own code
    and type when it sent them, else LiteLLM's kind of failure as the code."""
    if isinstance(exc, ProviderError):
        return error_status(exc), exc.code or failure_kind(exc), exc.error_type
    if isinstance(exc, StreamTimeout):
        return error_status(exc), f"{exc.kind}_timeout", None
    return error_status(exc), None, None


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
        """A failed call in OpenAI's format, keeping the provider's own error type and code."""
        status, code, kind = _error_fields(exc)
        return error_response(status, self.scrub(error_message(exc)), code=code, type=kind)

    def _error_chunk(self, encoder: ChunkEncoder, exc: BaseException) -> str:
        status, code, kind = _error_fields(exc)
        return encoder.error(status, self.scrub(error_message(exc)), code=code, type=kind)

    async def chat_completions(self, request: Request) -> Response:
        client = client_key(request.scope)
        try:
            body = payloads.loads(await request.body())
            requested, messages, stream, include_usage, options = parse_completion_request(body)
            litellm_model, kwargs = self.models.call(requested, options)
            self.limiter.acquire(client)
        except RequestError as e:
            return request_error_response(e)
        try:
            name = requested or litellm_model
            if stream:
                if kwargs.get("mid_stream", "continue") != "raise" and (
                    kwargs.get("retries") is not None or kwargs.get("fallbacks") or kwargs.get("mid_stream")
                ):
                    # What was sent on cannot be taken back: continue where possible, else raise.
                    kwargs["mid_stream"] = "continue-or-raise"
                encoder = ChunkEncoder(name, include_usage=include_usage)
                body_of = self._stream_body(encoder, litellm_model, messages, kwargs)
            else:
                if "total_timeout" not in kwargs and "first_token_timeout" in kwargs:
                    # Nothing arrives before the whole answer: its first token is its last.
                    kwargs["total_timeout"] = kwargs["first_token_timeout"]
                body_of = self._complete_body(name, litellm_model, messages, kwargs)
            return WatchedResponse(body_of, on_close=lambda: self.limiter.release(client))
        except BaseException:
            self.limiter.release(client)
            raise

    def _complete_body(
        self, name: str, litellm_model: str, messages: list[dict[str, Any]], kwargs: dict[str, Any]
    ) -> Body:
        async def body(send: Send) -> None:
            try:
                response = await cllm.acomplete(litellm_model, messages, stream=False, **kwargs)
                reply: Response = JSONResponse(openai_completion(response, name))
            except Exception as e:
                reply = self._error(e)
            await reply(_scope_less, _no_receive, send)

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
                first: Event | None
                try:
                    first = await events.__anext__()
                    # Waiting for capacity, or retrying before any output: the answer starts later.
                    while isinstance(first, Queued | Attempt):
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
                    try:
                        writer.write(encoder.first(first))
                        event: Event | None = first
                        while event is not None:
                            final = stream.response if isinstance(event, Finish) else None
                            text = encoder.encode(event, final)
                            if text:
                                writer.write(text)
                            event = await anext(events, None)
                        if not encoder.done:
                            writer.write(DONE)
                    except Exception as e:
                        # Whatever failed (the provider, or turning an event into a chunk), the
                        # body still ends as OpenAI's do: an error chunk, then [DONE].
                        writer.write(self._error_chunk(encoder, e) + DONE)
                    await writer.aclose()
                finally:
                    writer.cancel()

        return body


# Starlette responses need a scope and receive only for websocket denials and range requests.
_scope_less: dict[str, Any] = {"type": "http"}


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}
