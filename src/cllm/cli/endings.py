"""How an answer ended, in one line for stderr, and the exit code that tells a script.

A reply that stopped normally (``stop``, or tool calls that were run) says nothing. Anything else
gets one line on stderr and its own exit code, so ``cllm ... && next`` never takes a cut-off,
filtered or empty answer for a complete one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cllm.core.finish import FinishReason
from cllm.core.response import Response

__all__ = [
    "CHAIN_LIMIT",
    "CUT_OFF",
    "EMPTY",
    "ERROR",
    "FILTERED",
    "INTERRUPTED",
    "OK",
    "USAGE",
    "Ending",
    "ending_of",
]

OK = 0
"""The answer is complete."""
ERROR = 1
"""The call failed (provider error, bad configuration, a tool file that cannot be loaded...)."""
USAGE = 2
"""The command line is wrong (no prompt, no model, bad option)."""
CUT_OFF = 3
"""The answer was cut off at the token limit (``max_tokens``, or the model's context window)."""
FILTERED = 4
"""The provider's content filter blocked the answer, or the model refused."""
EMPTY = 5
"""The model replied with nothing."""
CHAIN_LIMIT = 6
"""The tool-call rounds reached ``--chain-limit`` before the model answered."""
INTERRUPTED = 130
"""Ctrl-C (the partial answer is kept in the log)."""


@dataclass(frozen=True, slots=True)
class Ending:
    """What to say about a reply that did not end normally, and the exit code for it."""

    message: str
    code: int


def _limit_hint(model: str, options: dict[str, Any]) -> str:
    asked = options.get("max_tokens") or options.get("max_completion_tokens")
    if asked:
        return f" (max_tokens {asked}; raise it with -o max_tokens N)"
    if model.startswith("local/"):
        return " (the local model's context window is full: shorten the prompt or use a bigger model)"
    return " (raise it with -o max_tokens N)"


def ending_of(response: Response, model: str, options: dict[str, Any]) -> Ending | None:
    """None for a reply that ended normally; else the line to show and the exit code."""
    reason = response.finish_reason
    if response.interrupted or reason is FinishReason.CANCELLED:
        return None  # reported where the interruption is handled
    if reason is FinishReason.LENGTH:
        hint = _limit_hint(model, options)
        return Ending(f"cllm: the answer was cut off at the token limit{hint}", CUT_OFF)
    if reason is FinishReason.CONTENT_FILTER or response.refusal:
        why = f": {response.refusal.strip()}" if response.refusal and response.refusal.strip() else ""
        if reason is FinishReason.CONTENT_FILTER:
            return Ending(f"cllm: the answer was blocked by the provider's content filter{why}", FILTERED)
        return Ending(f"cllm: the model refused{why}", FILTERED)
    if reason is FinishReason.ERROR:
        raw = response.raw_finish_reason or "error"
        return Ending(f"cllm: the provider ended the answer with an error (finish reason {raw!r})", ERROR)
    if reason is FinishReason.TOOL_CALLS:
        return None
    if not response.text.strip() and not response.tool_calls:
        if response.reasoning.strip():
            return Ending("cllm: the model reasoned but gave no answer (an empty reply)", EMPTY)
        return Ending("cllm: the model's reply was empty", EMPTY)
    if reason is FinishReason.OTHER:
        raw = response.raw_finish_reason or "?"
        return Ending(f"cllm: the answer ended for a reason cllm does not know: {raw!r}", OK)
    return None
