"""`cllm.batch` / `cllm.abatch` end to end against a scripted provider on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from support.replay_server import RecordedRequest, ReplayServer, ScriptedResponse, error_response
from support.scripted_provider import MODEL, peak_in_flight, prompt_of, text_stream

import cllm

SRC = Path(cllm.__file__).resolve().parents[1]


def opts(server: ReplayServer, **extra: Any) -> dict[str, Any]:
    return {"api_base": server.url + "/v1", "api_key": "sk-test", **extra}


def echo(delay: float = 0.03) -> Any:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        prompt = prompt_of(request)
        if prompt.startswith("bad"):
            return error_response(400, f"refused {prompt}", code=None)
        return text_stream(["re: ", prompt], delay=delay)

    return respond


def test_twenty_items_four_at_a_time_in_input_order(replay_server: ReplayServer) -> None:
    replay_server.add(echo(), repeat=True)
    prompts = [f"p{i}" for i in range(20)]
    results = cllm.batch(MODEL, prompts, limits=cllm.Limits(concurrency=4), **opts(replay_server))
    assert [r.index for r in results] == list(range(20))
    assert [r.response.text for r in results if r.response] == [f"re: p{i}" for i in range(20)]
    assert all(r.ok for r in results)
    assert peak_in_flight(replay_server.exchanges) == 4
    # Sent in input order: the limiter's queue is first come first served.
    sent = [int(prompt_of(ex.request)[1:]) for ex in replay_server.exchanges]
    assert all(abs(number - position) < 4 for position, number in enumerate(sent))


def test_each_item_has_its_own_result_or_error(replay_server: ReplayServer) -> None:
    replay_server.add(echo(0), repeat=True)
    items: list[Any] = [
        "plain",
        [{"role": "user", "content": "as messages"}],
        {"id": "a", "prompt": "with id", "max_tokens": 5},
        {"id": "b", "prompt": "bad one"},
        {"id": "c"},
        {"id": "d", "messages": [{"role": "user", "content": "dict messages"}], "model": MODEL},
        42,
    ]
    results = cllm.batch(MODEL, items, **opts(replay_server))
    assert [r.id for r in results] == [None, None, "a", "b", "c", "d", None]
    assert [r.ok for r in results] == [True, True, True, False, False, True, False]
    assert results[0].response is not None and results[0].response.text == "re: plain"
    assert isinstance(results[3].error, cllm.ProviderError) and results[3].error.status_code == 400
    assert "exactly one of 'prompt' and 'messages'" in str(results[4].error)
    assert isinstance(results[6].error, ValueError)
    sent = {prompt_of(ex.request): ex.request.json for ex in replay_server.exchanges}
    assert sent["with id"]["max_tokens"] == 5


def test_on_progress_gives_the_figures(replay_server: ReplayServer) -> None:
    replay_server.add(echo(0.01), repeat=True)
    seen: list[cllm.BatchProgress] = []
    cllm.batch(MODEL, ["a", "bad", "c", "d"], on_progress=seen.append, concurrency=2, **opts(replay_server))
    last = seen[-1]
    assert (last.total, last.done, last.failed, last.running, last.finished) == (4, 3, 1, 0, 4)
    assert last.tokens == 3 * 13  # the scripted usage: 9 + 4 per answer
    assert last.eta == 0 and last.rate > 0
    assert max(p.running for p in seen) == 2
    assert [p.finished for p in seen] == sorted(p.finished for p in seen)


def test_no_bar_when_stderr_is_not_a_terminal(
    replay_server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    replay_server.add(echo(0), repeat=True)
    cllm.batch(MODEL, ["a", "b"], progress=True, **opts(replay_server))
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


async def test_abatch_yields_as_each_finishes(replay_server: ReplayServer) -> None:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        prompt = prompt_of(request)
        return text_stream([prompt], delay=0.3 if prompt == "slow" else 0.01)

    replay_server.add(respond, repeat=True)
    order = [
        item.index async for item in cllm.abatch(MODEL, ["slow", "fast", "quick"], **opts(replay_server))
    ]
    assert order[-1] == 0 and sorted(order) == [0, 1, 2]


async def test_leaving_abatch_early_closes_the_running_streams(replay_server: ReplayServer) -> None:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        return text_stream(["x"], hang=prompt_of(request) != "first")

    replay_server.add(respond, repeat=True)
    limits = cllm.Limits(concurrency=3)
    items = cllm.abatch(MODEL, ["first", "h1", "h2", "h3"], limits=limits, **opts(replay_server))
    async for item in items:
        assert item.index == 0
        break
    await items.aclose()  # type: ignore[attr-defined]
    hung = [ex for ex in replay_server.exchanges if prompt_of(ex.request) != "first"]
    assert hung
    for exchange in hung:
        await exchange.await_client_closed(timeout=2)
    assert limits.in_flight(MODEL) == 0


SCRIPT = """
import json, sys
sys.path.insert(0, {src!r})
import cllm
try:
    cllm.batch({model!r}, [f"p{{i}}" for i in range(12)], limits=cllm.Limits(concurrency=3),
               api_base=sys.argv[1], api_key="sk-test")
except cllm.BatchInterrupted as e:
    print(json.dumps([r.index for r in e.results if r is not None]))
    sys.exit(130)
"""


@pytest.mark.slow
def test_ctrl_c_keeps_finished_results_and_closes_running_streams(replay_server: ReplayServer) -> None:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        number = int(prompt_of(request)[1:])
        return text_stream(["x"], hang=number >= 3)

    replay_server.add(respond, repeat=True)
    code = SCRIPT.format(src=str(SRC), model=MODEL)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), replay_server.url + "/v1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        replay_server.wait_exchange(5, timeout=30)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert json.loads(out) == [0, 1, 2]
    running = replay_server.exchanges[3:]
    assert len(running) == 3
    for exchange in running:
        exchange.wait_client_closed(timeout=3)


def test_waiting_items_are_counted_as_waiting(replay_server: ReplayServer) -> None:
    replay_server.add(echo(0.05), repeat=True)
    seen: list[cllm.BatchProgress] = []
    cllm.batch(
        MODEL,
        [f"p{i}" for i in range(6)],
        limits=cllm.Limits(concurrency=2),
        on_progress=seen.append,
        **opts(replay_server),
    )
    assert max(p.waiting for p in seen) >= 1
    assert max(p.running for p in seen) <= 2


def test_asyncio_run_of_abatch() -> None:
    # abatch needs nothing but a running loop.
    async def main() -> list[int]:
        return [i.index async for i in cllm.abatch(MODEL, [{"id": 1}])]

    assert asyncio.run(main()) == [0]


def test_retries_pass_through_to_each_item(replay_server: ReplayServer) -> None:
    from support.scripted_provider import rate_limited

    replay_server.add(rate_limited(None))
    replay_server.add(echo(0), repeat=True)
    results = cllm.batch(
        MODEL,
        ["once"],
        limits=cllm.Limits(concurrency=1),
        retries=cllm.Retries(attempts=2, backoff=0),
        **opts(replay_server),
    )
    assert results[0].ok and results[0].response is not None and results[0].response.text == "re: once"
    assert len(replay_server.exchanges) == 2
