"""Retries, fallbacks and mid-stream recovery from the command line: flags, stderr lines, logs."""

from __future__ import annotations

import re

from cli.conftest import Cli
from support.faults import FULL_TEXT, WORDS, continuing, text_stream
from support.replay_server import error_response


def test_429_is_retried_after_retry_after(cli: Cli) -> None:
    cli.server.add(
        error_response(429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after": "1"}),
        text_stream(["Hello", " world"]),
    )
    result = cli.run("--retries", "2", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello world"
    assert re.search(r"retrying in 1\.\d s \(429 rate limit\)", result.stderr), result.stderr
    assert len(cli.requests()) == 2
    [logged] = cli.logs()
    assert [a["outcome"] for a in logged["attempts"]] == ["failed", "finished"]


def test_a_cut_stream_continues_without_repeating(cli: Cli) -> None:
    cli.server.add(text_stream(WORDS, model="deepseek-chat", cut_after=40), continuing())
    result = cli.run(
        "-m", "deepseek/deepseek-chat", "-o", "api_base", cli.api_base, "-o", "api_key", "x",
        "--retries", "1", "--no-log", "hi",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == FULL_TEXT + ("" if FULL_TEXT.endswith("\n") else "\n")
    assert 'continuing on deepseek/deepseek-chat after "connection reset"' in result.stderr


def test_fallback_after_500s_and_the_logs_show_every_attempt(cli: Cli) -> None:
    cli.server.add(
        *(error_response(500, "boom", code=None) for _ in range(2)),
        text_stream(["from ", "backup"], model="gpt-4o-mini"),
    )
    result = cli.run("--retries", "1", "--fallback", "openai/gpt-4o-mini", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from backup"
    assert re.search(r"retrying in 0\.\d s \(500 server error\)", result.stderr), result.stderr
    assert "falling back to openai/gpt-4o-mini (500 server error)" in result.stderr
    assert [r["model"] for r in cli.requests()] == ["test-model", "test-model", "gpt-4o-mini"]
    [logged] = cli.logs()
    assert [a["model"] for a in logged["attempts"]] == ["openai/test-model"] * 2 + ["openai/gpt-4o-mini"]
    text = cli.run("logs", model=False).stdout
    assert "attempt 1 · openai/test-model · failed: 500 server error" in text
    assert "attempt 3 · openai/gpt-4o-mini · retry · finished" in text


def test_restart_says_so_and_a_401_is_not_retried(cli: Cli) -> None:
    cli.server.add(text_stream(WORDS, cut_after=10), text_stream(["again"]), error_response(401, "bad key"))
    result = cli.run("--retries", "1", "--mid-stream", "continue", "--no-log", "hi")
    assert result.returncode == 0, result.stderr
    assert 'restarting on openai/test-model after "connection reset"' in result.stderr
    assert "accepts no assistant prefix" in result.stderr
    failed = cli.run("--retries", "3", "--no-log", "hi")
    assert failed.returncode != 0 and "bad key" in failed.stderr
    assert len(cli.requests()) == 3
