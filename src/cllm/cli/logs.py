"""``cllm logs``: the responses logged most recently, as readable markdown or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cllm.cli.exchange import format_cost
from cllm.cli.session import CliError

if TYPE_CHECKING:
    from cllm.store import LoggedResponse

__all__ = ["format_response", "run"]


def _when(created: str) -> str:
    try:
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return created
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _usage(usage: dict[str, Any] | None, cost: float | None) -> str | None:
    parts = []
    if usage:
        parts.append(f"{usage.get('prompt_tokens') or 0}→{usage.get('completion_tokens') or 0} tokens")
    if cost:
        parts.append(format_cost(cost))
    return " ".join(parts) or None


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _attempt_line(a: dict[str, Any]) -> str:
    """One attempt: ``- attempt 2 · openai/gpt-4o · continue after 0.5 s · finished · 1.20 s``."""
    parts = [f"- attempt {a.get('number')}", str(a.get("model"))]
    if a.get("mode"):
        delay = a.get("delay") or 0
        parts.append(f"{a['mode']} after {delay:.1f} s" if delay else str(a["mode"]))
    outcome = str(a.get("outcome"))
    parts.append(f"{outcome}: {a['error']}" if a.get("error") else outcome)
    if isinstance(a.get("duration"), int | float):
        parts.append(f"{a['duration']:.2f} s")
    if usage := _usage(a.get("usage"), a.get("cost")):
        parts.append(usage)
    return " · ".join(parts)


def format_response(r: LoggedResponse) -> str:
    """One logged response as markdown: a header line, the prompt (or tool results), the reply."""
    finish = r.finish_reason or "?"
    if r.interrupted:
        finish += ", interrupted"
    header = [r.id, r.model, _when(r.created), finish]
    if usage := _usage(r.usage, r.cost):
        header.append(usage)
    lines = [f"## {' · '.join(header)}", f"conversation {r.conversation_id}", ""]
    if r.attempts:
        lines += [*(_attempt_line(a) for a in r.attempts), ""]
    if r.prompt is not None:
        lines += [_quote(r.prompt), ""]
    else:
        for message in r.messages_in:
            if message.get("role") == "tool":
                content = str(message.get("content") or "")
                short = content if len(content) <= 200 else content[:199] + "…"
                lines += [f"> tool result ({message.get('tool_call_id')}): {short}", ""]
    if r.reasoning:
        lines += ["<details><summary>reasoning</summary>", "", r.reasoning.strip("\n"), "", "</details>", ""]
    if r.text:
        lines += [r.text.strip("\n"), ""]
    for call in r.tool_calls:
        lines += [f"→ tool call `{call.get('name')}({call.get('arguments_json')})`", ""]
    if r.error:
        lines += [f"*error: {r.error}*", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print recent responses, oldest first."""
    from cllm.store import StoreError, open_store

    try:
        with open_store() as store:
            conversation_id = args.cid
            if args.current:
                latest = store.latest_conversation()
                if latest is None:
                    raise CliError("no conversations yet")
                conversation_id = latest.id
            if conversation_id is not None and store.get_conversation(conversation_id) is None:
                raise CliError(f"no conversation {conversation_id!r}")
            responses = store.responses(
                limit=args.count or None, conversation_id=conversation_id, query=args.query
            )
    except StoreError as e:
        raise CliError(f"cannot read the log database: {e}") from e
    responses.reverse()
    if args.json:
        json.dump([r.to_dict() for r in responses], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    if not responses:
        print(
            "no responses found" if args.query or conversation_id else "nothing logged yet", file=sys.stderr
        )
        return 0
    if _isatty(sys.stdout):
        show_on_terminal(responses)
    else:
        sys.stdout.write("\n".join(format_response(r) for r in responses))
    return 0


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def show_on_terminal(responses: list[LoggedResponse]) -> None:
    """The responses as the answers were shown: the header dimmed, the prompt quoted, the reply's
    markdown rendered (rich is imported only here)."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.text import Text

    console = Console(highlight=False)
    for i, r in enumerate(responses):
        if i:
            console.print()
        header, _, body = format_response(r).partition("\n")
        console.print(Text(header.removeprefix("## "), style="bold"))
        for line in body.split("\n", 1)[:1]:
            console.print(Text(line, style="dim"))  # the conversation's id
        if r.prompt is not None:
            console.print(Markdown(_quote(r.prompt)))
        else:
            for message in r.messages_in:
                if message.get("role") == "tool":
                    content = " ".join(str(message.get("content") or "").split())
                    short = content if len(content) <= 200 else content[:199] + "…"
                    console.print(Text(f"tool result ({message.get('tool_call_id')}): {short}", style="dim"))
        if r.reasoning:
            console.print(Text(r.reasoning.strip("\n"), style="dim"))
        if r.text:
            console.print(Markdown(r.text.strip("\n")))
        for call in r.tool_calls:
            console.print(Text(f"→ tool call {call.get('name')}({call.get('arguments_json')})", style="dim"))
        if r.error:
            console.print(Text(f"error: {r.error}", style="red"))
