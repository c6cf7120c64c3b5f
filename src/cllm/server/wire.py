"""What goes on the wire: cllm events as JSON, SSE frames, OpenAI chunks and error bodies.

Pure: no I/O, no Starlette, no LiteLLM. Each event is encoded once; every reader of a stream
gets the same bytes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from cllm.core.events import (
    Attempt,
    Event,
    Finish,
    Queued,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from cllm.core.finish import FinishReason
from cllm.core.response import Response, Usage
from cllm.errors import CllmError, ProviderError, StreamInterrupted, StreamTimeout

__all__ = [
    "DONE",
    "ChunkEncoder",
    "Scrub",
    "dumps",
    "error_body",
    "error_data",
    "error_message",
    "event_data",
    "openai_completion",
    "openai_finish_reason",
    "partial_response",
    "scrubbed_response",
    "sse_frame",
    "usage_dict",
]

Scrub = Callable[[str], str]
"""Hides secrets in text meant for clients (`cllm.server.settings.Scrubber` is one)."""

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)

# Deeper than any value the server builds itself; a client's or model's deeper value is cut here.
_MAX_DEPTH = 300
_TOO_DEEP = "(nested too deeply)"


def dumps(value: Any) -> str:
    """Compact JSON; values JSON cannot hold become strings, and values nested too deeply to encode
    are cut (the part beyond the limit becomes a string) rather than failing the stream."""
    try:
        return _encoder.encode(value)
    except RecursionError:
        return _encoder.encode(_cut(value, _MAX_DEPTH))


def _cut(value: Any, depth: int) -> Any:
    if isinstance(value, dict | list | tuple):
        if depth <= 0:
            return _TOO_DEEP
        if isinstance(value, dict):
            return {k: _cut(v, depth - 1) for k, v in value.items()}
        return [_cut(v, depth - 1) for v in value]
    return value


def sse_frame(event: str | None, data: str, event_id: int | None = None) -> bytes:
    """One server-sent event. ``data`` must be one line (compact JSON is)."""
    head = ""
    if event_id is not None:
        head = f"id: {event_id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {data}\n\n".encode()


def usage_dict(usage: Usage | None) -> dict[str, Any] | None:
    """Usage in OpenAI's shape, None when the provider reported none."""
    if usage is None:
        return None
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens or 0,
        "completion_tokens": usage.completion_tokens or 0,
        "total_tokens": usage.total_tokens or (usage.prompt_tokens or 0) + (usage.completion_tokens or 0),
    }
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    if usage.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return out


def event_data(event: Event) -> dict[str, Any]:
    """The JSON payload of a cllm event (its type goes in the SSE ``event:`` line or ``"type"``)."""
    if isinstance(event, TextDelta | ReasoningDelta):
        return {"text": event.text}
    if isinstance(event, ToolCallStart):
        return {"index": event.index, "id": event.id, "name": event.name}
    if isinstance(event, ToolCallDelta):
        return {
            "index": event.index,
            "id": event.id,
            "name": event.name,
            "arguments_delta": event.arguments_delta,
            "arguments": event.arguments,
        }
    if isinstance(event, ToolCallEnd):
        return {
            "index": event.index,
            "id": event.id,
            "name": event.name,
            "arguments": event.arguments,
            "arguments_json": event.arguments_json,
            "error": event.error,
        }
    if isinstance(event, Finish):
        return {
            "reason": event.reason.value,
            "raw_reason": event.raw_reason,
            "usage": None if event.usage is None else usage_dict(event.usage),
        }
    if isinstance(event, Queued):
        return {}  # waiting for the model's capacity: the reply starts when there is room
    if isinstance(event, Attempt):
        return {
            "number": event.number,
            "model": event.model,
            "error": event.error,
            "delay": event.delay,
            "discard": event.discard,
            "reason": event.reason,
        }
    raise TypeError(f"not a cllm event: {event!r}")


def error_message(exc: BaseException) -> str:
    """What a client is told about a failure: cllm's and bad-value messages as they are, nothing
    of any other exception but its type (it may be a bug, with internals in its message)."""
    if isinstance(exc, CllmError | ValueError):
        return str(exc)
    return f"internal error: {type(exc).__name__}"


def error_data(exc: BaseException, scrub: Scrub | None = None) -> dict[str, Any]:
    """The payload of an ``error`` event: message, kind, status and the partial response if any."""
    scrub = scrub or (lambda text: text)
    response: Response | None = None
    status: int | None = None
    if isinstance(exc, ProviderError):
        kind = exc.kind or "provider_error"
        status = exc.status_code
    elif isinstance(exc, StreamTimeout):
        kind, status, response = "timeout", 504, exc.response
    elif isinstance(exc, StreamInterrupted):
        kind = "interrupted" if type(exc) is StreamInterrupted else type(exc).__name__
        response = exc.response
    elif isinstance(exc, CllmError | ValueError):
        kind = type(exc).__name__
    else:
        kind = "internal_error"
    data: dict[str, Any] = {"message": scrub(error_message(exc)), "kind": kind, "status_code": status}
    if isinstance(exc, StreamTimeout):
        data["timeout"] = exc.kind
    if response is not None:
        data["response"] = partial_response(response, scrub)
    return data


