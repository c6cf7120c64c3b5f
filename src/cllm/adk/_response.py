"""cllm's events and `Response` as ADK `LlmResponse`s: partial fragments while the stream runs, one final.

Partial function calls carry ``args`` (a deep copy of the arguments parsed so far) and, where the
installed google-genai has them, ``partial_args``: what changed since the previous fragment, one
`PartialArg` per new or grown value, found by walking only the open end of the value (its last member
at each level), so each fragment costs what it adds, never what came before.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from google.adk.models.llm_response import LlmResponse
from google.genai import types

from cllm.core.finish import FinishReason
from cllm.core.response import Response, ToolCall, Usage

__all__ = ["ArgsProgress", "final_response", "function_call_fragment", "text_fragment"]

_FUNCTION_CALL_FIELDS = types.FunctionCall.model_fields
HAS_PARTIAL_ARGS = "partial_args" in _FUNCTION_CALL_FIELDS and hasattr(types, "PartialArg")
HAS_WILL_CONTINUE = "will_continue" in _FUNCTION_CALL_FIELDS

INCOMPLETE_CALLS_KEY = "cllm_incomplete_tool_calls"
"""`LlmResponse.custom_metadata` key of the tool calls an interrupted stream left unfinished: kept for the
record, never offered to ADK as calls to run."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _key_path(path: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    escaped = key.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"{path}['{escaped}']"


# State of the open end of a value: ("s", length) for a string, ("d"/"l", count, state of the last
# member) for a container, ("v", value) for anything else.
_State = tuple[Any, ...]


class ArgsProgress:
    """What changed in one tool call's parsed arguments between two fragments, as `PartialArg`s."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state: _State | None = None

    def advance(self, value: Any) -> list[Any]:
        out: list[Any] = []
        self._state = self._walk(value, "$", self._state, out)
        if out and HAS_PARTIAL_ARGS:
            # Only the last value reported may still grow.
            out[-1].will_continue = True
        return out

    def _walk(self, node: Any, path: str, prev: _State | None, out: list[Any]) -> _State:
        if isinstance(node, dict):
            count = len(node)
            old = prev[1] if prev is not None and prev[0] == "d" else 0
            keys: list[str] = []
            if count:
                # Only the members from the previously last one on can have changed.
                it = reversed(node)
                keys = [next(it) for _ in range(count - max(old - 1, 0))]
                keys.reverse()
            child: _State | None = None
            for position, key in enumerate(keys):
                before = prev[2] if position == 0 and old and prev is not None else None
                child = self._walk(node[key], _key_path(path, key), before, out)
            return ("d", count, child)
        if isinstance(node, list):
            count = len(node)
            old = prev[1] if prev is not None and prev[0] == "l" else 0
            start = max(old - 1, 0)
            child = None
            for index in range(start, count):
                before = prev[2] if index == old - 1 and prev is not None else None
                child = self._walk(node[index], f"{path}[{index}]", before, out)
            return ("l", count, child)
        if isinstance(node, str):
            seen = prev[1] if prev is not None and prev[0] == "s" and prev[1] <= len(node) else 0
            if seen < len(node) or prev is None:
                out.append(_partial_arg(path, string_value=node[seen:]))
            return ("s", len(node))
        if prev is None or prev[0] != "v" or prev[1] != node or type(prev[1]) is not type(node):
            if isinstance(node, bool):
                out.append(_partial_arg(path, bool_value=node))
            elif isinstance(node, int | float):
                out.append(_partial_arg(path, number_value=float(node)))
            elif node is None:
                out.append(_partial_arg(path, null_value="NULL_VALUE"))
        return ("v", node)


def _partial_arg(path: str, **value: Any) -> Any:
    return types.PartialArg.model_construct(json_path=path, **value) if HAS_PARTIAL_ARGS else None


# Fragments are built without validation (`model_construct`): their values are ours and well-typed,
# and validating one per delta would cost more than the rest of the adapter.


def _fragment(part: types.Part, model: str | None) -> LlmResponse:
    content = types.Content.model_construct(role="model", parts=[part])
    return LlmResponse.model_construct(content=content, partial=True, model_version=model)


def text_fragment(text: str, *, thought: bool, model: str | None) -> LlmResponse:
    part = (
        types.Part.model_construct(text=text, thought=True)
        if thought
        else types.Part.model_construct(text=text)
    )
    return _fragment(part, model)


def function_call_fragment(
    call_id: str, name: str | None, arguments: Any, progress: list[Any], model: str | None
) -> LlmResponse:
    """A partial function call: the arguments parsed so far (a snapshot) and what just changed."""
    fields: dict[str, Any] = {
        "id": call_id,
        "name": name,
        "args": copy.deepcopy(arguments) if isinstance(arguments, dict) else {},
    }
    if HAS_PARTIAL_ARGS:
        fields["partial_args"] = [p for p in progress if p is not None] or None
    if HAS_WILL_CONTINUE:
        fields["will_continue"] = True
    part = types.Part.model_construct(function_call=types.FunctionCall.model_construct(**fields))
    return _fragment(part, model)


# -- the final response ---------------------------------------------------------------------------

_FINISH = {
    FinishReason.STOP: types.FinishReason.STOP,
    FinishReason.TOOL_CALLS: types.FinishReason.STOP,
    FinishReason.LENGTH: types.FinishReason.MAX_TOKENS,
    FinishReason.CONTENT_FILTER: types.FinishReason.SAFETY,
}


def usage_metadata(usage: Usage | None) -> types.GenerateContentResponseUsageMetadata | None:
    """The provider's own token counts; None when it reported none (never an estimate)."""
    if usage is None:
        return None
    return types.GenerateContentResponseUsageMetadata(
        prompt_token_count=usage.prompt_tokens,
        candidates_token_count=usage.completion_tokens,
        total_token_count=usage.total_tokens,
        thoughts_token_count=usage.reasoning_tokens,
        cached_content_token_count=usage.cached_tokens,
    )


