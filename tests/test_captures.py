"""Every real capture replayed through cllm over loopback HTTP and LiteLLM's own provider code.

Expectations come from the capture itself (tests/support/captures.py parses the wire format on its
own); the mapping of raw finish reasons below is written out here, not taken from cllm.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.captures import Capture, all_captures, capture, fixtures_dir
from support.replay_server import ReplayServer, split_at, stream_response

import cllm

if not fixtures_dir().is_dir():
    pytest.skip(f"no captures at {fixtures_dir()} (set CLLM_FIXTURES)", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")

CAPTURES = all_captures()

# How LiteLLM itself fails a capture: cllm cannot get back what LiteLLM's provider code loses.
LITELLM_LOSES: dict[str, str] = {
    "vertex-gemini__streamed_function_call_args": (
        "LiteLLM 1.106 cannot parse Vertex streamFunctionCallArguments (KeyError 'args' on "
        "functionCall{name, willContinue}); cllm reports it as a failure with what arrived"
    ),
}

# Where LiteLLM drops something the capture has: a strict xfail, so an upgrade that fixes it shows.
# (OpenAI's delta.refusal, which LiteLLM's stream drops, is read by cllm's fast path: see
# tests/test_fast_path.py.)
LITELLM_XFAIL: dict[str, str] = {
    "openrouter-novita__kimi_k2_tool_call_repeated_id": (
        "the provider sent no finish reason; LiteLLM's openrouter/ route makes up 'stop' and reports it as "
        "received (through openai/ the same stream is correctly reported as ERROR, see test_stream.py)"
    ),
}

EXPECTED_REASON = {
    None: cllm.FinishReason.ERROR,
    "stop": cllm.FinishReason.STOP,
    "end_turn": cllm.FinishReason.STOP,
    "stop_sequence": cllm.FinishReason.STOP,
    "STOP": cllm.FinishReason.STOP,
    "length": cllm.FinishReason.LENGTH,
    "max_tokens": cllm.FinishReason.LENGTH,
    "MAX_TOKENS": cllm.FinishReason.LENGTH,
    "tool_calls": cllm.FinishReason.TOOL_CALLS,
    "tool_use": cllm.FinishReason.TOOL_CALLS,
}


def params() -> list[Any]:
    out = []
    for cap in CAPTURES:
        marks = []
        if cap.skip_reason:
            marks.append(pytest.mark.skip(reason=cap.skip_reason))
        if cap.name in LITELLM_XFAIL:
            marks.append(pytest.mark.xfail(reason=LITELLM_XFAIL[cap.name], strict=True))
        out.append(pytest.param(cap, id=cap.name, marks=marks))
    return out


@pytest.fixture(name="server")
def server_fixture() -> Any:
    with ReplayServer() as server:
        yield server


def options(cap: Capture, server: ReplayServer) -> dict[str, Any]:
    """The capture's route; cllm decides stream_options itself."""
    kwargs = cap.litellm_kwargs(server.url)
    del kwargs["model"], kwargs["stream_options"]
    return kwargs


def replay_async(
    cap: Capture, server: ReplayServer, pieces: list[bytes] | None = None
) -> tuple[list[Any], Any]:
    server.add(stream_response(pieces or cap.pieces(), content_type=cap.content_type), repeat=False)

    async def consume() -> tuple[list[Any], Any]:
        events = []
        async with cllm.astream(cap.litellm_model, "replay", **options(cap, server)) as s:
            async for event in s:
                events.append(copy.deepcopy(event))
        return events, s.response

    return asyncio.run(consume())


def replay_sync(
    cap: Capture, server: ReplayServer, pieces: list[bytes] | None = None
) -> tuple[list[Any], Any]:
    server.add(stream_response(pieces or cap.pieces(), content_type=cap.content_type))
    with cllm.stream(cap.litellm_model, "replay", **options(cap, server)) as s:
        events = [copy.deepcopy(e) for e in s]
    return events, s.response