def scrubbed_response(response: Response, scrub: Scrub) -> dict[str, Any]:
    """`Response.to_dict` with its error message scrubbed."""
    data = response.to_dict()
    if data.get("error"):
        data["error"] = scrub(data["error"])
    return data


def partial_response(response: Response, scrub: Scrub) -> dict[str, Any] | None:
    """`scrubbed_response` for an error report, which must go out whatever happens: None when the
    response cannot be turned into JSON."""
    try:
        return scrubbed_response(response, scrub)
    except Exception:
        return None


# -- OpenAI ----------------------------------------------------------------------------------------

_OPENAI_REASONS = {
    FinishReason.STOP: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.TOOL_CALLS: "tool_calls",
    FinishReason.CONTENT_FILTER: "content_filter",
}


def openai_finish_reason(reason: FinishReason | None) -> str:
    """cllm's finish reason in OpenAI's spelling (which has no error/cancelled/other: "stop")."""
    return _OPENAI_REASONS.get(reason, "stop") if reason is not None else "stop"


def _status_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if 400 <= status < 500:
        return "invalid_request_error"
    return "api_error"


def error_body(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    type: str | None = None,
) -> bytes:
    """OpenAI's error format: ``{"error": {"message", "type", "param", "code"}}``; ``type`` is
    taken from the status unless given (a provider's own type is passed on as it is)."""
    body = {"error": {"message": message, "type": type or _status_type(status), "param": param, "code": code}}
    return dumps(body).encode()


DONE = "data: [DONE]\n\n"
"""The last frame of every OpenAI stream."""


class ChunkEncoder:
    """Turns cllm events into OpenAI ``chat.completion.chunk`` SSE frames for one response.

    Tool-call ids and names are sent once per index (on the first delta of that call), the finish
    reason in OpenAI's spelling on a chunk of its own, and usage on a last chunk with no choices
    when the client asked for it.
    """

    def __init__(self, model: str, *, include_usage: bool = False, completion_id: str | None = None) -> None:
        self.id = completion_id or f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        head = dumps(
            {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": model}
        )
        # Every chunk shares this prefix: only the delta is encoded per event.
        self._prefix = "data: " + head[:-1] + ',"choices":[{"index":0,"delta":'
        self._usage_prefix = "data: " + head[:-1] + ',"choices":[],"usage":'
        self._tool_ids: dict[int, str] = {}
        self._sent_role = False
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        if not self._sent_role:
            self._sent_role = True
            delta = {"role": "assistant", "content": None, **delta}
        reason = "null" if finish_reason is None else f'"{finish_reason}"'
        return f'{self._prefix}{dumps(delta)},"logprobs":null,"finish_reason":{reason}}}]}}\n\n'

    def first(self, event: Event | None) -> str:
        """The opening chunk with the assistant role, as OpenAI sends it for the answer's first
        event: ``"content": ""`` on a chunk of its own before text, nothing before a tool call or
        reasoning (their own chunk carries the role, with ``"content": null``)."""
        if isinstance(event, ToolCallStart | ToolCallDelta | ReasoningDelta):
            return ""
        return self._chunk({"content": ""})

    def encode(self, event: Event, response: Response | None = None) -> str:
        """The SSE text for one event ('' when it has nothing to send). For `Finish`, pass the final
        response so usage is taken from it."""
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text})
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text})
        if isinstance(event, ToolCallStart):
            call_id = event.id or f"call_{uuid.uuid4().hex[:24]}"
            self._tool_ids[event.index] = call_id
            tool = {
                "index": event.index,
                "id": call_id,
                "type": "function",
                "function": {"name": event.name or "", "arguments": ""},
            }
            return self._chunk({"tool_calls": [tool]})
        if isinstance(event, ToolCallDelta):
            tool = {"index": event.index, "function": {"arguments": event.arguments_delta}}
            return self._chunk({"tool_calls": [tool]})
        if isinstance(event, Finish):
            text = self._chunk({}, openai_finish_reason(event.reason))
            usage = event.usage if response is None else response.usage
            if self.include_usage:
                text += f"{self._usage_prefix}{dumps(usage_dict(usage) or usage_dict(Usage(0, 0, 0)))}}}\n\n"
            self.done = True
            return text + DONE
        return ""

    def error(self, status: int, message: str, code: str | None = None, type: str | None = None) -> str:
        """A mid-stream error, as OpenAI sends it (the openai client raises `APIError` on it)."""
        self.done = True
        return "data: " + error_body(status, message, code=code, type=type).decode() + "\n\n"


def openai_completion(response: Response, model: str) -> dict[str, Any]:
    """A whole `Response` as an OpenAI ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": response.text or None,
        "refusal": response.refusal,
    }
    if response.reasoning:
        message["reasoning_content"] = response.reasoning
    if response.tool_calls:
        message["tool_calls"] = [call.message() for call in response.tool_calls]
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": openai_finish_reason(response.finish_reason),
            }
        ],
        "usage": usage_dict(response.usage) or usage_dict(Usage(0, 0, 0)),
    }
