"""`cllm logs` and `cllm models` through real processes, on a real SQLite file."""

from __future__ import annotations

import json
import subprocess

from conftest import Cli

from cllm.core.finish import FinishReason
from cllm.core.response import Response, ToolCall, Usage
from cllm.store import ConversationStore


def _fill(cli: Cli) -> tuple[str, str]:
    with ConversationStore(cli.home / "cllm.db") as store:
        first = store.create_conversation(model="openai/a")
        for prompt, text in [
            ("What is a quokka?", "A small marsupial."),
            ("Where do they live?", "Rottnest Island."),
        ]:
            store.log_response(
                first.id,
                Response(text=text, finish_reason=FinishReason.STOP, usage=Usage(10, 5, 15), cost=0.00012),
                model="openai/a",
                messages_in=[{"role": "user", "content": prompt}],
                prompt=prompt,
            )
        second = store.create_conversation(model="openai/b")
        call = ToolCall("call_9", "lookup", {"q": "zebra"}, '{"q": "zebra"}')
        store.log_response(
            second.id,
            Response(tool_calls=[call], finish_reason=FinishReason.TOOL_CALLS),
            model="openai/b",
            messages_in=[{"role": "user", "content": "Zebra stripes?"}],
            prompt="Zebra stripes?",
        )
        store.log_response(
            second.id,
            Response(text="Stripes confuse fli", finish_reason=FinishReason.CANCELLED, interrupted=True),
            model="openai/b",
            messages_in=[{"role": "tool", "tool_call_id": "call_9", "content": "zebra: striped"}],
        )
    return first.id, second.id


def test_logs_readable_and_json(cli: Cli) -> None:
    first, second = _fill(cli)
    text = cli.run("logs", model=False)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    # The 3 most recent, oldest first, each with a header line, the prompt quoted and the reply.
    assert out.index("Where do they live?") < out.index("Zebra stripes?") < out.index("Stripes confuse fli")
    assert "What is a quokka?" not in out
    assert "## " in out and " · openai/a · " in out and "10→5 tokens" in out and "$0.00012" in out
    assert "> Where do they live?" in out and "Rottnest Island." in out
    assert '→ tool call `lookup({"q": "zebra"})`' in out
    assert "cancelled, interrupted" in out and "tool result (call_9): zebra: striped" in out

    everything = cli.logs()
    assert [r["prompt"] for r in everything] == [
        "What is a quokka?",
        "Where do they live?",
        "Zebra stripes?",
        None,
    ]
    for key in (
        "id",
        "conversation_id",
        "model",
        "prompt",
        "text",
        "reasoning",
        "tool_calls",
        "finish_reason",
        "usage",
        "cost",
        "interrupted",
        "created",
    ):
        assert key in everything[0]
    assert everything[-1]["interrupted"] is True and everything[2]["tool_calls"][0]["name"] == "lookup"

    assert [r["text"] for r in cli.logs("--cid", first)] == ["A small marsupial.", "Rottnest Island."]
    assert [r["text"] for r in cli.logs("-n", "1")] == ["Stripes confuse fli"]
    assert [r["prompt"] for r in cli.logs("-q", "quokka")] == ["What is a quokka?"]
    assert [r["text"] for r in cli.logs("-q", "rottnest")] == ["Rottnest Island."]
    assert cli.logs("-q", 'AND "unbalanced (') == []  # any text is safe to search for
    assert [r["conversation_id"] for r in cli.logs("-c")] == [second, second]
    missing = cli.run("logs", "--cid", "nope", model=False)
    assert missing.returncode == 1 and "no conversation 'nope'" in missing.stderr


def test_models_lists_litellm_models_by_provider_and_the_local_one(cli: Cli) -> None:
    full, filtered = (
        subprocess.run(
            cli.args("models", *args, model=False), capture_output=True, text=True, env=cli.env, timeout=60
        )
        for args in (["--all"], ["--all", "-q", "claude-haiku"])
    )
    assert full.returncode == 0, full.stderr
    lines = full.stdout.splitlines()
    assert lines[0] == "local"
    assert lines[1].startswith("  local/gemma-3-270m  (")
    assert any(line.startswith("openai (") for line in lines) and any(
        line.startswith("anthropic (") for line in lines
    )
    assert "  openai/gpt-4o" in lines and "  anthropic/claude-haiku-4-5" in lines
    assert filtered.returncode == 0
    assert "  openai/gpt-4o" not in filtered.stdout.splitlines()
    assert "  anthropic/claude-haiku-4-5" in filtered.stdout.splitlines()
    assert all("claude-haiku" in line for line in filtered.stdout.splitlines() if line.startswith("  "))


def test_models_default_shows_and_sets_the_default(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "CLLM_MODEL"}
    set_ = cli.run("models", "default", "openai/gpt-4o-mini", model=False, env=env)
    assert set_.returncode == 0 and set_.stdout == "openai/gpt-4o-mini\n"
    shown = cli.run("models", "default", model=False, env=env)
    assert shown.stdout == "openai/gpt-4o-mini\n" and "config.toml" in shown.stderr
    overridden = cli.run("models", "default", model=False, env=env | {"CLLM_MODEL": "anthropic/x"})
    assert overridden.stdout == "anthropic/x\n" and "CLLM_MODEL" in overridden.stderr
    assert json.loads(json.dumps(set_.stdout))  # plain text, one line
