"""OpenAI chat-completions stream chunks (decoded JSON) straight into core `Chunk`s.

The wire format shared by OpenAI and the providers that copy it (Groq, DeepSeek, Mistral, vLLM,
NVIDIA NIM...). Read as the capture suite reads it: choice 0 only; ``delta.content``; reasoning as
``reasoning_content`` (DeepSeek) or ``reasoning`` (Groq, OpenRouter); ``delta.refusal``; tool-call
fragments; the provider's own finish reason; usage from ``usage`` or Groq's ``x_groq.usage``.
Everything else (logprobs, obfuscation, moderation results, other choices) is not needed and not kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cllm.core.accumulator import Chunk, ToolCallChunk
from cllm.core.response import Usage

__all__ = ["parse_chunk", "read_usage", "stream_error"]


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def read_usage(obj: Any) -> Usage | None:
    """Token counts from an OpenAI-format usage object (a dict or an object with those attributes);
    None when it reports nothing."""
    if obj is None:
        return None
    prompt, completion = _get(obj, "prompt_tokens"), _get(obj, "completion_tokens")
    total = _get(obj, "total_tokens")
    if not prompt and not completion and not total:
        return None
    details = _get(obj, "completion_tokens_details")
    prompt_details = _get(obj, "prompt_tokens_details")
    reasoning = _get(details, "reasoning_tokens") if details is not None else None
    cached = _get(prompt_details, "cached_tokens") if prompt_details is not None else None
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return Usage(prompt, completion, total, reasoning or None, cached or None)


def _tool_calls(raw: Any) -> list[ToolCallChunk] | None:
    if not isinstance(raw, list) or not raw:
        return None
    out = []
    for call in raw:
        if not isinstance(call, Mapping):
            continue
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        index = call.get("index")
        out.append(
            ToolCallChunk(
                index if isinstance(index, int) else None,
                call.get("id") or None,
                function.get("name") or None,
                arguments,
            )
        )
    return out or None


def parse_chunk(obj: Mapping[str, Any]) -> Chunk:
    """One decoded ``data:`` payload as a core `Chunk` (choice 0 only)."""
    raw_usage = obj.get("usage")
    if raw_usage is None and (groq := obj.get("x_groq")):
        raw_usage = groq.get("usage") if isinstance(groq, Mapping) else None
    model = obj.get("model")
    out = Chunk(
        model=model if isinstance(model, str) and model else None,
        usage=read_usage(raw_usage) if isinstance(raw_usage, Mapping) else None,
    )
    choices = obj.get("choices")
    if not choices or not isinstance(choices, list):
        return out
    choice = None
    for candidate in choices:
        if isinstance(candidate, Mapping) and candidate.get("index", 0) in (0, None):
            choice = candidate
            break
    if choice is None:
        return out
    delta = choice.get("delta")
    if isinstance(delta, Mapping):
        out.text = delta.get("content")
        out.reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        out.refusal = delta.get("refusal")
        out.tool_calls = _tool_calls(delta.get("tool_calls"))
    finish = choice.get("finish_reason")
    out.finish_reason = finish if isinstance(finish, str) and finish else None
    return out


def stream_error(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The error a provider put in the stream (``data: {"error": {...}}``), if this payload is one."""
    error = obj.get("error")
    if not error:
        return None
    return error if isinstance(error, Mapping) else {"message": str(error)}
