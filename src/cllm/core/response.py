"""The values a finished (or interrupted) response is made of."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cllm.core.finish import FinishReason

__all__ = ["AttemptRecord", "Response", "ToolCall", "Usage", "add_usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them. Fields the provider did not report are None."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model made.

    ``arguments`` is the parsed JSON value, or None with ``error`` set when ``arguments_json`` (the
    raw text, always kept) is not valid JSON.
    """

    id: str
    name: str
    arguments: Any
    arguments_json: str
    error: str | None = None

    def message(self) -> dict[str, Any]:
        """This call in OpenAI's assistant-message format."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments_json},
        }


def add_usage(a: Usage | None, b: Usage | None) -> Usage | None:
    """Two attempts' usage added up field by field; a field neither reported stays None."""
    if a is None or b is None:
        return a if b is None else b

    def plus(x: int | None, y: int | None) -> int | None:
        return None if x is None and y is None else (x or 0) + (y or 0)

    return Usage(
        plus(a.prompt_tokens, b.prompt_tokens),
        plus(a.completion_tokens, b.completion_tokens),
        plus(a.total_tokens, b.total_tokens),
        plus(a.reasoning_tokens, b.reasoning_tokens),
        plus(a.cached_tokens, b.cached_tokens),
    )


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt at a response: which model, when, how it ended, what it cost.

    ``started`` is a Unix time; ``duration`` seconds; ``outcome`` is ``"finished"``, ``"failed"``
    or ``"cancelled"`` with ``error`` saying why for the last two; ``output`` whether any output
    arrived; ``delay`` the seconds waited before it; ``mode`` how it took over from the previous
    attempt (``"retry"`` before any output, ``"continue"`` or ``"restart"`` after), None for the first.
    ``usage`` and ``cost`` are None when the provider reported none for this attempt.
    """

    number: int
    model: str
    started: float
    duration: float | None
    outcome: str
    error: str | None = None
    output: bool = False
    usage: Usage | None = None
    cost: float | None = None
    delay: float = 0.0
    mode: str | None = None


def _call_dict(call: ToolCall) -> dict[str, Any]:
    return {f.name: getattr(call, f.name) for f in fields(call)}


@dataclass(frozen=True, slots=True)
class Response:
    """A model's response, the same whether it was streamed or not.

    While a stream runs, `cllm.Stream.response` gives a snapshot of this with what has arrived
    so far (``finish_reason`` None); at the end it is final. ``usage`` is None when the provider
    reported none, and ``cost`` (USD) is None when the price is unknown: never made-up zeros.
    ``server_tool_calls`` are calls the provider ran itself (Anthropic's code execution, web
    search...): kept for the record, not for the caller to run. ``attempts`` has one record per
    attempt when retries or fallbacks were asked for (``usage`` and ``cost`` then add them up).

    ``model`` is the model the provider says answered (``gpt-4o-2024-08-06`` for ``openai/gpt-4o``),
    else the name asked for, spelled the same streamed or not. ``ttft`` is the seconds from the
    request to the first output (text, reasoning or a tool call): None when no output came (an
    empty reply, or a failure before any); for a call made with ``stream=False`` it is the time
    until the whole response arrived, the first moment anything is seen.
    """

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    raw_finish_reason: str | None = None
    usage: Usage | None = None
    cost: float | None = None
    model: str | None = None
    ttft: float | None = None
    duration: float | None = None
    interrupted: bool = False
    error: str | None = None
    refusal: str | None = None
    server_tool_calls: list[ToolCall] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        """The OpenAI-format assistant message to append to a conversation."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            msg["tool_calls"] = [call.message() for call in self.tool_calls]
        elif msg["content"] is None:
            msg["content"] = ""
        return msg

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field; tool-call arguments are the parsed values, not copies."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["tool_calls"] = [_call_dict(call) for call in self.tool_calls]
        data["server_tool_calls"] = [_call_dict(call) for call in self.server_tool_calls]
        data["usage"] = None if self.usage is None else asdict(self.usage)
        data["attempts"] = [asdict(record) for record in self.attempts]
        data["finish_reason"] = self.finish_reason.value if self.finish_reason else None
        return data

    def to_json(self, **kwargs: Any) -> str:
        """`to_dict` as JSON text; keyword arguments go to `json.dumps`."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)
