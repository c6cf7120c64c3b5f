"""`CllmLlm` inside a real ADK `Runner`: progressive tool arguments, tools run once, multi-turn wire requests."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import time
from typing import Any

import pytest

pytest.importorskip(
    "google.adk", reason="google-adk is not installed (the `adk` extra: pip install -e '.[adk]')"
)

from google.adk.agents import LlmAgent
from google.adk.agents.run_config import RunConfig, StreamingMode
from google.adk.apps import App, ResumabilityConfig
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.adk.tools import FunctionTool, LongRunningFunctionTool
from google.genai import types
from support.replay_server import Piece, ReplayServer, stream_response

import cllm.adk
from cllm.adk import CllmLlm

from .helpers import MODEL, chunk, options, text_pieces, tool_pieces

SSE = RunConfig(streaming_mode=StreamingMode.SSE)


async def start(agent: LlmAgent, resumable: bool = False) -> tuple[Runner, str]:
    app = App(
        name="cllm_test",
        root_agent=agent,
        resumability_config=ResumabilityConfig(is_resumable=True) if resumable else None,
    )
    runner = Runner(app=app, session_service=InMemorySessionService())
    session = await runner.session_service.create_session(app_name="cllm_test", user_id="u")
    return runner, session.id


async def _ticker(stalls: list[float]) -> None:
    """How late a 1 ms timer fires: the loop itself not running (a loaded machine), not the stream."""
    last = time.perf_counter()
    while True:
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        stalls.append(now - last)
        last = now


def message(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


def long_file_fragments(count: int) -> list[str]:
    """A write_file call's arguments in ``count`` pieces (60 in the reproduction)."""
    head, tail = '{"path": "notes.md", "text": "', '"}'
    lines = [f"line {i}\\n" for i in range(count - 2)]
    return [head, *lines, tail]


