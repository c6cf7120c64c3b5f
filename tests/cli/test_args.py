"""Telling commands from prompts, and reading -o values."""

from __future__ import annotations

import pytest

from cllm.cli.args import (
    COMMANDS,
    VALUE_OPTIONS,
    build_parser,
    parse_option_value,
    parse_options,
    split_command,
)


@pytest.mark.parametrize(
    ("argv", "command", "rest"),
    [
        (["chat"], "chat", []),
        (["chat", "-m", "x"], "chat", ["-m", "x"]),
        (["-m", "x", "chat"], "chat", ["-m", "x"]),
        (["logs", "-n", "5"], "logs", ["-n", "5"]),
        (["hello", "world"], None, ["hello", "world"]),
        (["hello", "chat"], None, ["hello", "chat"]),
        (["--", "chat"], None, ["--", "chat"]),
        (["-s", "chat", "hi"], None, ["-s", "chat", "hi"]),  # "chat" is the system prompt here
        (["-o", "api_base", "chat", "models"], "models", ["-o", "api_base", "chat"]),
        (["--model=chat", "hi"], None, ["--model=chat", "hi"]),
        ([], None, []),
    ],
)
def test_split_command(argv: list[str], command: str | None, rest: list[str]) -> None:
    assert split_command(argv) == (command, rest)


def test_value_options_match_the_parser() -> None:
    parser = build_parser(None)
    taking_values = {
        flag: (action.nargs if isinstance(action.nargs, int) else 1)
        for action in parser._actions
        for flag in action.option_strings
        if action.nargs != 0
    }
    assert taking_values == VALUE_OPTIONS


def test_every_command_has_a_parser() -> None:
    for command in COMMANDS:
        assert build_parser(command).prog == f"cllm {command}"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("0.5", 0.5),
        ("true", True),
        ("null", None),
        ('{"a": [1]}', {"a": [1]}),
        ("gpt-4o", "gpt-4o"),
        ("http://x:1/v1", "http://x:1/v1"),
        ('"quoted"', "quoted"),
    ],
)
def test_option_values_are_json_when_they_parse(text: str, value: object) -> None:
    assert parse_option_value(text) == value


def test_parse_options() -> None:
    assert parse_options([["temperature", "0"], ["max_tokens", "200"]]) == {
        "temperature": 0,
        "max_tokens": 200,
    }
    assert parse_options(None) == {}
