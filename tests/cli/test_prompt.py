"""`cllm PROMPT` through real processes against a scripted OpenAI-compatible provider on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MODEL, Cli, last_user_text, text_stream
from support.replay_server import RecordedRequest, ScriptedResponse, error_response, json_response


def _read_timed(proc: subprocess.Popen[str], until: int | None = None) -> list[tuple[float, bytes]]:
    """What the process writes to stdout, with the time each read returned (stops after ``until`` reads)."""
    assert proc.stdout is not None
    pieces = []
    while until is None or len(pieces) < until:
        data = os.read(proc.stdout.fileno(), 65536)
        if not data:
            break
        pieces.append((time.monotonic(), data))
    return pieces


def test_piped_output_arrives_as_it_is_streamed(cli: Cli) -> None:
    words = ["alpha ", "beta ", "gamma ", "delta"]
    cli.server.add(text_stream(words, delay=0.2))
    proc = cli.start("hello")
    pieces = _read_timed(proc)
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    assert b"".join(data for _, data in pieces) == b"alpha beta gamma delta\n"
    # One read per chunk: each word arrived on its own, about when the server sent it.
    received = [t for t, data in pieces if data.strip()]
    assert len(received) == 4
    gaps = [b - a for a, b in itertools.pairwise(received)]
    assert all(gap >= 0.15 for gap in gaps), gaps
    sent = cli.server.exchanges[0].piece_times
    assert received[0] < sent[-1] - 0.4  # the first word was out long before the last was sent


def test_stdin_and_prompt_system_and_options_reach_the_provider(cli: Cli) -> None:
    cli.server.add(text_stream(["ok"]))
    # After `--`, a word naming a command ("chat") is part of the prompt.
    result = cli.run(
        "-s",
        "Be terse.",
        "-o",
        "temperature",
        "0",
        "-o",
        "max_tokens",
        "50",
        "-o",
        "stop",
        '["END"]',
        "-o",
        "seed",
        "7",
        "--",
        "chat",
        "summary",
        input="line one\nline two\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    [request] = cli.requests()
    assert request["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "line one\nline two\n\nchat summary"},
    ]
    assert request["temperature"] == 0 and request["max_tokens"] == 50
    assert request["stop"] == ["END"] and request["seed"] == 7
    [logged] = cli.logs()
    assert logged["prompt"] == "line one\nline two\n\nchat summary"
    assert logged["text"] == "ok" and logged["finish_reason"] == "stop"


def test_unknown_conversation_id_is_a_clear_error(cli: Cli) -> None:
    result = cli.run("--cid", "nope", "hi")
    assert result.returncode != 0
    assert "no conversation 'nope'" in result.stderr and "Traceback" not in result.stderr
    assert cli.requests() == []


def test_sigint_mid_stream_saves_exactly_what_was_printed(cli: Cli) -> None:
    words = [f"word{i} " for i in range(40)]
    cli.server.add(text_stream(words, delay=0.1))
    proc = cli.start("count")
    printed = _read_timed(proc, until=4)
    proc.send_signal(signal.SIGINT)
    rest = _read_timed(proc)
    assert proc.wait(timeout=10) == 130
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "interrupted" in stderr and "Traceback" not in stderr
    stdout = b"".join(data for _, data in printed + rest).decode()
    exchange = cli.server.wait_client_closed(0, timeout=2)
    assert exchange.closed_early  # the provider saw the connection closed before the end
    [row] = cli.logs()
    assert row["interrupted"] is True and row["finish_reason"] == "cancelled"
    assert 4 <= len(row["text"].split()) < 40
    assert stdout == row["text"] + "\n"


def test_sigint_before_the_first_token(cli: Cli) -> None:
    cli.server.add(text_stream(["late"], first_delay=10))
    # The provider's address from OPENAI_BASE_URL this time.
    proc = cli.start("-m", MODEL, "wait", env=cli.env | {"OPENAI_BASE_URL": cli.api_base})
    cli.server.wait_exchange(0, timeout=20)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    assert proc.stdout is not None and proc.stdout.read() == ""
    cli.server.wait_client_closed(0, timeout=2)
    [row] = cli.logs()
    assert row["interrupted"] is True and row["text"] == ""


def test_json_with_usage(cli: Cli) -> None:
    # CLLM_MODEL picks the model when -m is absent; gpt-4o's price is in LiteLLM's table.
    cli.server.add(text_stream(["Hello", " there"], reasoning=["Think", "ing hard."]))
    result = cli.run(
        "hi",
        "--json",
        "-u",
        "-o",
        "api_base",
        cli.api_base,
        model=False,
        env=cli.env | {"CLLM_MODEL": "openai/gpt-4o"},
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # nothing but the response on stdout
    assert data["text"] == "Hello there" and data["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens"] == 11 and data["interrupted"] is False
    assert data["reasoning"] == "Thinking hard."
    assert result.stderr.startswith("Thinking hard.\n")  # reasoning streams on stderr
    assert data["cost"] == pytest.approx(0.0000975)
    assert "usage: 11 input + 7 output tokens · $0.0000975" in result.stderr
    assert cli.requests()[0]["model"] == "gpt-4o"


NON_STREAMED = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "test-model",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Whole answer."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
}


def test_no_stream_auth_errors_unknown_models_and_an_unwritable_database(cli: Cli, tmp_path: Path) -> None:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        prompt = last_user_text(request)
        if prompt == "auth":
            return error_response(401, "Incorrect API key provided: sk-test.")
        if prompt == "whole":
            return json_response(NON_STREAMED)
        return text_stream(["Still here."])

    cli.server.add(respond, repeat=True)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    unknown = ["-m", "nosuchprovider/model-x", "hi"]
    no_stream, auth, unknown_model, unknown_debug, unwritable = cli.run_many(
        (["whole", "--no-stream", "-u"], None),
        (["auth"], None),
        (unknown, None),
        ([*unknown, "--debug"], None),
        (["hi"], cli.env | {"CLLM_HOME": str(blocker / "home")}),
    )
    assert no_stream.returncode == 0, no_stream.stderr
    assert no_stream.stdout == "Whole answer.\n"
    assert "5 input + 3 output tokens" in no_stream.stderr
    whole = next(r.json for r in cli.server.requests if last_user_text(r) == "whole")
    assert not whole.get("stream")

    assert auth.returncode == 1 and auth.stdout == ""
    [line] = auth.stderr.strip().splitlines()
    assert "authentication failed" in line and "OPENAI_API_KEY" in line

    assert unknown_model.returncode == 1
    [line] = unknown_model.stderr.strip().splitlines()
    assert "unknown model 'nosuchprovider/model-x'" in line and "cllm models" in line
    assert unknown_debug.returncode == 1 and "Traceback" in unknown_debug.stderr

    assert unwritable.returncode == 0
    assert unwritable.stdout == "Still here.\n"
    assert "warning" in unwritable.stderr and "not be saved" in unwritable.stderr
    # Only the answer that worked, in the working home, was logged; the failed call was not.
    assert [r["prompt"] for r in cli.logs()] == ["whole"]


def test_no_model_says_how_to_choose_one(cli: Cli, tmp_path: Path) -> None:
    # Hide the local model (if its extra is installed) with a site that makes it unimportable.
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "llama_cpp.py").write_text("raise ImportError('hidden')\n")
    (blocker / "sitecustomize.py").write_text(
        "import importlib.util, sys\n"
        "_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'llama_cpp' else _find(name, *a)\n"
    )
    env = cli.env | {"PYTHONPATH": str(blocker)}
    result = cli.run("hi", model=False, env=env)
    assert result.returncode == 2
    assert "-m" in result.stderr and "CLLM_MODEL" in result.stderr and "cllm models default" in result.stderr
    assert "cllm[local]" in result.stderr


def test_unwritable_database_warns_and_still_answers(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cli.server.add(text_stream(["Still here."]))
    result = cli.run("hi", env=cli.env | {"CLLM_HOME": str(blocker / "home")})
    assert result.returncode == 0
    assert result.stdout == "Still here.\n"
    assert "warning" in result.stderr and "not be saved" in result.stderr


def test_help_and_logs_do_not_import_litellm(cli: Cli) -> None:
    for args in (["--help"], ["logs"], ["chat", "--help"], ["models", "default"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "cllm.cli", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=cli.env | {"CLLM_MODEL": "x/y"},
            timeout=30,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        assert "cllm.cli" in imported  # the import log is real
        assert "litellm" not in imported, args
        assert "rich" not in imported and "prompt_toolkit" not in imported, args


def test_broken_pipe_ends_quietly(cli: Cli) -> None:
    cli.server.add(text_stream([f"line {i}\n" for i in range(200)], delay=0.005))
    result = subprocess.run(
        f"{sys.executable} -m cllm.cli -m {MODEL} -o api_base {cli.api_base} go | head -n 2",
        shell=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=30,
    )
    assert result.stdout == "line 0\nline 1\n"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_empty_prompt_is_an_error(cli: Cli) -> None:
    result = cli.run(input="   \n")
    assert result.returncode == 2 and "no prompt" in result.stderr
