"""`cllm batch` and `cllm file` as a user runs them: a real process against the scripted provider."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MODEL, Cli, text_stream
from support.replay_server import RecordedRequest, ScriptedResponse, error_response
from support.scripted_provider import prompt_of

pytestmark = pytest.mark.slow


def batch_args(cli: Cli, *extra: str) -> list[str]:
    return ["batch", *extra, "-m", MODEL, "--option", "api_base", cli.api_base]


def echo(delay: float = 0.0) -> object:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        prompt = prompt_of(request)
        if prompt.startswith("bad"):
            return error_response(400, f"refused {prompt}", code=None)
        return text_stream(["re: ", prompt], delay=delay)

    return respond


def read_lines(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "a torn last line"
    return [json.loads(line) for line in data.splitlines()]


def test_batch_killed_halfway_and_rerun_gives_every_id_exactly_once(cli: Cli, tmp_path: Path) -> None:
    cli.server.add(echo(0.15), repeat=True)
    prompts = tmp_path / "prompts.jsonl"
    ids = [f"item-{i}" for i in range(24)]
    prompts.write_text("".join(json.dumps({"id": i, "prompt": f"p {i}"}) + "\n" for i in ids))
    out = tmp_path / "results.jsonl"
    proc = cli.start(*batch_args(cli, str(prompts), "-o", str(out), "--concurrency", "3"), model=False)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 6):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    first = read_lines(out)
    assert 6 <= len(first) < 24
    sent_before = len(cli.server.exchanges)
    again = cli.run(*batch_args(cli, str(prompts), "-o", str(out), "--concurrency", "3"), model=False)
    assert again.returncode == 0, again.stderr
    lines = read_lines(out)
    assert sorted(str(line["id"]) for line in lines) == sorted(ids)
    assert all("response" in line for line in lines)
    # The rerun asked only for what was not done.
    asked_again = [prompt_of(ex.request) for ex in cli.server.exchanges[sent_before:]]
    assert len(asked_again) == 24 - len(first)
    assert not {f"p {line['id']}" for line in first} & set(asked_again)
    assert f"{len(first)} of 24 items already done" in again.stderr


def test_batch_reports_failures_and_retries_them_on_the_next_run(cli: Cli, tmp_path: Path) -> None:
    cli.server.add(echo(), repeat=True)
    prompts = tmp_path / "in.jsonl"
    prompts.write_text(
        '"first"\n\n{"id": "b", "prompt": "bad one"}\nnot json\n{"prompt": "last", "max_tokens": 9}\n'
    )
    out = tmp_path / "out.jsonl"
    result = cli.run(*batch_args(cli, str(prompts), "-o", str(out)), model=False)
    assert result.returncode == 1
    lines = {str(line["id"]): line for line in read_lines(out)}
    assert set(lines) == {"1", "b", "4", "5"}
    assert lines["1"]["response"]["text"] == "re: first"  # type: ignore[index]
    assert "refused bad one" in lines["b"]["error"]["message"]  # type: ignore[index]
    assert lines["b"]["error"]["status_code"] == 400  # type: ignore[index]
    assert "not JSON" in lines["4"]["error"]["message"]  # type: ignore[index]
    # On a pipe: one line per item on stderr.
    item_lines = [line for line in result.stderr.splitlines() if re.match(r"\[\d/4\] ", line)]
    assert len(item_lines) == 4 and sum("failed" in line for line in item_lines) == 2
    assert "2 of 4 items failed" in result.stderr
    # Fixed input, second run: only the failed ones run again, and each id stays once.
    prompts.write_text(
        '"first"\n\n{"id": "b", "prompt": "fine now"}\n"fixed"\n{"prompt": "last", "max_tokens": 9}\n'
    )
    again = cli.run(*batch_args(cli, str(prompts), "-o", str(out)), model=False)
    assert again.returncode == 0, again.stderr
    lines_after = read_lines(out)
    assert sorted(str(line["id"]) for line in lines_after) == ["1", "4", "5", "b"]
    assert all("response" in line for line in lines_after)


def test_batch_refuses_repeated_ids(cli: Cli, tmp_path: Path) -> None:
    prompts = tmp_path / "in.jsonl"
    prompts.write_text('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n')
    result = cli.run(*batch_args(cli, str(prompts), "-o", str(tmp_path / "o.jsonl")), model=False)
    assert result.returncode == 2 and "repeats the id 1" in result.stderr
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_batch_draws_a_progress_bar_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    from test_terminal import Terminal

    cli.server.add(echo(0.05), repeat=True)
    prompts = tmp_path / "in.jsonl"
    prompts.write_text("".join(f'"q{i}"\n' for i in range(12)) + '"bad"\n')
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "cllm.cli", *batch_args(cli, str(prompts), "-o", str(out))]
    term = Terminal(tmp_path, [*command, "--concurrency", "2"], cli.env)
    try:
        screen = term.wait_for(lambda s: "EXITED" in s, timeout=60, what="the end")
    finally:
        term.close()
    assert "EXITED 1" in screen
    assert "13/13 · 12 done · 1 failed · 0 running" in screen
    assert "tokens" in screen and "ETA" in screen and "━" in screen
    assert not re.search(r"\[\d+/13\]", screen)  # no per-item lines on a terminal


def big_text(size: int = 200_000) -> str:
    paragraphs, n = [], 0
    while sum(map(len, paragraphs)) < size:
        paragraphs.append(" ".join(f"Sentence {n}.{k} is about thing {n * 9 + k}." for k in range(8)))
        n += 1
    return "\n\n".join(paragraphs) + "\n"


def test_file_in_sections_in_order_first_live_logged_as_one_conversation(cli: Cli, tmp_path: Path) -> None:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        found = re.search(r"section (\d+) of (\d+)", prompt_of(request))
        label = found.group(1) if found else "all"
        return text_stream([f"answer {label}", " part two", " end."], delay=0.1)

    cli.server.add(respond, repeat=True)
    path = tmp_path / "big.txt"
    path.write_text(big_text(), encoding="utf-8")
    proc = subprocess.Popen(
        cli.args(
            "file", str(path), "Summarize", "-m", MODEL, "--option", "api_base", cli.api_base, model=False
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
    )
    assert proc.stdout is not None
    received = b""
    first_answer_at = None
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        data = proc.stdout.read() or b""
        received += data
        if first_answer_at is None and b"answer 1" in received:
            first_answer_at = time.monotonic()
        time.sleep(0.005)
    received += proc.stdout.read() or b""
    err = proc.stderr.read() if proc.stderr else b""
    assert proc.returncode == 0, err
    text = received.decode()
    headings = re.findall(r"^## Section (\d+)/(\d+)$", text, re.M)
    total = int(headings[0][1])
    assert total > 10
    assert [int(i) for i, _ in headings] == list(range(1, total + 1))
    for i in range(1, total + 1):
        assert f"## Section {i}/{total}\n\nanswer {i} part two end." in text
    # The first section's answer was on screen before the last section was even asked.
    last = next(ex for ex in cli.server.exchanges if f"section {total} of" in prompt_of(ex.request))
    assert first_answer_at is not None and first_answer_at < last.request.received_at
    # Sections end at paragraph boundaries: each one sent ends with a blank line, except the last.
    sent = [prompt_of(ex.request) for ex in cli.server.exchanges]
    assert all(s.endswith("\n\n") for s in sent if f"section {total} of" not in s)
    logged = cli.logs()
    assert len(logged) == total
    assert len({r["conversation_id"] for r in logged}) == 1
    assert [r["text"] for r in logged] == [f"answer {i} part two end." for i in range(1, total + 1)]


def test_file_with_combine_and_a_missing_file(cli: Cli, tmp_path: Path) -> None:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        prompt = prompt_of(request)
        return text_stream(["merged"] if prompt.startswith("Merge") else ["part"])

    cli.server.add(respond, repeat=True)
    path = tmp_path / "small.txt"
    path.write_text(big_text(20_000), encoding="utf-8")
    args = ["-m", MODEL, "--option", "api_base", cli.api_base, "--section-tokens", "2000"]
    result = cli.run("file", str(path), "Do", "--combine", "Merge them", *args, model=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("## Combined\n\nmerged")
    assert "## Section 1/" in result.stdout
    missing = cli.run("file", str(tmp_path / "nope.txt"), "Do", *args, model=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr
