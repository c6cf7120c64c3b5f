"""``cllm chat``: a conversation in the terminal, each reply streamed and each turn logged.

Enter sends; Alt-Enter (or Esc then Enter) inserts a new line. Ctrl-C while a reply streams stops
that reply (kept and logged as interrupted) and returns to the prompt; Ctrl-C on an empty line or
Ctrl-D quits.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from typing import Any

from cllm import config
from cllm.cli.args import parse_options
from cllm.cli.display import Ui
from cllm.cli.exchange import ConversationLog, Outcome, run_exchange, usage_line
from cllm.cli.prompt import exit_code
from cllm.cli.session import CliError, Session, open_session, resolve_alias, set_system

__all__ = ["run"]

PROMPT = "\u203a "  # a single right-pointing angle quote

HELP = (
    "Enter sends · Alt-Enter or Esc Enter: new line · /model NAME · /system TEXT · /exit\n"
    "Ctrl-C stops a reply · Ctrl-C on an empty line or Ctrl-D quits"
)


def _prompt_session() -> Any:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if buffer.text:
            buffer.reset()
        else:
            event.app.exit(exception=EOFError)

    history: History
    try:
        home = config.cllm_home()
        home.mkdir(parents=True, exist_ok=True)
        history = FileHistory(str(home / "chat_history"))
    except OSError:
        history = InMemoryHistory()
    return PromptSession(history=history, key_bindings=bindings, multiline=False)


class Chat:
    """The REPL's state: the session and the system message waiting to be logged."""

    def __init__(self, session: Session, ui: Ui, usage: bool, given_options: dict[str, Any]) -> None:
        self.session = session
        self.given_options = given_options  # -o options, kept when /model changes the model
        self.ui = ui
        self.usage = usage
        self.log = ConversationLog(session.store, ui, session.conversation_id)
        self.pending_system = session.system

    def command(self, line: str) -> bool:
        """Handle a /command; False when the chat should end."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        settings = self.session.settings
        if name in ("/exit", "/quit"):
            return False
        if name == "/model":
            if rest:
                try:
                    model, alias_options = resolve_alias(rest)
                except CliError as e:
                    self.ui.note(f"cllm: {e.message}", dim=False)
                    return True
                settings.model = model
                settings.options = {**alias_options, **self.given_options}
            self.ui.note(f"model: {settings.model}")
        elif name == "/system":
            if rest:
                self.session.messages[:] = set_system(self.session.messages, rest)
                self.pending_system = rest
                self.ui.note("system message set for the next replies")
            else:
                current = next((m for m in self.session.messages if m.get("role") == "system"), None)
                self.ui.note(f"system: {current['content'] if current else '(none)'}")
        elif name == "/help":
            self.ui.note(HELP)
        else:
            self.ui.note(f"unknown command {name} (/help lists them)", dim=False)
        return True

    def send(self, text: str) -> Outcome:
        outcome = run_exchange(
            self.session.settings,
            self.session.messages,
            {"role": "user", "content": text},
            prompt=text,
            system=self.pending_system,
            ui=self.ui,
            log=self.log,
        )
        if outcome.responses:
            self.pending_system = None
        if self.usage and outcome.responses:
            self.ui.note(usage_line(outcome.responses))
        return outcome


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _run_lines(chat: Chat, lines: Iterable[str]) -> int:
    """A chat fed from a pipe or a file: each non-empty line is a message (or a /command), sent in
    turn in one conversation; the line editor needs a terminal and is not started.

    The exit status is that of the last exchange that did not end complete (0 when all did).
    """
    code = 0
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if re.fullmatch(r"/[a-z]+", text.split()[0]):
            if not chat.command(text):
                return code
            continue
        code = exit_code(chat.send(text)) or code
    return code


def run(args: argparse.Namespace) -> int:
    """Run the chat until /exit, Ctrl-D or Ctrl-C on an empty line."""
    ui = Ui(raw=args.raw, show_reasoning=not args.no_reasoning, debug=args.debug)
    session = open_session(args, ui)
    chat = Chat(session, ui, args.usage, parse_options(args.options))
    where = f" · conversation {session.conversation_id}" if session.conversation_id else ""
    if not _stdin_is_terminal():
        print(f"cllm chat · {session.settings.model}{where} · one message per line of input", file=sys.stderr)
        return _run_lines(chat, sys.stdin)
    prompt = _prompt_session()
    print(f"cllm chat · {session.settings.model}{where}\n{HELP}", file=sys.stderr, flush=True)
    while True:
        try:
            line = prompt.prompt(PROMPT)
        except (EOFError, KeyboardInterrupt):
            return 0
        text = line.strip()
        if not text:
            continue
        if re.fullmatch(r"/[a-z]+", text.split()[0]):
            if not chat.command(text):
                return 0
            continue
        chat.send(line)
        print(file=sys.stdout, flush=True)
