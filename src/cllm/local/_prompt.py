"""From an OpenAI-format request to what a local model is given: turns, a prompt, a tool schema.

Pure: no llama.cpp, no I/O. A base model has no chat template, so by default the conversation is
rendered as a plain transcript (``User: ...`` / ``Assistant:``) that such a model continues well;
models whose GGUF carries a chat template get the same turns through that template instead.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cllm.errors import CllmError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "TRANSCRIPT_STOP",
    "LocalModelError",
    "Sampling",
    "ToolPlan",
    "Turn",
    "call_schema",
    "plan_tools",
    "render_transcript",
    "template_messages",
    "to_turns",
    "tools_instruction",
]

Role = Literal["system", "user", "assistant", "tool"]

# Where a transcript turn ends: the model starting the next speaker's line.
TRANSCRIPT_STOP = ("\nUser:", "\nAssistant:", "\nTool:")

_LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool"}


class LocalModelError(CllmError):
    """A local-model request that cannot be served, with the message the user should see.

    ``status_code`` is what LiteLLM maps to its exception classes (400: bad request).
    """

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class Turn:
    """One message reduced to text."""

    role: Role
    text: str


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind != "text":
                raise LocalModelError(f"local models take text only; got a message part of type {kind!r}")
            parts.append(str(part.get("text") or ""))
        return "".join(parts)
    raise LocalModelError(f"message content must be a string or a list of text parts, got {content!r}")


def _call_text(call: Mapping[str, Any]) -> str:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # if not JSON, shown as the string it is
            arguments = json.loads(arguments) if arguments.strip() else {}
    return json.dumps({"name": function.get("name"), "arguments": arguments}, ensure_ascii=False)


def to_turns(messages: Sequence[Mapping[str, Any]]) -> list[Turn]:
    """OpenAI-format messages as text turns: tool calls become their JSON, tool results a ``tool`` turn."""
    names: dict[str, str] = {}
    turns: list[Turn] = []
    for message in messages:
        role = message.get("role")
        text = _text_of(message.get("content"))
        if role in ("system", "developer"):
            turns.append(Turn("system", text))
        elif role == "user":
            turns.append(Turn("user", text))
        elif role == "assistant":
            calls = message.get("tool_calls") or []
            for call in calls:
                if call.get("id"):
                    names[str(call["id"])] = str((call.get("function") or {}).get("name") or "")
            lines = [text] if text else []
            lines.extend(_call_text(call) for call in calls)
            turns.append(Turn("assistant", "\n".join(lines)))
        elif role in ("tool", "function"):
            name = message.get("name") or names.get(str(message.get("tool_call_id")), "")
            turns.append(Turn("tool", f"({name}) {text}" if name else text))
        else:
            raise LocalModelError(f"unknown message role {role!r}")
    return turns


def render_transcript(turns: Sequence[Turn], instructions: str | None = None) -> str:
    """The conversation as a transcript ending where the assistant's next line begins.

    System turns (and `instructions`, such as the tool list) go first as plain paragraphs.
    """
    preamble = [t.text for t in turns if t.role == "system" and t.text]
    if instructions:
        preamble.append(instructions)
    lines = ["\n\n".join(preamble) + "\n"] if preamble else []
    for turn in turns:
        if turn.role != "system":
            lines.append(f"{_LABELS[turn.role]}: {turn.text}")
    lines.append("Assistant:")
    return "\n".join(lines)


def template_messages(turns: Sequence[Turn], instructions: str | None = None) -> list[dict[str, str]]:
    """The turns as messages a chat template accepts: one leading system message, then strictly
    alternating user/assistant messages (tool results become user messages; neighbours merge)."""
    system = [t.text for t in turns if t.role == "system" and t.text]
    if instructions:
        system.append(instructions)
    out: list[dict[str, str]] = []
    for turn in turns:
        if turn.role == "system":
            continue
        role = "assistant" if turn.role == "assistant" else "user"
        text = f"Tool result: {turn.text}" if turn.role == "tool" else turn.text
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": role, "content": text})
    if system:
        out.insert(0, {"role": "system", "content": "\n\n".join(system)})
    return out


# -- tools ----------------------------------------------------------------------------------------

ToolMode = Literal["text", "auto", "call"]


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """What to do with ``tools``/``tool_choice``.

    ``text``: plain text, no tools shown. ``auto``: tools shown; the reply is a call if it opens with
    ``{``, else text. ``call``: the reply is forced (by grammar) to be a call to one of `tools`.
    """

    mode: ToolMode
    tools: tuple[Mapping[str, Any], ...] = ()
    offered: tuple[Mapping[str, Any], ...] = ()


def _function(tool: Any) -> Mapping[str, Any]:
    function = tool.get("function") if isinstance(tool, Mapping) else None
    if not isinstance(function, Mapping) or not function.get("name"):
        raise LocalModelError(
            f"a tool must be {{'type': 'function', 'function': {{'name': ...}}}}, got {tool!r}"
        )
    return function


def plan_tools(tools: Sequence[Any] | None, tool_choice: Any) -> ToolPlan:
    """Resolve ``tools`` and ``tool_choice`` (OpenAI semantics) into a `ToolPlan`."""
    functions = tuple(_function(t) for t in tools or ())
    if not functions or tool_choice == "none":
        return ToolPlan("text")
    if tool_choice in (None, "auto"):
        return ToolPlan("auto", functions, functions)
    if tool_choice in ("required", "any"):
        return ToolPlan("call", functions, functions)
    if isinstance(tool_choice, Mapping):
        wanted = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
        for function in functions:
            if function["name"] == wanted:
                return ToolPlan("call", (function,), functions)
        names = ", ".join(repr(f["name"]) for f in functions)
        raise LocalModelError(f"tool_choice names {wanted!r}, which is not among the tools ({names})")
    raise LocalModelError(
        f"tool_choice must be 'auto', 'none', 'required' or {{'type': 'function', 'function': "
        f"{{'name': ...}}}}, got {tool_choice!r}"
    )


def tools_instruction(functions: Sequence[Mapping[str, Any]]) -> str:
    """The tool list and the call format, as text for the prompt."""
    lines = ["You can call these functions:"]
    for f in functions:
        entry = {"name": f["name"], "description": f.get("description", ""), "parameters": _parameters(f)}
        lines.append(json.dumps(entry, ensure_ascii=False))
    lines.append(
        "To call a function, reply with only a JSON object: "
        '{"name": <function name>, "arguments": <arguments>}.'
    )
    return "\n".join(lines)


def _parameters(function: Mapping[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters")
    return dict(parameters) if isinstance(parameters, Mapping) and parameters else {"type": "object"}


def call_schema(
    functions: Sequence[Mapping[str, Any]], *, loose: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The JSON schema of one call, ``{"name": ..., "arguments": ...}``, for grammar-constrained output.

    Functions named in `loose` take any JSON object as arguments (for schemas the grammar
    converter cannot handle).
    """
    alternatives = []
    definitions: dict[str, dict[str, Any]] = {}
    for f in functions:
        arguments: dict[str, Any] = {"type": "object"} if f["name"] in loose else _parameters(f)
        # References such as "#/$defs/X" resolve from the root, so the definitions move up there.
        for key in ("$defs", "definitions"):
            if isinstance(arguments.get(key), Mapping):
                definitions.setdefault(key, {}).update(arguments.pop(key))
        alternatives.append(
            {
                "type": "object",
                "properties": {"name": {"const": f["name"]}, "arguments": arguments},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    return {**schema, **definitions}


# -- sampling -------------------------------------------------------------------------------------

# Used when the request does not say: at most this many new tokens (a base model rarely stops by
# itself), and llama.cpp's own sampling defaults.
DEFAULT_MAX_TOKENS = 512


@dataclass(frozen=True, slots=True)
class Sampling:
    """The generation settings of one request."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Sampling:
        """From LiteLLM's optional params (OpenAI names; ``top_k``, ``min_p``, ``repeat_penalty`` too)."""
        values: dict[str, Any] = {}
        limit = params.get("max_tokens", params.get("max_completion_tokens"))
        if limit is not None:
            values["max_tokens"] = _number(int, "max_tokens", limit, minimum=1)
        for name, kind in (
            ("temperature", float),
            ("top_p", float),
            ("top_k", int),
            ("min_p", float),
            ("presence_penalty", float),
            ("frequency_penalty", float),
            ("repeat_penalty", float),
            ("seed", int),
        ):
            if params.get(name) is not None:
                values[name] = _number(kind, name, params[name], minimum=None if name == "seed" else 0)
        stop = params.get("stop")
        if stop is not None:
            stops = [stop] if isinstance(stop, str) else stop
            if not all(isinstance(s, str) for s in stops):
                raise LocalModelError(f"stop must be a string or a list of strings, got {stop!r}")
            values["stop"] = tuple(s for s in stops if s)
        return cls(**values)


def _number(kind: type[int] | type[float], name: str, value: Any, minimum: float | None) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LocalModelError(f"{name} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise LocalModelError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise LocalModelError(f"{name} must be at least {minimum}, got {value!r}")
    return kind(value)
