"""The command line: which command, and its arguments (stdlib argparse, nothing imported early)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "COMMANDS",
    "VALUE_OPTIONS",
    "build_parser",
    "parse_option_value",
    "parse_options",
    "retry_options",
    "split_command",
]

COMMANDS = ("chat", "logs", "models", "serve", "batch", "file")

# Options of the prompt command that take values, and how many: the first word that is not an
# option or an option's value decides whether the line names a command or starts a prompt.
VALUE_OPTIONS = {
    "-m": 1,
    "--model": 1,
    "-s": 1,
    "--system": 1,
    "-o": 2,
    "--option": 2,
    "--cid": 1,
    "--functions": 1,
    "--chain-limit": 1,
    "--retries": 1,
    "--fallback": 1,
    "--mid-stream": 1,
    "--tool-choice-rounds": 1,
}

DESCRIPTION = """\
Stream a model's answer to PROMPT (from the arguments, stdin, or both).

commands:
  cllm chat      a conversation in the terminal
  cllm logs      recent responses (-n N, -q TEXT, --cid ID, --json)
  cllm models    the models you can use; `cllm models default NAME` sets the default
  cllm serve     an OpenAI-compatible streaming server (needs cllm[server])
  cllm batch     many prompts from a JSONL file, results to another (resumable)
  cllm file      a big file in sections: one answer per section, in order
"""

EPILOG = """\
examples:
  cllm "Explain TCP slow start in two sentences"
  cat notes.md | cllm -m anthropic/claude-sonnet-4-5 "summarize"
  cllm -c "and in one word?"
  cllm --functions tools.py "What's the weather in Paris?"

environment: CLLM_MODEL (default model), CLLM_HOME (where the log database and config live),
provider keys the LiteLLM way (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...; OPENAI_BASE_URL works).
A word that names a command is a prompt after `--`: `cllm -- chat`.

exit status: 0 complete · 1 error · 2 bad command line · 3 cut off at the token limit ·
4 blocked by a content filter or refused · 5 empty reply · 6 tool-call chain limit reached ·
130 interrupted. Anything but a complete answer also gets one line on stderr.
"""


def split_command(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(command, its arguments), or (None, argv) when the line is a prompt.

    A command is the first word that is neither an option nor an option's value, before any
    ``--``: ``cllm chat -m x`` and ``cllm -m x chat`` both run the chat.
    """
    argv = list(argv)
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return None, argv
        if word.startswith("-") and len(word) > 1:
            if "=" not in word:
                i += VALUE_OPTIONS.get(word, 0)
            i += 1
            continue
        if word in COMMANDS:
            return word, argv[:i] + argv[i + 1 :]
        return None, argv
    return None, argv


