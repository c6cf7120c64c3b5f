"""Python functions as tools: which functions, their JSON schemas, running calls."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal, Optional, Union

import pytest

from cllm.cli.tools import Toolbox, ToolsError, function_schema, load_functions, parse_docstring, type_schema
from cllm.core.response import ToolCall

FUNCTIONS = '''
import json
from os.path import join  # imported: not a tool
from typing import Literal


def get_weather(city: str, unit: Literal["C", "F"] = "C", days: int | None = None) -> str:
    """Get the weather forecast for a city.

    Args:
        city: The city's name,
            in English.
        unit: Temperature unit.
        days: How many days ahead.
    """
    return f"{city}: 21 {unit}"


def add(a: float, b: float) -> dict[str, float]:
    """Add two numbers.

    :param a: the first
    :param b: the second
    """
    return {"sum": a + b}


def fail(message: str) -> None:
    raise RuntimeError(message)


def _helper() -> None:
    pass


class NotATool:
    pass

handler = lambda x: x
'''


@pytest.fixture
def functions_file(tmp_path: Path) -> Path:
    path = tmp_path / "tools.py"
    path.write_text(FUNCTIONS)
    return path


def test_only_public_functions_defined_in_the_file_become_tools(functions_file: Path) -> None:
    names = [f.__name__ for f in load_functions(functions_file)]
    assert names == ["get_weather", "add", "fail"]


def test_schema_from_hints_defaults_and_google_docstring(functions_file: Path) -> None:
    get_weather = load_functions(functions_file)[0]
    assert function_schema(get_weather) == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather forecast for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city's name, in English."},
                    "unit": {
                        "enum": ["C", "F"],
                        "type": "string",
                        "description": "Temperature unit.",
                        "default": "C",
                    },
                    "days": {
                        "type": ["integer", "null"],
                        "description": "How many days ahead.",
                        "default": None,
                    },
                },
                "required": ["city"],
            },
        },
    }


def test_schema_from_sphinx_docstring(functions_file: Path) -> None:
    add = load_functions(functions_file)[1]
    params = function_schema(add)["function"]["parameters"]
    assert params["properties"] == {
        "a": {"type": "number", "description": "the first"},
        "b": {"type": "number", "description": "the second"},
    }
    assert params["required"] == ["a", "b"]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    ("hint", "schema"),
    [
        (str, {"type": "string"}),
        (bool, {"type": "boolean"}),
        (list, {"type": "array"}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (dict, {"type": "object"}),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (Optional[str], {"type": ["string", "null"]}),  # noqa: UP045
        (
            Union[int, list[str]],  # noqa: UP007
            {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "string"}}]},
        ),
        (Literal[1, 2], {"enum": [1, 2], "type": "integer"}),
        (Literal["a", 1], {"enum": ["a", 1]}),
        (Color, {"enum": ["red", "blue"], "type": "string"}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (Any, {}),
        (str | Any, {}),
    ],
)
def test_type_schema(hint: Any, schema: dict[str, Any]) -> None:
    assert type_schema(hint) == schema


def test_docstring_description_stops_at_the_first_section() -> None:
    description, params = parse_docstring("""Do it.

    More about it.

    Args:
        x (int): the x.
        **kwargs: ignored.

    Returns:
        y: not an argument.
    """)
    assert description == "Do it.\n\nMore about it."
    assert params == {"x": "the x.", "kwargs": "ignored."}


def test_running_calls_turns_every_failure_into_result_text(functions_file: Path) -> None:
    box = Toolbox(load_functions(functions_file))
    ok = box.run(ToolCall("c1", "add", {"a": 1, "b": 2.5}, '{"a": 1, "b": 2.5}'))
    assert (ok.ok, ok.content) == (True, '{"sum": 3.5}')
    assert ok.message() == {"role": "tool", "tool_call_id": "c1", "content": '{"sum": 3.5}'}
    raised = box.run(ToolCall("c2", "fail", {"message": "boom"}, '{"message": "boom"}'))
    assert (raised.ok, raised.content) == (False, "Error: RuntimeError: boom")
    unknown = box.run(ToolCall("c3", "nope", {}, "{}"))
    assert not unknown.ok and "no tool named 'nope'" in unknown.content
    bad_args = box.run(ToolCall("c4", "add", {"a": 1}, '{"a": 1}'))
    assert not bad_args.ok and "TypeError" in bad_args.content
    invalid = box.run(ToolCall("c5", "add", None, '{"a": 1', error="unterminated"))
    assert not invalid.ok and "not valid JSON" in invalid.content


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ToolsError, match="no such file"):
        load_functions(tmp_path / "missing.py")
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    with pytest.raises(ToolsError, match="SyntaxError"):
        load_functions(broken)
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    with pytest.raises(ToolsError, match="no public functions"):
        load_functions(empty)
