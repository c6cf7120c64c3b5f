"""The sync and async streams end to end: real HTTP on 127.0.0.1 through LiteLLM's OpenAI provider."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest
from support.replay_server import ReplayServer, error_response, json_response, sse_events, stream_response

import cllm

MODEL = "openai/gpt-4o-2024-08-06"


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


USAGE = sse(
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
)
DONE = b"data: [DONE]\n\n"


def text_pieces(words: list[str], finish: str | None = "stop", usage: bool = True) -> list[bytes]:
    pieces = [chunk({"role": "assistant", "content": ""})]
    pieces += [chunk({"content": w}) for w in words]
    if finish:
        pieces.append(chunk({}, finish))
    if usage:
        pieces.append(USAGE)
    pieces.append(DONE)
    return pieces


def opts(server: ReplayServer, **extra: Any) -> dict[str, Any]:
    return {"api_base": server.url + "/v1", "api_key": "sk-test", **extra}


def test_sync_stream_events_and_final_response(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["Hel", "lo", " world"])))
    with cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
        events = list(s)
    assert events == [
        cllm.TextDelta("Hel"),
        cllm.TextDelta("lo"),
        cllm.TextDelta(" world"),
        cllm.Finish(cllm.FinishReason.STOP, "stop", cllm.Usage(9, 4, 13)),
    ]
    r = s.response
    assert (r.text, r.finish_reason, r.usage, r.interrupted, r.error) == (
        "Hello world",
        cllm.FinishReason.STOP,
        cllm.Usage(9, 4, 13),
        False,
        None,
    )
    assert r.cost is not None and r.cost > 0
    assert r.ttft is not None and r.duration is not None and 0 <= r.ttft <= r.duration
    assert r.message() == {"role": "assistant", "content": "Hello world"}
    body = replay_server.requests[0].json
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "hi"}]


async def test_async_stream_and_text_stream(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["a", "b", "c"])))
    async with cllm.astream(MODEL, [{"role": "user", "content": "x"}], **opts(replay_server)) as s:
        texts = [t async for t in s.text_stream]
    assert texts == ["a", "b", "c"]
    assert s.response.text == "abc"
    assert s.response.finish_reason is cllm.FinishReason.STOP


def test_text_arrives_as_it_is_sent(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["one", "two", "three"]), delay=0.15))
    arrivals = []
    with cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
        for _text in s.text_stream:
            arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == 3
    assert all(gap > 0.08 for gap in gaps), gaps


def test_snapshot_while_streaming(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["a", "b"])))
    with cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
        it = iter(s)
        assert next(it) == cllm.TextDelta("a")
        snap = s.response
        assert (snap.text, snap.finish_reason) == ("a", None)
        list(it)
    assert s.response.text == "ab"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_connection_reset_mid_stream_keeps_partial_text(replay_server: ReplayServer, mode: str) -> None:
    pieces = text_pieces(["partial ", "answer ", "never finished"])
    replay_server.add(stream_response(pieces, reset_after=3))
    with pytest.raises(cllm.StreamInterrupted) as info:
        if mode == "sync":
            with cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
                for _ in s:
                    pass
        else:

            async def consume() -> None:
                async with cllm.astream(MODEL, "hi", **opts(replay_server)) as s:
                    async for _ in s:
                        pass

            asyncio.run(consume())
    r = info.value.response
    assert r.text == "partial answer "
    assert r.interrupted is True
    assert r.finish_reason is cllm.FinishReason.ERROR
    assert r.error
    assert info.value.__cause__ is not None


def test_body_ending_without_finish_reason_is_an_interruption(replay_server: ReplayServer) -> None:
    """A clean end with no finish reason and no [DONE] is a cut-off answer, on every LiteLLM version."""
    replay_server.add(stream_response(text_pieces(["cut ", "off"], finish=None, usage=False)[:-1]))
    events: list[cllm.Event] = []
    with pytest.raises(cllm.StreamInterrupted) as info, cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
        events.extend(s)
    assert not any(isinstance(e, cllm.Finish) for e in events)
    assert "".join(e.text for e in events if isinstance(e, cllm.TextDelta)) == "cut off"
    r = info.value.response
    assert r is s.response
    assert (r.text, r.finish_reason, r.interrupted) == ("cut off", cllm.FinishReason.ERROR, True)
    assert r.error and "without a finish reason" in r.error
    assert "without a finish reason" in str(info.value)


async def test_body_ending_without_finish_reason_is_an_interruption_async(
    replay_server: ReplayServer,
) -> None:
    replay_server.add(stream_response(text_pieces(["cut ", "off"], finish=None, usage=False)))
    with pytest.raises(cllm.StreamInterrupted) as info:
        async with cllm.astream(MODEL, "hi", **opts(replay_server)) as s:
            async for _ in s:
                pass
    assert info.value.response.text == "cut off"
    assert info.value.response.finish_reason is cllm.FinishReason.ERROR


def test_http_401_is_a_provider_error(replay_server: ReplayServer) -> None:
    replay_server.add(error_response(401, "Incorrect API key provided: sk-test."))
    with pytest.raises(cllm.ProviderError) as info, cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
        list(s)
    err = info.value
    assert err.status_code == 401
    assert "Incorrect API key provided" in str(err)
    assert err.__cause__ is not None
    assert not isinstance(err, cllm.StreamInterrupted)


def test_connection_refused_is_a_provider_error() -> None:
    with pytest.raises(cllm.ProviderError):
        cllm.complete(
            MODEL, "hi", api_base="http://127.0.0.1:9/v1", api_key="x", num_retries=0, max_retries=0
        )


def tool_pieces(fragments: list[str], finish: str = "tool_calls") -> list[bytes]:
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "make_file", "arguments": ""},
    }
    pieces = [chunk({"role": "assistant", "content": None, "tool_calls": [first]})]
    pieces += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) for f in fragments]
    pieces += [chunk({}, finish), USAGE, DONE]
    return pieces


def test_tool_call_arguments_stream_parsed(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(tool_pieces(['{"path": "a', '.py", "lines": [1, ', "2]}"])))
    seen = []
    with cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
        for event in s:
            if isinstance(event, cllm.ToolCallDelta):
                seen.append(json.dumps(event.arguments))
            last = event
    assert seen == ['{"path": "a"}', '{"path": "a.py", "lines": [1]}', '{"path": "a.py", "lines": [1, 2]}']
    assert last == cllm.Finish(cllm.FinishReason.TOOL_CALLS, "tool_calls", cllm.Usage(9, 4, 13))
    call = s.response.tool_calls[0]
    assert (call.id, call.name, call.arguments, call.error) == (
        "call_1",
        "make_file",
        {"path": "a.py", "lines": [1, 2]},
        None,
    )
    assert (
        s.response.message()["tool_calls"][0]["function"]["arguments"] == '{"path": "a.py", "lines": [1, 2]}'
    )


def test_invalid_final_tool_json_is_reported_not_dropped(replay_server: ReplayServer) -> None:
    replay_server.add(
        stream_response(tool_pieces(['{"path": "a.py", ', '"text": "unterminated'], finish="length"))
    )
    with cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
        ends = [e for e in s if isinstance(e, cllm.ToolCallEnd)]
    assert len(ends) == 1
    assert ends[0].arguments is None
    assert ends[0].arguments_json == '{"path": "a.py", "text": "unterminated'
    assert ends[0].error
    assert s.response.finish_reason is cllm.FinishReason.LENGTH
    assert s.response.tool_calls[0].error == ends[0].error


def test_breaking_out_closes_the_connection_sync(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces([f"w{i} " for i in range(200)]), delay=0.02))
    with cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
        for i, _ in enumerate(s):
            if i == 3:
                break
    exchange = replay_server.wait_client_closed(timeout=2.0)
    assert exchange.closed_early
    assert s.response.finish_reason is cllm.FinishReason.CANCELLED
    assert s.response.interrupted
    assert s.response.text == "w0 w1 w2 w3 "


def test_breaking_out_without_with_closes_the_connection(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces([f"w{i} " for i in range(200)]), delay=0.02))
    for i, _ in enumerate(cllm.stream(MODEL, "hi", **opts(replay_server))):
        if i == 2:
            break
    assert replay_server.wait_client_closed(timeout=2.0).closed_early


async def test_breaking_out_closes_the_connection_async(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces([f"w{i} " for i in range(200)]), delay=0.02))
    async with cllm.astream(MODEL, "hi", **opts(replay_server)) as s:
        i = 0
        async for _ in s:
            i += 1
            if i == 3:
                break
    exchange = replay_server.wait_exchange(0)
    await exchange.await_client_closed(timeout=2.0)
    assert exchange.closed_early
    assert s.response.finish_reason is cllm.FinishReason.CANCELLED


async def test_cancelling_the_task_closes_the_connection(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces([f"w{i} " for i in range(200)]), delay=0.02))
    got_some = asyncio.Event()

    async def consume() -> None:
        async with cllm.astream(MODEL, "hi", **opts(replay_server)) as s:
            async for _ in s:
                got_some.set()

    task = asyncio.create_task(consume())
    await got_some.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    exchange = replay_server.wait_exchange(0)
    await exchange.await_client_closed(timeout=2.0)
    assert exchange.closed_early


def test_first_token_timeout(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["late"]), hang_after=0))
    started = time.monotonic()
    with pytest.raises(cllm.StreamTimeout) as info:
        cllm.complete(MODEL, "hi", first_token_timeout=0.3, **opts(replay_server))
    assert info.value.kind == "first_token"
    assert time.monotonic() - started < 5
    assert info.value.response.interrupted


def test_idle_timeout_keeps_what_arrived(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["early ", "words"]), hang_after=3))
    with pytest.raises(cllm.StreamTimeout) as info:
        cllm.complete(MODEL, "hi", idle_timeout=0.3, **opts(replay_server))
    assert info.value.kind == "idle"
    assert info.value.response.text == "early words"
    assert isinstance(info.value, cllm.StreamInterrupted)
    assert replay_server.wait_client_closed(timeout=2.0).closed_early


def test_total_timeout(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces([f"w{i}" for i in range(100)]), delay=0.05))
    with pytest.raises(cllm.StreamTimeout) as info:
        cllm.complete(MODEL, "hi", total_timeout=0.5, idle_timeout=2, **opts(replay_server))
    assert info.value.kind == "total"
    assert info.value.response.text.startswith("w0w1")


async def test_sync_api_works_inside_a_running_event_loop(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["in ", "a loop"])))
    r = cllm.complete(MODEL, "hi", **opts(replay_server))
    assert r.text == "in a loop"


def test_complete_without_streaming_gives_the_same_response(replay_server: ReplayServer) -> None:
    fragments = ['{"path": "a.py",', ' "n": 2}']
    replay_server.add(stream_response(tool_pieces(fragments)))
    replay_server.add(
        json_response(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-2024-08-06",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "make_file", "arguments": "".join(fragments)},
                                }
                            ],
                        },
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            }
        )
    )
    streamed = cllm.complete(MODEL, "hi", **opts(replay_server))
    whole = cllm.complete(MODEL, "hi", stream=False, **opts(replay_server))
    for field in ("text", "tool_calls", "finish_reason", "raw_finish_reason", "usage", "cost", "model"):
        assert getattr(whole, field) == getattr(streamed, field), field
    assert "stream" not in replay_server.requests[1].json or replay_server.requests[1].json["stream"] is False


async def test_acomplete_both_ways(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["x"])))
    r = await cllm.acomplete(MODEL, "hi", **opts(replay_server))
    assert (r.text, r.finish_reason) == ("x", cllm.FinishReason.STOP)


def test_split_at_every_byte_boundary_gives_the_same_events(replay_server: ReplayServer) -> None:
    body = b"".join(tool_pieces(['{"a": "\\u00e9', '\\n"}']))
    expected = None
    for pieces in ([body], sse_events(body), [body[i : i + 7] for i in range(0, len(body), 7)]):
        replay_server.add(stream_response(pieces))
        with cllm.stream(MODEL, "hi", **opts(replay_server)) as s:
            events = [repr(e) for e in s]
        expected = expected or events
        assert events == expected


async def test_litellm_success_callbacks_still_fire(replay_server: ReplayServer) -> None:
    # cllm stops reading once LiteLLM has handed over everything, unless something registered with
    # LiteLLM needs its end-of-stream work: a user's callbacks must still get the finished stream.
    from cllm import _provider

    litellm = _provider.litellm()
    from litellm.integrations.custom_logger import CustomLogger

    logged: list[Any] = []

    class Recorder(CustomLogger):  # type: ignore[misc]
        async def async_log_success_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            logged.append(response_obj)

    recorder = Recorder()
    litellm.callbacks.append(recorder)
    try:
        replay_server.add(stream_response(text_pieces(["Hel", "lo"])))
        async with cllm.astream(MODEL, "hi", **opts(replay_server)) as s:
            response = await s.until_done()
        assert response.text == "Hello" and response.usage == cllm.Usage(9, 4, 13)
        deadline = time.monotonic() + 5
        while not logged and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        litellm.callbacks.remove(recorder)
    assert len(logged) == 1
    assert logged[0].choices[0].message.content == "Hello"
    assert logged[0].usage.total_tokens == 13


@pytest.mark.parametrize("status", [429, 500, 503])
def test_no_retries_behind_the_callers_back(replay_server: ReplayServer, status: int) -> None:
    replay_server.add(error_response(status, "overloaded", type="server_error", code=None), repeat=True)
    with pytest.raises(cllm.ProviderError) as info:
        cllm.complete(MODEL, "hi", **opts(replay_server))
    assert info.value.status_code == status
    assert len(replay_server.requests) == 1


def test_provider_error_keeps_the_providers_type_and_code(replay_server: ReplayServer) -> None:
    replay_server.add(error_response(401, "Incorrect API key provided: sk-test."))
    with pytest.raises(cllm.ProviderError) as info:
        cllm.complete(MODEL, "hi", **opts(replay_server))
    assert (info.value.error_type, info.value.code) == ("invalid_request_error", "invalid_api_key")
    assert info.value.kind == "AuthenticationError"


def test_a_missing_key_is_a_401_naming_the_variable(
    replay_server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for stream in (True, False):
        with pytest.raises(cllm.ProviderError) as info:
            cllm.complete("openai/gpt-4o", "hi", api_base=replay_server.url + "/v1", stream=stream)
        assert info.value.status_code == 401
        assert "OPENAI_API_KEY" in info.value.message
    assert replay_server.requests == []


FIRST_CALL = r"""
import asyncio, importlib.abc, json, sys, threading
seen = {}

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "litellm":
            seen["thread"] = threading.current_thread().name
        return None

sys.meta_path.insert(0, Watch())
import cllm
stream = cllm.astream("openai/gpt-4o", "hi", api_base=sys.argv[1], api_key="sk-test")
seen["imported_by_astream"] = "litellm" in sys.modules

async def main():
    async with stream as s:
        seen["text"] = "".join([t async for t in s.text_stream])
    seen["loop_thread"] = threading.current_thread().name

asyncio.run(main())
print(json.dumps(seen))
"""


def test_the_first_call_imports_litellm_off_the_event_loop(replay_server: ReplayServer) -> None:
    import subprocess
    import sys

    replay_server.add(stream_response(text_pieces(["Hi"])))
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALL, replay_server.url + "/v1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["imported_by_astream"] is False
    assert seen["text"] == "Hi"
    assert seen["thread"] == "cllm-import" != seen["loop_thread"]
