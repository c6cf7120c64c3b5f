"""Retries, fallbacks and mid-stream recovery through the library, sync and async, on real HTTP
through LiteLLM's own provider code (``openai/`` and ``deepseek/`` pointed at a scripted server)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.faults import FULL_TEXT, WORDS, continuing, json_text, text_stream, tool_stream
from support.replay_server import ReplayServer, error_response, stream_response

import cllm

PREFIX_MODEL = "deepseek/deepseek-chat"  # LiteLLM's table: supports_assistant_prefill
PLAIN_MODEL = "openai/gpt-4o"  # no assistant prefix


def opts(server: ReplayServer, **extra: Any) -> dict[str, Any]:
    return {"api_base": server.url + "/v1", "api_key": "sk-test", **extra}


def consume(mode: str, model: str, **options: Any) -> tuple[list[cllm.Event], cllm.Response]:
    """Run one stream to its end; the events and the final response (raises what the stream raises)."""
    if mode == "sync":
        with cllm.stream(model, "hi", **options) as s:
            events = list(s)
        return events, s.response

    async def run() -> tuple[list[cllm.Event], cllm.Response]:
        async with cllm.astream(model, "hi", **options) as s:
            return [e async for e in s], s.response

    return asyncio.run(run())


def texts(events: list[cllm.Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, cllm.TextDelta))


def attempts(events: list[cllm.Event]) -> list[cllm.Attempt]:
    return [e for e in events if isinstance(e, cllm.Attempt)]


modes = pytest.mark.parametrize("mode", ["sync", "async"])


@modes
def test_429_with_retry_after_then_success(replay_server: ReplayServer, mode: str) -> None:
    replay_server.add(
        error_response(
            429,
            "Rate limit reached",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": "1"},
        ),
        text_stream(["Hello", " world"]),
    )
    events, r = consume(mode, PLAIN_MODEL, **opts(replay_server, retries=2))
    first, second = replay_server.requests
    assert second.received_at - first.received_at >= 1.0
    [attempt] = attempts(events)
    assert (attempt.number, attempt.model, attempt.discard) == (2, PLAIN_MODEL, False)
    assert attempt.delay >= 1.0 and attempt.error == "429 rate limit"
    assert texts(events) == r.text == "Hello world"
    assert r.finish_reason is cllm.FinishReason.STOP
    assert [a.outcome for a in r.attempts] == ["failed", "finished"]
    assert r.attempts[0].error == "429 rate limit" and r.attempts[0].output is False
    assert r.attempts[1].delay >= 1.0 and r.attempts[1].mode == "retry"


@modes
def test_three_500s_then_the_fallback_answers(mode: str) -> None:
    with (
        ReplayServer() as primary,
        ReplayServer(text_stream(["from ", "fallback"], model="gpt-4o-mini")) as backup,
    ):
        primary.add(*(error_response(500, "boom", type="server_error", code=None) for _ in range(3)))
        fallback = {"model": "openai/gpt-4o-mini", "api_base": backup.url + "/v1", "api_key": "k2"}
        events, r = consume(
            mode,
            PLAIN_MODEL,
            **opts(primary, retries=cllm.Retries(attempts=3, backoff=0.01), fallbacks=[fallback]),
        )
        assert len(primary.requests) == 3 and len(backup.requests) == 1
        assert backup.requests[0].header("authorization") == "Bearer k2"
    assert [(a.number, a.model) for a in attempts(events)] == [
        (2, PLAIN_MODEL),
        (3, PLAIN_MODEL),
        (4, "openai/gpt-4o-mini"),
    ]
    assert attempts(events)[-1].delay == 0.0  # moving to a fallback does not wait
    assert r.text == "from fallback"
    assert r.model == "openai/gpt-4o-mini"  # the finishing model, named as it was asked for
    assert [a.model for a in r.attempts] == [PLAIN_MODEL] * 3 + ["openai/gpt-4o-mini"]


@modes
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_bad_requests_are_never_retried(replay_server: ReplayServer, mode: str, status: int) -> None:
    replay_server.add(error_response(status, "no"), text_stream(["never"]))
    with pytest.raises(cllm.ProviderError) as info:
        consume(mode, PLAIN_MODEL, **opts(replay_server, retries=3, fallbacks=[PLAIN_MODEL]))
    assert info.value.status_code == status
    assert len(replay_server.requests) == 1


@modes
@pytest.mark.parametrize("variant", ["plain", "echo", "seam"])
def test_reset_after_40_deltas_continues_on_a_prefix_target(
    replay_server: ReplayServer, mode: str, variant: str
) -> None:
    replay_server.add(
        text_stream(WORDS, model="deepseek-chat", cut_after=40),
        continuing(echo=variant == "echo", strip_seam=variant == "seam"),
    )
    events, r = consume(mode, PREFIX_MODEL, **opts(replay_server, retries=2, mid_stream="continue"))
    assert texts(events) == r.text == FULL_TEXT
    [attempt] = attempts(events)
    assert (attempt.discard, attempt.model, attempt.error) == (False, PREFIX_MODEL, "connection reset")
    # The continuation asked for the text shown so far (what crossed before the reset), as a prefix.
    shown = texts(events[: events.index(attempt)])
    assert shown == "".join(WORDS[:40])
    sent = replay_server.requests[1].json["messages"][-1]
    assert sent == {"role": "assistant", "content": shown, "prefix": True}
    assert len(r.attempts) == 2 and r.attempts[1].mode == "continue"
    assert r.attempts[0].output and r.attempts[0].outcome == "failed"
    first, second = r.attempts
    assert first.usage == cllm.Usage(20, 40, 60)  # reported on the way, before the reset
    assert second.usage is not None and second.usage.prompt_tokens == 25
    assert r.usage == cllm.Usage(45, 40 + second.usage.completion_tokens, 60 + second.usage.total_tokens)
    assert r.finish_reason is cllm.FinishReason.STOP and not r.interrupted
    assert r.cost is not None and r.cost == pytest.approx(sum(a.cost or 0 for a in r.attempts))


@modes
def test_usage_and_cost_add_up_over_billed_attempts(replay_server: ReplayServer, mode: str) -> None:
    """The first attempt reports usage, then ends without a finish reason: both attempts are billed."""
    cut = text_stream(WORDS[:30], model="deepseek-chat", usage=(20, 30))
    pieces = [*cut.pieces[:-3], cut.pieces[-2]]  # no finish chunk, no [DONE]: usage, then a clean end
    replay_server.add(stream_response([p.data for p in pieces]), continuing())
    events, r = consume(mode, PREFIX_MODEL, **opts(replay_server, retries=1))
    assert r.text == FULL_TEXT
    first, second = r.attempts
    assert first.usage == cllm.Usage(20, 30, 50)
    assert second.usage is not None and second.usage.prompt_tokens == 25
    assert r.usage == cllm.Usage(45, 30 + second.usage.completion_tokens, 50 + second.usage.total_tokens)
    assert r.cost == pytest.approx(first.cost + second.cost)
    assert next(e for e in events if isinstance(e, cllm.Finish)).usage == r.usage


@modes
def test_reset_on_a_target_without_prefix_support_restarts(replay_server: ReplayServer, mode: str) -> None:
    replay_server.add(text_stream(WORDS, cut_after=40), text_stream(WORDS))
    events, r = consume(mode, PLAIN_MODEL, **opts(replay_server, retries=1, mid_stream="continue"))
    [attempt] = attempts(events)
    assert attempt.discard is True
    assert attempt.reason == f"{PLAIN_MODEL} accepts no assistant prefix"
    after = events[events.index(attempt) + 1 :]
    assert texts(after) == r.text == FULL_TEXT
    assert texts(events[: events.index(attempt)]) == "".join(WORDS[:40])
    assert "prefix" not in str(replay_server.requests[1].json["messages"])
    assert r.attempts[1].mode == "restart"


@modes
def test_restart_mode_discards_and_starts_over(replay_server: ReplayServer, mode: str) -> None:
    replay_server.add(text_stream(WORDS, model="deepseek-chat", cut_after=10), text_stream(WORDS))
    events, r = consume(mode, PREFIX_MODEL, **opts(replay_server, retries=1, mid_stream="restart"))
    [attempt] = attempts(events)
    assert attempt.discard is True and attempt.reason is None
    assert r.text == FULL_TEXT


@modes
def test_reset_mid_tool_call_arguments_restarts(replay_server: ReplayServer, mode: str) -> None:
    fragments = ['{"path": "a', ".txt", '", "body": "hi"}']
    replay_server.add(tool_stream(fragments, cut_after=2), tool_stream(fragments))
    events, r = consume(mode, PREFIX_MODEL, **opts(replay_server, retries=1, mid_stream="continue"))
    [attempt] = attempts(events)
    assert attempt.discard is True and attempt.reason == "the failure cut a tool call"
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("make_file", {"path": "a.txt", "body": "hi"})]
    assert r.finish_reason is cllm.FinishReason.TOOL_CALLS
    ends = [e for e in events if isinstance(e, cllm.ToolCallEnd)]
    assert len(ends) == 1


@modes
def test_raise_after_output_keeps_todays_behaviour(replay_server: ReplayServer, mode: str) -> None:
    replay_server.add(text_stream(WORDS, cut_after=5), text_stream(WORDS))
    with pytest.raises(cllm.StreamInterrupted) as info:
        consume(mode, PLAIN_MODEL, **opts(replay_server, retries=2, mid_stream="raise"))
    assert info.value.response.text == "".join(WORDS[:5])
    assert len(replay_server.requests) == 1
    assert [a.outcome for a in info.value.response.attempts] == ["failed"]


@modes
def test_no_retry_options_mean_one_request_and_no_records(replay_server: ReplayServer, mode: str) -> None:
    replay_server.add(error_response(503, "busy", code=None), text_stream(["x"]))
    with pytest.raises(cllm.ProviderError):
        consume(mode, PLAIN_MODEL, **opts(replay_server))
    assert len(replay_server.requests) == 1


def test_complete_without_streaming_retries_too(replay_server: ReplayServer) -> None:
    replay_server.add(error_response(503, "overloaded", code=None), json_text("fine"))
    r = cllm.complete(
        PLAIN_MODEL, "hi", stream=False, **opts(replay_server, retries=cllm.Retries(backoff=0.01))
    )
    assert r.text == "fine" and len(r.attempts) == 2
    assert r.attempts[0].error == "503 overloaded"
    assert replay_server.requests[1].json.get("stream") in (None, False)


async def test_acomplete_falls_back_without_streaming(replay_server: ReplayServer) -> None:
    replay_server.add(error_response(500, "down", code=None), json_text("from b", model="gpt-4o-mini"))
    r = await cllm.acomplete(
        PLAIN_MODEL, "hi", stream=False, **opts(replay_server, fallbacks=["openai/gpt-4o-mini"])
    )
    assert r.text == "from b" and r.model == "openai/gpt-4o-mini"
    assert replay_server.requests[1].json["model"] == "gpt-4o-mini"


async def test_cancel_during_backoff_closes_within_100_ms(replay_server: ReplayServer) -> None:
    replay_server.add(
        error_response(429, "slow", code=None, headers={"retry-after": "5"}), text_stream(["x"])
    )
    seen = asyncio.Event()

    async def run() -> None:
        async with cllm.astream(PLAIN_MODEL, "hi", **opts(replay_server, retries=2)) as s:
            async for event in s:
                if isinstance(event, cllm.Attempt):
                    seen.set()

    task = asyncio.create_task(run())
    await asyncio.wait_for(seen.wait(), 10)
    await asyncio.sleep(0.05)  # now asleep in the backoff
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 0.1
    assert len(replay_server.requests) == 1


def test_sync_close_during_backoff_is_immediate(replay_server: ReplayServer) -> None:
    replay_server.add(
        error_response(429, "slow", code=None, headers={"retry-after": "5"}), text_stream(["x"])
    )
    with cllm.stream(PLAIN_MODEL, "hi", **opts(replay_server, retries=2)) as s:
        for event in s:
            if isinstance(event, cllm.Attempt):
                break
        time.sleep(0.05)
        started = time.perf_counter()
        s.close()
        assert time.perf_counter() - started < 0.1
    assert s.done and len(replay_server.requests) == 1


async def test_cancel_during_a_later_attempt_closes_its_connection(replay_server: ReplayServer) -> None:
    replay_server.add(
        error_response(500, "x", code=None),
        stream_response(text_stream(["a"]).pieces[:2], hang_after=2),
    )
    got_text = asyncio.Event()

    async def run() -> None:
        async with cllm.astream(
            PLAIN_MODEL, "hi", **opts(replay_server, retries=cllm.Retries(backoff=0.01))
        ) as s:
            async for event in s:
                if isinstance(event, cllm.TextDelta):
                    got_text.set()

    task = asyncio.create_task(run())
    await asyncio.wait_for(got_text.wait(), 10)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    closed = await replay_server.await_client_closed(1, timeout=1.0)
    assert closed.client_closed_at is not None and closed.client_closed_at - started < 0.1


@modes
def test_total_timeout_bounds_all_attempts(replay_server: ReplayServer, mode: str) -> None:
    replay_server.add(
        error_response(500, "x", code=None),
        error_response(500, "x", code=None),
        stream_response(text_stream(["a"]).pieces[:1], hang_after=1),
    )
    started = time.perf_counter()
    with pytest.raises(cllm.StreamTimeout) as info:
        consume(
            mode,
            PLAIN_MODEL,
            **opts(replay_server, retries=cllm.Retries(attempts=5, backoff=0.2), total_timeout=1.2),
        )
    elapsed = time.perf_counter() - started
    assert info.value.kind == "total" and "1.2 s" in str(info.value)
    assert 1.1 < elapsed < 2.0
    assert len(replay_server.requests) == 3


@modes
def test_first_token_timeout_is_retried(replay_server: ReplayServer, mode: str) -> None:
    replay_server.add(
        stream_response(text_stream(["a"]).pieces[:1], hang_after=1),
        text_stream(["second"]),
    )
    events, r = consume(mode, PLAIN_MODEL, **opts(replay_server, retries=1, first_token_timeout=0.3))
    assert r.text == "second"
    assert "first token timeout" in attempts(events)[0].error


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="mid_stream"):
        cllm.stream(PLAIN_MODEL, "hi", mid_stream="again")
    with pytest.raises(ValueError, match="retries"):
        cllm.stream(PLAIN_MODEL, "hi", retries=-1)
    with pytest.raises(ValueError, match="fallback"):
        cllm.stream(PLAIN_MODEL, "hi", fallbacks=[{"api_base": "x"}])
    with pytest.raises(ValueError, match="never retried"):
        cllm.Retries(on={401})


async def test_each_attempt_takes_and_frees_its_own_place_under_limits(replay_server: ReplayServer) -> None:
    limits = cllm.Limits(concurrency=1)
    replay_server.add(
        error_response(500, "x", code=None),
        text_stream(WORDS[:3]),
        error_response(500, "x", code=None),
        text_stream(WORDS[:3]),
    )

    async def one() -> cllm.Response:
        return await cllm.acomplete(
            PLAIN_MODEL, "hi", **opts(replay_server, retries=cllm.Retries(backoff=0.01), limits=limits)
        )

    first, second = await asyncio.gather(one(), one())
    assert first.text == second.text == "".join(WORDS[:3])
    assert len(first.attempts) + len(second.attempts) == 4
    assert limits.in_flight(PLAIN_MODEL) == 0
