"""Normalizing the many spellings providers use for why a response ended."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FinishReason", "normalize_finish_reason"]


class FinishReason(StrEnum):
    """Why a response ended, the same on every provider."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    ERROR = "error"
    CANCELLED = "cancelled"
    OTHER = "other"


_SPELLINGS: dict[str, FinishReason] = {}
for _reason, _names in {
    FinishReason.STOP: (
        "stop",
        "end_turn",
        "stop_sequence",
        "eos",
        "eos_token",
        "end",
        "complete",
        "completed",
        "finished",
        "stopped",
    ),
    FinishReason.LENGTH: (
        "length",
        "max_tokens",
        "max_output_tokens",
        "max_completion_tokens",
        "token_limit",
        "model_length",
        "model_context_window_exceeded",
        "context_length_exceeded",
    ),
    FinishReason.TOOL_CALLS: ("tool_calls", "tool_call", "tool_use", "function_call", "function_calls"),
    FinishReason.CONTENT_FILTER: (
        "content_filter",
        "content_filtered",
        "safety",
        "recitation",
        "blocklist",
        "prohibited_content",
        "spii",
        "image_safety",
        "refusal",
        "guardrail_intervened",
    ),
    FinishReason.ERROR: ("error", "malformed_function_call", "unexpected_tool_call"),
    FinishReason.CANCELLED: ("cancelled", "canceled", "abort", "aborted"),
}.items():
    for _name in _names:
        _SPELLINGS[_name] = _reason


def normalize_finish_reason(raw: str | None) -> FinishReason | None:
    """Map a provider's finish reason to a `FinishReason`.

    Case and a ``FINISH_REASON_`` prefix are ignored (``"MAX_TOKENS"``, ``"FINISH_REASON_STOP"``).
    Unknown spellings give `FinishReason.OTHER`; ``None`` or ``""`` (no reason given) gives None.
    """
    if not raw:
        return None
    key = raw.strip().lower()
    if key.startswith("finish_reason_"):
        key = key[len("finish_reason_") :]
    return _SPELLINGS.get(key, FinishReason.OTHER)
