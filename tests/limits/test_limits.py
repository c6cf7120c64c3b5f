"""`cllm.Limits` end to end: real HTTP on 127.0.0.1 through LiteLLM's OpenAI provider."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest
from support.replay_server import ReplayServer, error_response
from support.scripted_provider import MODEL, completion, peak_in_flight, rate_limited, text_stream

import cllm
from cllm.limits import MemoryStore


def opts(server: ReplayServer, **extra: Any) -> dict[str, Any]:
    return {"api_base": server.url + "/v1", "api_key": "sk-test", **extra}


async def test_twenty_streams_never_more_than_four_in_flight(replay_server: ReplayServer) -> None:
    replay_server.add(text_stream(["a", "b", "c"], delay=0.03), repeat=True)
    limits = cllm.Limits(concurrency=4)

    async def one(i: int) -> str:
        async with cllm.astream(MODEL, f"prompt {i}", limits=limits, **opts(replay_server)) as s:
            return (await s.until_done()).text

    texts = await asyncio.gather(*(one(i) for i in range(20)))
    assert texts == ["abc"] * 20
    assert len(replay_server.exchanges) == 20
    assert peak_in_flight(replay_server.exchanges) == 4
    assert limits.in_flight(MODEL) == 0


async def test_without_limits_the_same_streams_overlap(replay_server: ReplayServer) -> None:
    # The measure above can see more than four: without limits it does.
    replay_server.add(text_stream(["a", "b", "c"], delay=0.03), repeat=True)
    await asyncio.gather(*(cllm.acomplete(MODEL, "hi", **opts(replay_server)) for _ in range(12)))
    assert peak_in_flight(replay_server.exchanges) > 4


@pytest.mark.slow
async def test_rpm_spreads_requests_evenly(replay_server: ReplayServer) -> None:
    replay_server.add(completion(), repeat=True)
    limits = cllm.Limits(rpm=120)
    begin = time.monotonic()
    responses = await asyncio.gather(
        *(
            cllm.acomplete(MODEL, f"p{i}", stream=False, limits=limits, **opts(replay_server))
            for i in range(10)
        )
    )
    assert all(r.text == "Hello world" for r in responses)
    arrivals = sorted(r.received_at for r in replay_server.requests)
    assert arrivals[-1] - begin >= 4.5
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # Evenly spaced, not in bursts: a request woken late may be followed by one on time, closer by
    # up to the limiter's slack (0.1 s), and arrival times jitter under load.
    assert min(gaps) >= 0.2


def test_sync_complete_and_stream_share_the_limits(replay_server: ReplayServer) -> None:
    replay_server.add(text_stream(["x"], delay=0.1), repeat=True)
    limits = cllm.Limits(concurrency=1)
    results: list[str] = []

    def work() -> None:
        results.append(cllm.complete(MODEL, "hi", limits=limits, **opts(replay_server)).text)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    with cllm.stream(MODEL, "hi", limits=limits, **opts(replay_server)) as s:
        results.append(s.until_done().text)
    for t in threads:
        t.join(10)
    assert results == ["x"] * 4
    assert peak_in_flight(replay_server.exchanges) == 1
    assert limits.in_flight(MODEL) == 0


async def test_tpm_settles_with_reported_usage_and_refunds_a_failure(replay_server: ReplayServer) -> None:
    # 600 tokens a minute is 10 a second. Each request reserves its prompt plus max_tokens=100 (over
    # ten seconds' worth); it reports 10 tokens used (one second's worth).
    limits = cllm.Limits(tpm=600)
    replay_server.add(error_response(400, "bad request", code=None))
    replay_server.add(text_stream(["ok"], usage=(6, 4)), repeat=True)
    options = opts(replay_server, max_tokens=100)
    with pytest.raises(cllm.ProviderError):
        await cllm.acomplete(MODEL, "hi", limits=limits, **options)
    begin = time.monotonic()
    await cllm.acomplete(MODEL, "hi", limits=limits, **options)  # refunded: no wait
    second = time.monotonic()
    assert second - begin < 0.8
    await cllm.acomplete(MODEL, "hi", limits=limits, **options)  # the second spent 10 tokens: ~1 s
    third = time.monotonic()
    assert 0.7 <= third - second < 3.0
    await cllm.acomplete(MODEL, "hi", limits=limits, **options)
    assert time.monotonic() - third >= 0.7


@pytest.mark.slow
async def test_tpm_is_never_exceeded_in_any_window(replay_server: ReplayServer) -> None:
    tpm = 3000.0  # 50 tokens a second
    usages = [(5, 20 + 7 * (i % 5)) for i in range(16)]
    for prompt, answer in usages:
        replay_server.add(text_stream(["w"], usage=(prompt, answer)))
    limits = cllm.Limits(tpm=tpm, concurrency=3)

    async def one(i: int) -> cllm.Response:
        return await cllm.acomplete(MODEL, f"item {i}", limits=limits, max_tokens=60, **opts(replay_server))

    responses = await asyncio.gather(*(one(i) for i in range(16)))
    assert all(r.usage is not None for r in responses)
    spent = sorted((ex.request.received_at, sum(usages[ex.index])) for ex in replay_server.exchanges)
    largest = max(cost for _, cost in spent)
    rate = tpm / 60
    for i in range(len(spent)):
        for j in range(i, len(spent)):
            window = spent[j][0] - spent[i][0]
            cost = sum(c for _, c in spent[i : j + 1])
            # GCRA's bound: the window's rate plus the one request that opened it, plus the 0.1 s
            # of a late wake-up the limiter catches up (and 50 ms for the way from the limiter to
            # the server, which varies from one request to the next).
            assert cost <= rate * (window + 0.1 + 0.05) + largest, (i, j, cost, window)
    # ...and it did not simply run one at a time: the tokens were the limit, not the slots.
    total = sum(c for _, c in spent)
    assert spent[-1][0] - spent[0][0] >= (total - largest) / rate - 0.5


def test_gcra_store_keeps_every_window_within_budget() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.tuples(st.floats(0, 2), st.integers(1, 50), st.integers(0, 50)), min_size=1, max_size=40),
        st.sampled_from([0.0, 0.02]),
        st.floats(0, 0.05),
    )
    def check(steps: list[tuple[float, int, int]], slack: float, late: float) -> None:
        clock = [0.0]
        store = MemoryStore()
        store.now = lambda: clock[0]  # type: ignore[method-assign]
        interval = 0.1  # ten tokens a second
        admitted: list[tuple[float, int]] = []
        from cllm.limits import Bucket

        for gap, estimate, used in steps:
            clock[0] += gap
            wait = store.reserve_now([Bucket("t", estimate, interval, slack)], "p")
            while wait > 0:
                clock[0] += wait + late  # woken up late
                wait = store.reserve_now([Bucket("t", estimate, interval, slack)], "p")
            asyncio.run(store.adjust(Bucket("t", used - estimate, interval)))
            admitted.append((clock[0], used))
        largest = max(c for _, c in admitted)
        for i in range(len(admitted)):
            for j in range(i, len(admitted)):
                window = admitted[j][0] - admitted[i][0]
                cost = sum(c for _, c in admitted[i : j + 1])
                assert cost <= (window + slack) / interval + largest + 1e-6

    check()


@pytest.mark.slow
async def test_a_429_with_retry_after_pauses_every_request_to_the_model(replay_server: ReplayServer) -> None:
    replay_server.add(rate_limited(2))
    replay_server.add(completion(), repeat=True)
    mine, theirs = cllm.Limits(concurrency=8), cllm.Limits(rpm=6000)
    with pytest.raises(cllm.ProviderError) as info:
        await cllm.acomplete(MODEL, "first", limits=mine, stream=False, **opts(replay_server))
    assert info.value.status_code == 429
    refused = time.monotonic()
    others = await asyncio.gather(
        cllm.acomplete(MODEL, "a", limits=mine, stream=False, **opts(replay_server)),
        cllm.acomplete(MODEL, "b", limits=theirs, stream=False, **opts(replay_server)),
    )
    assert [r.text for r in others] == ["Hello world"] * 2
    later = [ex.request.received_at for ex in replay_server.exchanges[1:]]
    assert min(later) - refused >= 1.9
    # The pause counts in the waiting requests' time to first token.
    assert all(r.ttft is not None and r.ttft >= 1.9 for r in others)


async def test_cancelling_a_waiting_request(replay_server: ReplayServer) -> None:
    replay_server.add(text_stream(["held"], hang=True))
    replay_server.add(text_stream(["next"]), repeat=True)
    limits = cllm.Limits(concurrency=1)
    first = cllm.astream(MODEL, "first", limits=limits, **opts(replay_server))
    events = aiter(first)
    assert isinstance(await anext(events), cllm.TextDelta)

    seen: list[object] = []

    async def waiting() -> None:
        async with cllm.astream(MODEL, "second", limits=limits, **opts(replay_server)) as s:
            async for event in s:
                seen.append(event)

    task = asyncio.create_task(waiting())
    await asyncio.sleep(0.3)
    assert seen == [cllm.Queued(MODEL)]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.aclose()
    assert limits.in_flight(MODEL) == 0
    begin = time.monotonic()
    third = await cllm.acomplete(MODEL, "third", limits=limits, **opts(replay_server))
    assert third.text == "next" and time.monotonic() - begin < 1.0
    # The cancelled request never reached the provider.
    assert [ex.request.json["messages"][0]["content"] for ex in replay_server.exchanges] == ["first", "third"]


async def test_the_wait_counts_in_ttft(replay_server: ReplayServer) -> None:
    replay_server.add(text_stream(["a"], delay=0.25), repeat=True)
    limits = cllm.Limits(concurrency=1)
    first, second = await asyncio.gather(
        cllm.acomplete(MODEL, "1", limits=limits, **opts(replay_server)),
        cllm.acomplete(MODEL, "2", limits=limits, **opts(replay_server)),
    )
    assert first.ttft is not None and second.ttft is not None
    assert second.ttft >= first.ttft + 0.4
    assert second.duration is not None and second.duration >= 0.9


async def test_no_slot_leaks_on_error_close_or_cancel(replay_server: ReplayServer) -> None:
    limits = cllm.Limits(concurrency=1)
    options = opts(replay_server)
    replay_server.add(error_response(401))
    with pytest.raises(cllm.ProviderError):
        await cllm.acomplete(MODEL, "err", limits=limits, **options)
    assert limits.in_flight(MODEL) == 0

    replay_server.add(text_stream(["a", "b", "c"], delay=0.2))
    async with cllm.astream(MODEL, "close", limits=limits, **options) as s:
        async for _ in s:
            break
    assert limits.in_flight(MODEL) == 0

    replay_server.add(text_stream(["a"], hang=True))

    async def consume() -> None:
        async with cllm.astream(MODEL, "cancel", limits=limits, **options) as s:
            async for _ in s:
                pass

    task = asyncio.create_task(consume())
    await replay_server.await_exchange(2, timeout=5)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limits.in_flight(MODEL) == 0

    replay_server.add(text_stream(["a"], hang=True))
    with pytest.raises(cllm.StreamTimeout):
        await cllm.acomplete(MODEL, "timeout", limits=limits, idle_timeout=0.2, **options)
    assert limits.in_flight(MODEL) == 0


def test_no_slot_leaks_in_the_sync_api(replay_server: ReplayServer) -> None:
    limits = cllm.Limits(concurrency=1)
    options = opts(replay_server)
    replay_server.add(text_stream(["a", "b", "c"], delay=0.1))
    with cllm.stream(MODEL, "close", limits=limits, **options) as s:
        for _ in s:
            break
    assert limits.in_flight(MODEL) == 0
    replay_server.add(text_stream(["a", "b"]))
    stream = cllm.stream(MODEL, "all", limits=limits, **options)
    assert stream.until_done().text == "ab"
    assert limits.in_flight(MODEL) == 0
    replay_server.add(error_response(500, "boom", code=None))
    with pytest.raises(cllm.ProviderError):
        cllm.complete(MODEL, "err", limits=limits, stream=False, **options)
    assert limits.in_flight(MODEL) == 0


def test_bad_limits_fail_clearly() -> None:
    for bad in ({"concurrency": 0}, {"rpm": -1}, {"tpm": "x"}, {"concurrency": 1.5}):
        with pytest.raises(ValueError):
            cllm.Limits(**bad)
    with pytest.raises(TypeError, match=r"cllm\.Limits"):
        cllm.stream(MODEL, "hi", limits={"rpm": 1})


def test_late_wake_ups_do_not_add_up() -> None:
    from cllm.limits import Bucket

    clock = [100.0]
    store = MemoryStore()
    store.now = lambda: clock[0]  # type: ignore[method-assign]
    admitted = []
    for _ in range(1000):
        wait = store.reserve_now([Bucket("r", 1, 0.1, 0.02)], "p")
        while wait > 0:
            clock[0] += wait + 0.005  # every waiter wakes 5 ms late
            wait = store.reserve_now([Bucket("r", 1, 0.1, 0.02)], "p")
        admitted.append(clock[0])
    assert admitted[-1] - admitted[0] <= 999 * 0.1 + 0.006
    # ...and none early: each on or after its place on the grid.
    assert all(t >= admitted[0] + i * 0.1 - 1e-9 for i, t in enumerate(admitted))
    # After a pause longer than the slack, the grid starts again from now: no burst.
    clock[0] += 5
    first = store.reserve_now([Bucket("r", 1, 0.1, 0.02)], "p")
    second = store.reserve_now([Bucket("r", 1, 0.1, 0.02)], "p")
    assert first == 0 and abs(second - 0.1) < 1e-9