def _call_part(call: ToolCall) -> types.Part:
    return types.Part(function_call=types.FunctionCall(id=call.id, name=call.name, args=call.arguments))


def _bad_call(call: ToolCall) -> bool:
    return call.error is not None or not isinstance(call.arguments, dict)


def final_response(
    response: Response,
    *,
    model: str,
    error_code: str | None = None,
    error_message: str | None = None,
) -> LlmResponse:
    """The one non-partial `LlmResponse` for a finished, failed or cut-off stream.

    A stream that did not end normally (``error_code`` given, or ``response.interrupted``) is an
    error response with ``interrupted=True`` and the text and reasoning received; its tool calls
    are not offered to ADK to run but kept in ``custom_metadata``.
    """
    parts: list[types.Part] = []
    if response.reasoning:
        parts.append(types.Part(text=response.reasoning, thought=True))
    if response.text:
        parts.append(types.Part(text=response.text))
    version = response.model or model
    usage = usage_metadata(response.usage)
    calls = response.tool_calls
    failed = error_code is not None or response.interrupted
    if failed:
        incomplete = [{"id": c.id, "name": c.name, "arguments_json": c.arguments_json} for c in calls]
        return LlmResponse(
            content=types.Content(role="model", parts=parts) if parts else None,
            partial=False,
            finish_reason=types.FinishReason.OTHER,
            error_code=error_code or "STREAM_INTERRUPTED",
            error_message=error_message or response.error or "the stream was interrupted",
            interrupted=True,
            usage_metadata=usage,
            model_version=version,
            custom_metadata={INCOMPLETE_CALLS_KEY: incomplete} if incomplete else None,
        )
    reason = response.finish_reason
    if any(_bad_call(call) for call in calls):
        # Running some calls of a turn and not others would leave the model's plan half done.
        details = "; ".join(
            f"{c.name or '?'}: {c.error or 'arguments are not a JSON object'}; received: {c.arguments_json}"
            for c in calls
            if _bad_call(c)
        )
        truncated = reason is FinishReason.LENGTH
        code = types.FinishReason.MAX_TOKENS if truncated else types.FinishReason.MALFORMED_FUNCTION_CALL
        prefix = "tool call arguments were cut off by the token limit" if truncated else "malformed tool call"
        return LlmResponse(
            content=types.Content(role="model", parts=parts) if parts else None,
            partial=False,
            finish_reason=code,
            error_code=code.value,
            error_message=f"{prefix}: {details}",
            usage_metadata=usage,
            model_version=version,
        )
    parts.extend(_call_part(call) for call in calls)
    finish = _FINISH.get(reason, types.FinishReason.OTHER) if reason is not None else types.FinishReason.OTHER
    fields: dict[str, Any] = {}
    if finish is not types.FinishReason.STOP:
        fields["error_code"] = finish.value
        fields["error_message"] = (
            "Maximum tokens reached"
            if finish is types.FinishReason.MAX_TOKENS
            else f"Finished with {finish.name} ({response.raw_finish_reason})"
        )
    return LlmResponse(
        content=types.Content(role="model", parts=parts),
        partial=False,
        finish_reason=finish,
        usage_metadata=usage,
        model_version=version,
        **fields,
    )
