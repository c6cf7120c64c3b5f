"""Scripted OpenAI-style answers for tests of many requests at once, and what to measure on them.

Builds streamed and non-streamed chat completions (with the usage to report), 429s with a
``Retry-After``, and reads back from a `ReplayServer`'s exchanges how many requests the provider
had in flight at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from support.replay_server import (
    Exchange,
    Piece,
    ScriptedResponse,
    error_response,
    json_response,
    stream_response,
)

__all__ = [
    "MODEL",
    "completion",
    "peak_in_flight",
    "prompt_of",
    "rate_limited",
    "text_stream",
]

MODEL = "openai/gpt-4o-2024-08-06"
_LAST_DELAY = 0.02


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(
    delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None
) -> bytes:
    body: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return _sse(body)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def text_stream(
    words: Sequence[str] = ("Hello", " world"),
    *,
    delay: float = 0.0,
    usage: tuple[int, int] | None = (9, 4),
    hang: bool = False,
) -> ScriptedResponse:
    """A streamed answer, ``delay`` seconds between pieces, reporting ``usage`` (prompt, completion).

    The last piece always comes after a short pause, so `peak_in_flight` knows a lower bound of when
    the client can have seen the end. ``hang``: stop before the finish and keep the connection open.
    """
    pieces: list[bytes | Piece] = [_chunk({"role": "assistant", "content": ""})]
    pieces += [Piece(_chunk({"content": w}), delay) for w in words]
    pieces.append(Piece(_chunk({}, "stop"), delay))
    if usage is not None:
        pieces.append(_chunk(None, usage=_usage(*usage)))
    pieces.append(Piece(b"data: [DONE]\n\n", _LAST_DELAY))
    return stream_response(pieces, hang_after=len(words) + 1 if hang else None)


def completion(text: str = "Hello world", usage: tuple[int, int] = (9, 4)) -> ScriptedResponse:
    """A non-streamed answer."""
    return json_response(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": _usage(*usage),
        }
    )


def rate_limited(retry_after: float | None = 2) -> ScriptedResponse:
    """A 429 as OpenAI sends it, with ``Retry-After`` seconds when given."""
    headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
    return error_response(
        429, "Rate limit reached for requests", type="requests", code="rate_limit_exceeded", headers=headers
    )


def _interval(exchange: Exchange) -> tuple[float, float]:
    start = exchange.request.received_at
    times, pieces = exchange.piece_times, exchange.response.pieces
    if exchange.completed_at is not None and len(times) >= 2 and pieces and pieces[-1].delay > 0:
        # The server slept before the last piece: the client cannot have seen the end before.
        return start, times[-2] + pieces[-1].delay
    return start, start  # an error or a cut-off answer: counted at its arrival only


def peak_in_flight(exchanges: Iterable[Exchange]) -> int:
    """The most requests the server was answering at once (each from its arrival to the moment
    its last piece could first have reached the client)."""
    points: list[tuple[float, int]] = []
    for exchange in exchanges:
        start, end = _interval(exchange)
        points += [(start, 1), (end, -1)] if end > start else [(start, 1), (start, -1)]
    peak = current = 0
    for _, step in sorted(points, key=lambda p: (p[0], p[1])):
        current += step
        peak = max(peak, current)
    return peak


def prompt_of(request: Any) -> str:
    """The text of the last user message of a recorded chat request."""
    messages = (request.json or {}).get("messages") or [{}]
    content = messages[-1].get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""