def parse_option_value(value: str) -> Any:
    """A ``-o`` value: JSON when it parses as JSON (numbers, true/false, null, lists, objects),
    else the string itself."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_options(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """``-o KEY VALUE`` pairs as LiteLLM keyword arguments."""
    return {key: parse_option_value(value) for key, value in pairs or ()}


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more: {text}")
        return value

    return parse


_positive_int = int_at_least(0)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """What a prompt and a chat share: model, system, options, tools, display."""
    parser.add_argument("-m", "--model", help="model name (default: $CLLM_MODEL, then `cllm models default`)")
    parser.add_argument("-s", "--system", help="system prompt")
    parser.add_argument(
        "-o",
        "--option",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        dest="options",
        help="LiteLLM option, repeatable; VALUE is JSON when it parses (-o temperature 0 -o api_base URL)",
    )
    parser.add_argument(
        "-c", "--continue", action="store_true", dest="cont", help="continue the latest conversation"
    )
    parser.add_argument("--cid", metavar="ID", help="continue the conversation with this id")
    parser.add_argument("--no-stream", action="store_true", help="one non-streaming call")
    parser.add_argument("--no-log", action="store_true", help="do not save the exchange")
    parser.add_argument("-u", "--usage", action="store_true", help="show tokens and cost on stderr")
    parser.add_argument("--raw", action="store_true", help="print raw text, no markdown rendering")
    parser.add_argument("--no-reasoning", action="store_true", help="do not show the model's reasoning")
    parser.add_argument(
        "--functions",
        metavar="FILE.py",
        action="append",
        help="offer the public functions of a Python file as tools (repeatable)",
    )
    parser.add_argument("--approve", action="store_true", help="ask before running each tool call")
    parser.add_argument(
        "--chain-limit",
        type=_positive_int,
        default=5,
        metavar="N",
        help="stop after N rounds of tool calls (default 5)",
    )
    parser.add_argument(
        "--tool-choice-rounds",
        type=_positive_int,
        default=1,
        metavar="N",
        help="apply a forcing -o tool_choice (required, or a named function) to the first N calls "
        "only (default 1; 0: every call), so the model can answer once the tools have run",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    _add_retry_options(parser)


def _add_retry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retries", type=_positive_int, metavar="N", help="retry each model up to N times (429, 5xx, resets)"
    )
    parser.add_argument(
        "--fallback",
        action="append",
        metavar="MODEL",
        dest="fallbacks",
        help="model to fall back to when the model fails (repeatable, tried in order)",
    )
    parser.add_argument(
        "--mid-stream",
        choices=("continue", "restart", "raise"),
        help="when a stream fails after output began: continue it, restart it, or stop (default "
        "continue with --retries or --fallback, else raise)",
    )


def retry_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``retries``, ``fallbacks`` and ``mid_stream`` options the command line asked for."""
    options: dict[str, Any] = {}
    if getattr(args, "retries", None) is not None:
        options["retries"] = args.retries
    if getattr(args, "fallbacks", None):
        options["fallbacks"] = list(args.fallbacks)
    if getattr(args, "mid_stream", None):
        options["mid_stream"] = args.mid_stream
    return options


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser for one command (None: the prompt)."""
    formatter = argparse.RawDescriptionHelpFormatter
    if command is None:
        parser = argparse.ArgumentParser(
            prog="cllm", description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter
        )
        parser.add_argument("prompt", nargs="*", help="the prompt (joined with spaces)")
        _add_model_options(parser)
        parser.add_argument("--json", action="store_true", help="print the final response as JSON on stdout")
        parser.add_argument("--version", action="store_true", help="print the version")
        return parser
    if command == "chat":
        parser = argparse.ArgumentParser(
            prog="cllm chat",
            description="A conversation in the terminal, streamed. Enter sends; Alt-Enter (or Esc then "
            "Enter) starts a new line; /model NAME, /system TEXT, /exit; Ctrl-C stops a reply; "
            "Ctrl-D or Ctrl-C on an empty line quits.",
        )
        _add_model_options(parser)
        return parser
    if command == "logs":
        parser = argparse.ArgumentParser(prog="cllm logs", description="Recent responses, oldest first.")
        parser.add_argument(
            "-n", "--count", type=_positive_int, default=3, help="how many (default 3; 0: all)"
        )
        parser.add_argument("--cid", metavar="ID", help="only this conversation")
        parser.add_argument("-c", "--current", action="store_true", help="only the latest conversation")
        parser.add_argument("-q", "--query", metavar="TEXT", help="full-text search in prompts and replies")
        parser.add_argument("--json", action="store_true", help="a JSON array of responses")
        parser.add_argument("--debug", action="store_true", help="show tracebacks")
        return parser
    if command == "models":
        parser = argparse.ArgumentParser(
            prog="cllm models",
            description="The models you can call now: the config's aliases, the local model, and the "
            "models of providers whose key is set (read from the environment; nothing is sent). "
            "--all lists every model LiteLLM knows.",
        )
        parser.add_argument(
            "-q", "--query", metavar="TEXT", help="only models whose name contains TEXT, best matches first"
        )
        parser.add_argument(
            "-a", "--all", action="store_true", help="every model LiteLLM knows, key set or not"
        )
        parser.add_argument("--debug", action="store_true", help="show tracebacks")
        sub = parser.add_subparsers(dest="action", metavar="{default}")
        default = sub.add_parser("default", help="show or set the default model")
        default.add_argument("name", nargs="?", help="the model to use when -m is not given")
        default.add_argument("--unset", action="store_true", help="forget the configured default")
        default.add_argument(
            "--force", action="store_true", help="set NAME even if it names no model cllm knows of"
        )
        return parser
    if command == "serve":
        parser = argparse.ArgumentParser(
            prog="cllm serve", description="An OpenAI-compatible streaming server."
        )
        try:
            from cllm.server.command import configure_parser
        except ImportError:
            pass
        else:
            configure_parser(parser)
        return parser
    if command in ("batch", "file"):
        return _batch_or_file_parser(command, formatter)
    raise ValueError(f"unknown command {command!r}")


def _batch_or_file_parser(command: str, formatter: type[argparse.HelpFormatter]) -> argparse.ArgumentParser:
    from cllm.cli import batch, file

    descriptions = {
        "batch": "Run every prompt of a JSONL file; one result line each, appended (resumable).",
        "file": "Ask INSTRUCTION of each section of a big text file; answers under ## Section i/n.",
    }
    parser = argparse.ArgumentParser(
        prog=f"cllm {command}", description=descriptions[command], formatter_class=formatter
    )
    (batch if command == "batch" else file).configure_parser(parser)
    return parser
