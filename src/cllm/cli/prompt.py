"""``cllm PROMPT``: one exchange, streamed to stdout."""

from __future__ import annotations

import argparse

from cllm.cli import endings
from cllm.cli.display import Ui
from cllm.cli.exchange import ConversationLog, Outcome, run_exchange, usage_line
from cllm.cli.session import CliError, open_session, read_stdin

__all__ = ["run"]


def compose_prompt(words: list[str], piped: str) -> str:
    """The prompt from the arguments and stdin: piped text first, then the words."""
    prompt = " ".join(words).strip()
    piped = piped.strip("\n")
    if piped.strip() and prompt:
        return f"{piped}\n\n{prompt}"
    return piped if piped.strip() else prompt


def run(args: argparse.Namespace) -> int:
    """Run the prompt command; the exit code."""
    text = compose_prompt(args.prompt, read_stdin())
    if not text.strip():
        raise CliError("no prompt: give one as arguments or on stdin (or run `cllm chat`)", 2)
    ui = Ui(raw=args.raw, quiet_stdout=args.json, show_reasoning=not args.no_reasoning, debug=args.debug)
    session = open_session(args, ui)
    log = ConversationLog(session.store, ui, session.conversation_id)
    outcome = run_exchange(
        session.settings,
        session.messages,
        {"role": "user", "content": text},
        prompt=text,
        system=session.system,
        ui=ui,
        log=log,
    )
    if args.json and outcome.final is not None:
        print(outcome.final.to_json(indent=2), flush=True)
    if args.usage and outcome.responses:
        ui.note(usage_line(outcome.responses))
    return exit_code(outcome)


def exit_code(outcome: Outcome) -> int:
    """The exit status for how the exchange ended (see `cllm.cli.endings`)."""
    if outcome.interrupted:
        return endings.INTERRUPTED
    if outcome.error is not None:
        return endings.ERROR
    if outcome.stopped:
        return endings.CHAIN_LIMIT
    if outcome.ending is not None:
        return outcome.ending.code
    return endings.OK
