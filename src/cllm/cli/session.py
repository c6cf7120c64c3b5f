"""What a prompt and a chat set up the same way: the model, the store, the conversation to carry
on, the tools and the call settings."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cllm import config
from cllm.cli.args import parse_options, retry_options
from cllm.cli.display import Ui
from cllm.cli.exchange import Message, Settings
from cllm.cli.tools import Toolbox, ToolsError
from cllm.core.response import ToolCall

if TYPE_CHECKING:
    from cllm.store import Store

__all__ = ["CliError", "Session", "open_session", "resolve_alias", "resolve_model", "set_system"]

NO_MODEL = (
    "no model chosen: pass -m MODEL, set CLLM_MODEL, run `cllm models default MODEL`, "
    "or install the local model with pip install 'cllm[local]' (see `cllm models`)"
)


class CliError(Exception):
    """A problem to report in one line, with the exit code to use."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def resolve_model(given: str | None, conversation_model: str | None = None) -> str:
    """``-m``, else the model of the conversation carried on, else the default."""
    if given:
        return given
    if conversation_model:
        return conversation_model
    try:
        model = config.default_model()
    except config.ConfigError as e:
        raise CliError(str(e)) from e
    if not model:
        raise CliError(NO_MODEL, 2)
    return model


def aliases() -> dict[str, dict[str, Any]]:
    """The config file's model aliases (the ones `cllm serve` uses too)."""
    try:
        return config.model_aliases()
    except config.ConfigError as e:
        raise CliError(str(e)) from e


def resolve_alias(name: str) -> tuple[str, dict[str, Any]]:
    """The LiteLLM model and the alias's parameters for a model name (no parameters when the
    name is not an alias)."""
    alias = aliases().get(name)
    if alias is None:
        return name, {}
    return config.alias_call(alias)


def set_system(messages: list[Message], system: str) -> list[Message]:
    """The messages with ``system`` as the system message (replacing any there was)."""
    rest = [m for m in messages if m.get("role") != "system"]
    return [{"role": "system", "content": system}, *rest]


def open_store(ui: Ui, *, required: bool) -> Store | None:
    """The log database (``$CLLM_DATABASE_URL`` when set, else cllm's SQLite file), or None (with
    a warning) when it cannot be opened and is not required."""
    from cllm import store

    try:
        return store.open_store()
    except store.StoreError as e:
        if required:
            raise CliError(f"cannot open the log database: {e}") from e
        ui.note(f"cllm: warning: cannot open the log database, the reply will not be saved: {e}", dim=False)
        return None


@dataclass
class Session:
    """A conversation being carried on (or about to start)."""

    settings: Settings
    store: Store | None
    conversation_id: str | None
    messages: list[Message] = field(default_factory=list)
    system: str | None = None


def _approver(ui: Ui) -> Any:
    def approve(call: ToolCall) -> bool:
        ui.output.end()
        ui.status.clear()
        question = f"Run {call.name}({call.arguments_json})? [y/N] "
        try:
            # Asked on the terminal itself: stdin may be the prompt's pipe, stdout the answer's.
            with open("/dev/tty", "w", encoding="utf-8") as out, open("/dev/tty", encoding="utf-8") as tty_in:
                out.write(question)
                out.flush()
                answer = tty_in.readline()
        except OSError:
            ui.note(f"cllm: no terminal to ask on; {call.name} was not run", dim=False)
            return False
        return answer.strip().lower() in ("y", "yes")

    return approve


def open_session(args: argparse.Namespace, ui: Ui) -> Session:
    """Everything the exchange needs from the command line: may raise `CliError`."""
    continuing = bool(args.cont or args.cid)
    store = None if args.no_log and not continuing else open_store(ui, required=continuing)
    conversation = None
    if store is not None and continuing:
        from cllm.store import StoreError

        try:
            conversation = store.get_conversation(args.cid) if args.cid else store.latest_conversation()
            if conversation is None:
                raise CliError(
                    f"no conversation {args.cid!r} (see `cllm logs`)"
                    if args.cid
                    else "no conversation to continue"
                )
            messages = store.history(conversation.id)
        except StoreError as e:
            raise CliError(f"cannot read the conversation: {e}") from e
    else:
        messages = []
    name = resolve_model(args.model, conversation.model if conversation else None)
    model, alias_options = resolve_alias(name)
    if args.system:
        messages = set_system(messages, args.system)
    try:
        toolbox = Toolbox.from_files(args.functions) if args.functions else None
    except ToolsError as e:
        raise CliError(f"--functions: {e}", 2) from e
    settings = Settings(
        model=model,
        options={**alias_options, **parse_options(args.options), **retry_options(args)},
        stream=not args.no_stream,
        toolbox=toolbox,
        approve=_approver(ui) if args.approve and toolbox else None,
        chain_limit=args.chain_limit,
        tool_choice_rounds=args.tool_choice_rounds,
    )
    return Session(
        settings=settings,
        store=None if args.no_log else store,
        conversation_id=conversation.id if conversation else None,
        messages=messages,
        system=args.system,
    )


def read_stdin() -> str:
    """Piped input, or "" when stdin is a terminal (or closed)."""
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return ""
    try:
        if os.isatty(stdin.fileno()):
            return ""
    except (OSError, ValueError):
        return ""
    return stdin.read()