@pytest.mark.slow
async def test_long_running_tool_arguments_stream_progressively(replay_server: ReplayServer) -> None:
    fragments = long_file_fragments(60)
    pieces = tool_pieces(fragments, name="write_file")
    # Headers and the first chunk at once, then each argument delta 50 ms after the last.
    replay_server.add(stream_response([Piece(p, 0.05 if 0 < i <= 60 else 0.0) for i, p in enumerate(pieces)]))
    runs: list[dict[str, Any]] = []

    def write_file(path: str, text: str) -> None:
        """Write a file (long-running: the result comes later)."""
        runs.append({"path": path, "text": text})

    agent = LlmAgent(
        name="writer",
        model=CllmLlm(model=MODEL, **options(replay_server)),
        tools=[LongRunningFunctionTool(func=write_file)],
    )
    runner, session_id = await start(agent, resumable=True)
    # What earlier tests left on the heap is not this stream's: out of the collector's reach, so a
    # full collection over it does not show up as a gap here.
    gc.collect()
    gc.freeze()
    stalls: list[float] = []
    ticking = asyncio.create_task(_ticker(stalls))
    partial_calls: list[tuple[float, dict[str, Any]]] = []
    finals = []
    async for event in runner.run_async(
        user_id="u", session_id=session_id, new_message=message("go"), run_config=SSE
    ):
        for call in event.get_function_calls():
            if event.partial:
                partial_calls.append((time.monotonic(), dict(call.args or {})))
                assert not runs, "a tool ran on a partial event"
            else:
                finals.append(call)
    ticking.cancel()
    gc.unfreeze()
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(partial_calls)]
    # A loaded machine can bunch the provider's own writes: the limit allows for what it shows.
    sent = replay_server.exchanges[0].piece_times
    provider_gap = max(b - a for a, b in itertools.pairwise(sent[1:61]))
    assert len(partial_calls) >= 30
    assert max(gaps) < 0.1 + max(0.0, provider_gap - 0.05), (max(gaps), provider_gap, max(stalls))
    texts = [args.get("text", "") for _, args in partial_calls]
    assert all(len(b) >= len(a) for a, b in itertools.pairwise(texts))
    assert texts[-1].startswith("line 0\nline 1\n") and len(texts[-1]) > len(texts[len(texts) // 2]) > 0
    expected = json.loads("".join(fragments))
    assert [c.args for c in finals] == [expected]
    assert runs == [expected]  # once, with the whole arguments
    session = await runner.session_service.get_session(
        app_name="cllm_test", user_id="u", session_id=session_id
    )
    assert session is not None
    assert not any(e.partial for e in session.events)  # partials never persisted
    assert len(replay_server.requests) == 1  # paused after the long-running tool


async def test_tool_result_goes_back_on_the_wire(replay_server: ReplayServer) -> None:
    replay_server.add(
        stream_response(tool_pieces(['{"city": "Paris"}'], name="get_weather", call_id="call_w"))
    )
    replay_server.add(stream_response(text_pieces(["It is ", "21 degrees."])))
    calls: list[str] = []

    def get_weather(city: str) -> dict[str, Any]:
        """The weather in a city."""
        calls.append(city)
        return {"city": city, "temp": 21}

    agent = LlmAgent(
        name="weather",
        model=CllmLlm(model=MODEL, **options(replay_server)),
        instruction="Answer briefly.",
        tools=[FunctionTool(func=get_weather)],
    )
    runner, session_id = await start(agent)
    events = [
        e
        async for e in runner.run_async(
            user_id="u", session_id=session_id, new_message=message("Paris?"), run_config=SSE
        )
    ]
    assert calls == ["Paris"]
    final_texts = [
        p.text for e in events if not e.partial and e.content for p in e.content.parts or () if p.text
    ]
    assert final_texts == ["It is 21 degrees."]
    first, second = (r.json for r in replay_server.requests)
    assert first["messages"][0]["role"] == "system" and "Answer briefly." in first["messages"][0]["content"]
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][-2] == {
        "role": "assistant",
        "tool_calls": [
            {
                "type": "function",
                "id": "call_w",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_w",
        "content": json.dumps({"city": "Paris", "temp": 21}),
    }


async def test_registered_name_resolves_to_cllm(replay_server: ReplayServer) -> None:
    from google.adk.models.lite_llm import LiteLlm
    from google.adk.models.registry import LLMRegistry

    cllm.adk.register()
    cllm.adk.register()
    assert LLMRegistry.resolve("cllm/openai/gpt-4o") is CllmLlm
    assert LLMRegistry.resolve("openai/gpt-4o") is LiteLlm  # never taken over
    llm = LLMRegistry.new_llm("cllm/openai/gpt-4o")
    assert isinstance(llm, CllmLlm) and llm.litellm_model == "openai/gpt-4o"
    assert LLMRegistry.new_llm("cllm:openai/gpt-4o").model == "openai/gpt-4o"
    # A named agent model goes through the registry, then reaches the provider through cllm.
    replay_server.add(stream_response(text_pieces(["via ", "registry"])))
    agent = LlmAgent(name="named", model="cllm/" + MODEL)
    assert isinstance(agent.canonical_model, CllmLlm)
    runner, session_id = await start(agent)
    import os

    os.environ["OPENAI_API_BASE"] = replay_server.url + "/v1"
    os.environ["OPENAI_API_KEY"] = "sk-test"
    try:
        events = [
            e async for e in runner.run_async(user_id="u", session_id=session_id, new_message=message("hi"))
        ]
    finally:
        del os.environ["OPENAI_API_BASE"], os.environ["OPENAI_API_KEY"]
    assert events[-1].content.parts[0].text == "via registry"
    assert replay_server.requests[0].json["model"] == "gpt-4o-2024-08-06"


async def test_text_partials_are_not_persisted_and_the_final_is(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response([chunk({"content": w}) for w in ("a", "b", "c")] + text_pieces([])))
    agent = LlmAgent(name="t", model=CllmLlm(model=MODEL, **options(replay_server)))
    runner, session_id = await start(agent)
    events = [
        e
        async for e in runner.run_async(
            user_id="u", session_id=session_id, new_message=message("x"), run_config=SSE
        )
    ]
    assert [e.partial for e in events] == [True, True, True, False]
    session = await runner.session_service.get_session(
        app_name="cllm_test", user_id="u", session_id=session_id
    )
    assert session is not None
    model_events = [e for e in session.events if e.author == "t"]
    assert [e.content.parts[0].text for e in model_events] == ["abc"]
    assert model_events[0].finish_reason == types.FinishReason.STOP
