"""Plain Python functions as tools: load them from a file, describe them as JSON schemas, run calls.

``cllm --functions tools.py`` offers the model every public function defined at the top level of
``tools.py`` (not the ones it imports). The schema comes from the type hints and the docstring
(Google ``Args:`` sections and Sphinx ``:param x:`` lines); the docstring's text before its
sections describes the tool.
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cllm.core.response import ToolCall

__all__ = ["Toolbox", "ToolsError", "function_schema", "load_functions", "type_schema"]

Schema = dict[str, Any]


class ToolsError(Exception):
    """The functions file cannot be loaded, or a function cannot be described."""


def load_functions(path: str | Path) -> list[Callable[..., Any]]:
    """The public functions defined at the top level of a Python file, in definition order."""
    path = Path(path)
    if not path.is_file():
        raise ToolsError(f"no such file: {path}")
    name = f"_cllm_functions_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ToolsError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and get_type_hints look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ToolsError(f"{path}: {type(e).__name__}: {e}") from e
    functions: list[Callable[..., Any]] = [
        obj
        for attr, obj in vars(module).items()
        # Defined here with ``def`` under its own name: not imported, not a lambda, not an alias.
        if inspect.isfunction(obj)
        and obj.__module__ == name
        and obj.__name__ == attr
        and not attr.startswith("_")
    ]
    if not functions:
        raise ToolsError(f"{path} defines no public functions")
    return functions


_SIMPLE: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def type_schema(hint: Any) -> Schema:
    """The JSON schema of a type hint (str, int, float, bool, None, list, dict, tuple, Optional, Union,
    Literal, Enum); ``{}`` (anything) for what JSON schema cannot say."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_schema([member.value for member in hint])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return _enum_schema(list(args))
    if origin is typing.Union or origin is types.UnionType:
        options = [type_schema(arg) for arg in args]
        if any(not option for option in options):
            return {}
        if all(set(option) == {"type"} for option in options):
            return {"type": [option["type"] for option in options]}
        return {"anyOf": options}
    if origin is typing.Annotated:
        return type_schema(args[0])
    container = origin or hint
    if container in (list, set, frozenset, Sequence) or (container is tuple and not args):
        schema: Schema = {"type": "array"}
        if args and (items := type_schema(args[0])):
            schema["items"] = items
        return schema
    if container is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0])}
        return {"type": "array", "prefixItems": [type_schema(a) for a in args], "items": False}
    if container in (dict, Mapping):
        schema = {"type": "object"}
        if len(args) == 2 and (values := type_schema(args[1])):
            schema["additionalProperties"] = values
        return schema
    return {}


def _enum_schema(values: list[Any]) -> Schema:
    schema: Schema = {"enum": values}
    kinds = {_SIMPLE.get(type(v)) for v in values}
    if len(kinds) == 1 and None not in kinds:
        schema["type"] = kinds.pop()
    return schema


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_SECTIONS = ("Args", "Arguments", "Parameters", "Params")
_GOOGLE_ARG = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_ARG = re.compile(r"^:param\s+(?:[\w\[\], |.]+\s+)?(\w+):\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (the text before any section) and the per-argument descriptions."""
    if not doc:
        return "", {}
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for line in inspect.cleandoc(doc).splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if match := _SECTION.match(stripped):
            section, current, arg_indent = match.group(1), None, None
        elif match := _SPHINX_ARG.match(stripped):
            section, current = "sphinx", match.group(1)
            params[current] = match.group(2)
        elif stripped.startswith(":"):
            section, current = "other", None
        elif section is None:
            description.append(line)
        elif section in _ARG_SECTIONS:
            match = _GOOGLE_ARG.match(stripped)
            if match and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = match.group(1)
                params[current] = match.group(2)
            elif current is not None and stripped:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section == "sphinx" and current is not None and stripped:
            params[current] = f"{params[current]} {stripped}".strip()
    return "\n".join(description).strip(), params


def function_schema(func: Callable[..., Any]) -> Schema:
    """The tool definition (OpenAI ``{"type": "function", "function": {...}}``) of a function."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as e:
        raise ToolsError(f"cannot read the type hints of {func.__name__}: {e}") from e
    description, arg_docs = parse_docstring(func.__doc__)
    properties: dict[str, Schema] = {}
    required: list[str] = []
    for param in inspect.signature(func).parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ToolsError(
                f"{func.__name__}: positional-only parameter {param.name} cannot be a tool argument"
            )
        schema = type_schema(hints.get(param.name, inspect.Parameter.empty))
        if arg_docs.get(param.name):
            schema["description"] = arg_docs[param.name]
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        elif _is_json(param.default):
            schema["default"] = param.default
        properties[param.name] = schema
    parameters: Schema = {"type": "object", "properties": properties, "required": required}
    function: Schema = {"name": func.__name__, "parameters": parameters}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What running one call gave: the text sent back to the model, and whether it failed."""

    call: ToolCall
    content: str
    ok: bool
    declined: bool = False

    def message(self) -> dict[str, Any]:
        """The OpenAI ``tool`` message carrying this result."""
        return {"role": "tool", "tool_call_id": self.call.id, "content": self.content}


class Toolbox:
    """The functions offered to the model, by name."""

    def __init__(self, functions: Sequence[Callable[..., Any]]) -> None:
        self.functions = {f.__name__: f for f in functions}
        self.schemas = [function_schema(f) for f in functions]

    @classmethod
    def from_files(cls, paths: Sequence[str | Path]) -> Toolbox:
        """All public functions of the given files."""
        functions: list[Callable[..., Any]] = []
        for path in paths:
            functions.extend(load_functions(path))
        return cls(functions)

    def run(self, call: ToolCall) -> ToolResult:
        """Run one call. Any failure (unknown tool, bad arguments, an exception) becomes the result
        text, so the model can see it and carry on."""
        func = self.functions.get(call.name)
        if func is None:
            return ToolResult(call, f"Error: there is no tool named {call.name!r}.", False)
        if call.error is not None:
            return ToolResult(call, f"Error: the arguments are not valid JSON ({call.error}).", False)
        arguments = call.arguments if call.arguments is not None else {}
        if not isinstance(arguments, dict):
            return ToolResult(call, "Error: the arguments must be a JSON object.", False)
        try:
            value = func(**arguments)
        except Exception as e:
            return ToolResult(call, f"Error: {type(e).__name__}: {e}", False)
        return ToolResult(call, to_text(value), True)


def to_text(value: Any) -> str:
    """A function's return value as the text of a tool message."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