@pytest.mark.parametrize("cap", params())
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_capture(cap: Capture, mode: str, server: ReplayServer) -> None:
    replay = replay_async if mode == "async" else replay_sync
    if cap.name in LITELLM_LOSES:
        with pytest.raises(cllm.CllmError) as info:
            replay(cap, server)
        if isinstance(info.value, cllm.StreamInterrupted):
            assert info.value.response.interrupted
        pytest.xfail(LITELLM_LOSES[cap.name])
    events, r = replay(cap, server)
    exp = cap.expected
    calls = exp.tool_calls

    # The final response. Calls the provider ran itself are kept apart from the caller's.
    assert r.text == exp.text
    assert r.reasoning == exp.reasoning
    assert (r.refusal or "") == exp.refusal
    for got, want in ((r.tool_calls, calls), (r.server_tool_calls, exp.server_tool_calls)):
        assert sorted(
            (c.name, repr(c.arguments if c.error is None else c.arguments_json)) for c in got
        ) == sorted(
            (c.name, repr(c.arguments if not isinstance(c.arguments, str) else c.raw_arguments)) for c in want
        )
    for call in r.server_tool_calls:
        assert call.id.startswith("srvtoolu_") and call.error is None
    for call in r.tool_calls:
        assert call.id
        assert (call.error is None) == (call.arguments is not None)
    reason = EXPECTED_REASON[exp.finish_reason]
    if reason is cllm.FinishReason.STOP and calls:
        reason = cllm.FinishReason.TOOL_CALLS
    assert r.finish_reason is reason
    if cap.wire_format == "openai":
        assert r.raw_finish_reason == exp.finish_reason
    assert r.interrupted is False
    if exp.usage is None:
        assert r.usage is None
    else:
        assert r.usage is not None
        assert r.usage.prompt_tokens == exp.usage.prompt_tokens or (
            # Anthropic: LiteLLM counts cache reads into the prompt.
            r.usage.prompt_tokens == (exp.usage.prompt_tokens or 0) + (exp.usage.cached_tokens or 0)
        )
        expected_completion = exp.usage.completion_tokens
        if cap.wire_format == "gemini":
            expected_completion = (expected_completion or 0) + (exp.usage.reasoning_tokens or 0)
        assert r.usage.completion_tokens == expected_completion

    # The events agree with the response and come in order.
    assert isinstance(events[-1], cllm.Finish)
    assert events[-1].reason is r.finish_reason
    assert sum(isinstance(e, cllm.Finish) for e in events) == 1
    assert "".join(e.text for e in events if isinstance(e, cllm.TextDelta)) == r.text
    assert "".join(e.text for e in events if isinstance(e, cllm.ReasoningDelta)) == r.reasoning
    starts = [e for e in events if isinstance(e, cllm.ToolCallStart)]
    ends = [e for e in events if isinstance(e, cllm.ToolCallEnd)]
    assert [e.index for e in starts] == list(range(len(r.tool_calls)))
    assert [e.index for e in ends] == [e.index for e in starts]
    for end in ends:
        deltas = [e for e in events if isinstance(e, cllm.ToolCallDelta) and e.index == end.index]
        joined = "".join(d.arguments_delta for d in deltas)
        assert joined == end.arguments_json or (joined.strip() == "" and end.arguments_json == "{}")
        assert events.index(end) > max((events.index(d) for d in deltas), default=-1)
        assert events.index(end) > events.index(starts[end.index])


@pytest.mark.parametrize(
    "name",
    [
        "openai__tool_call_many_deltas",
        "anthropic__text_then_tool_use",
        "gemini__thinking",
        "deepseek__reasoning_tool_call",
    ],
)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_byte_splits_give_the_same_events(
    name: str, server: ReplayServer, data: st.DataObject
) -> None:
    cap = capture(name)
    wire = cap.wire
    pieces = split_at(wire, data.draw(st.lists(st.integers(1, len(wire) - 1), max_size=40)))
    whole, _ = replay_sync(cap, server, [wire])
    split, _ = replay_sync(cap, server, pieces)
    assert [repr(e) for e in split] == [repr(e) for e in whole]
