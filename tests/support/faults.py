"""A scripted provider that fails on cue, for retry and fallback tests: OpenAI-format streams of a
known full text, cut after N deltas, and a responder that continues from an assistant prefix."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from support.replay_server import (
    Piece,
    RecordedRequest,
    ReplayServer,
    ScriptedResponse,
    error_response,
    json_response,
    stream_response,
)

__all__ = [
    "FULL_TEXT",
    "WORDS",
    "continuing",
    "error_response",
    "prefix_of",
    "sse",
    "text_stream",
    "tool_stream",
    "usage_chunk",
]

WORDS = [f"word{i} " if i % 7 else f"line{i}\n" for i in range(80)]
FULL_TEXT = "".join(WORDS)


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
    body: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return sse(body)


def usage_chunk(model: str, prompt: int, completion: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return sse(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [],
            "usage": usage,
        }
    )


def text_stream(
    pieces: Sequence[str],
    *,
    model: str = "gpt-4o-2024-08-06",
    cut_after: int | None = None,
    usage: tuple[int, int] | None = (20, 0),
    delay: float = 0.0,
) -> ScriptedResponse:
    """A text stream of ``pieces``; ``cut_after=N``: a usage chunk for what was sent, then a reset
    after N deltas (some servers report usage on the way). ``usage``: (prompt tokens, completion
    tokens or 0 for one per piece)."""
    body = [_chunk(model, {"role": "assistant", "content": ""})]
    sent = pieces if cut_after is None else pieces[:cut_after]
    body += [_chunk(model, {"content": p}) for p in sent]
    if cut_after is not None:
        if usage is not None:
            body.append(usage_chunk(model, usage[0], usage[1] or len(sent)))
        # An SSE comment a moment later, so the client has read everything before the reset
        # (a reset discards what the client has not read yet).
        pieces_out = [Piece(p, delay) for p in body] + [Piece(b": cut\n\n", 0.1)]
        return stream_response(pieces_out, reset_after=len(pieces_out))
    body.append(_chunk(model, {}, "stop"))
    if usage is not None:
        body.append(usage_chunk(model, usage[0], usage[1] or len(sent)))
    body.append(b"data: [DONE]\n\n")
    return stream_response(body, delay=delay)


def tool_stream(
    fragments: Sequence[str], *, cut_after: int | None = None, model: str = "gpt-4o"
) -> ScriptedResponse:
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "make_file", "arguments": ""},
    }
    body = [_chunk(model, {"role": "assistant", "content": None, "tool_calls": [first]})]
    sent = fragments if cut_after is None else fragments[:cut_after]
    body += [_chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) for f in sent]
    if cut_after is not None:
        pieces_out = [Piece(p) for p in body] + [Piece(b": cut\n\n", 0.1)]
        return stream_response(pieces_out, reset_after=len(pieces_out))
    body += [_chunk(model, {}, "tool_calls"), usage_chunk(model, 30, len(sent)), b"data: [DONE]\n\n"]
    return stream_response(body)


def prefix_of(request: RecordedRequest) -> str | None:
    """The assistant prefix a continuation request carries, or None."""
    messages = (request.json or {}).get("messages") or []
    if messages and messages[-1].get("role") == "assistant":
        content = messages[-1].get("content")
        return content if isinstance(content, str) else ""
    return None


def continuing(
    full_text: str = FULL_TEXT,
    *,
    model: str = "deepseek-chat",
    echo: bool = False,
    strip_seam: bool = False,
    piece: int = 9,
) -> Callable[[RecordedRequest], ScriptedResponse]:
    """A responder that continues ``full_text`` from the request's assistant prefix (the whole text
    without one). ``echo``: the prefix is sent back first (as Mistral does); ``strip_seam``: the
    answer repeats the prefix's trailing whitespace (as Anthropic does after stripping it)."""

    def respond(request: RecordedRequest) -> ScriptedResponse:
        prefix = prefix_of(request) or ""
        if not full_text.startswith(prefix):
            return error_response(400, "the prefix is not the start of the answer", code=None)
        rest = full_text[len(prefix) :]
        if strip_seam:
            seam = prefix[len(prefix.rstrip()) :]
            rest = seam + rest
        if echo:
            rest = prefix + rest
        pieces = [rest[i : i + piece] for i in range(0, len(rest), piece)]
        return text_stream(pieces, model=model, usage=(25, len(pieces)))

    return respond


def json_text(text: str, model: str = "gpt-4o") -> ScriptedResponse:
    return json_response(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
    )


def serve(*responses: ScriptedResponse | Callable[[RecordedRequest], ScriptedResponse]) -> ReplayServer:
    return ReplayServer(*responses)
