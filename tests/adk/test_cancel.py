"""Stopping early closes the provider's connection within 100 ms, however the consumer stops."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

pytest.importorskip(
    "google.adk", reason="google-adk is not installed (the `adk` extra: pip install -e '.[adk]')"
)

from google.adk.agents import LlmAgent
from google.adk.agents.run_config import RunConfig, StreamingMode
from google.adk.apps import App
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types
from support.replay_server import ReplayServer, stream_response

from cllm.adk import CllmLlm

from .helpers import MODEL, options, text_pieces, user_request

LIMIT = 0.1


def slow_stream(server: ReplayServer) -> CllmLlm:
    server.add(stream_response(text_pieces([f"w{i} " for i in range(300)]), delay=0.01))
    return CllmLlm(model=MODEL, **options(server))


async def closed_within(server: ReplayServer, stopped: float) -> float:
    exchange = await server.await_client_closed(timeout=2.0)
    assert exchange.closed_early
    assert exchange.pieces_sent < 300
    return exchange.client_closed_at - stopped  # type: ignore[operator]


async def test_break(replay_server: ReplayServer) -> None:
    llm = slow_stream(replay_server)
    seen = 0
    async for _ in llm.generate_content_async(user_request(), stream=True):
        seen += 1
        if seen == 3:
            break
    stopped = time.monotonic()
    assert await closed_within(replay_server, stopped) < LIMIT


async def test_aclose(replay_server: ReplayServer) -> None:
    llm = slow_stream(replay_server)
    agen = llm.generate_content_async(user_request(), stream=True)
    for _ in range(3):
        await agen.__anext__()
    stopped = time.monotonic()
    await agen.aclose()
    assert await closed_within(replay_server, stopped) < LIMIT


async def test_garbage_collection(replay_server: ReplayServer) -> None:
    llm = slow_stream(replay_server)
    agen = llm.generate_content_async(user_request(), stream=True)
    for _ in range(3):
        await agen.__anext__()
    stopped = time.monotonic()
    del agen
    gc.collect()
    assert await closed_within(replay_server, stopped) < LIMIT


async def test_task_cancel(replay_server: ReplayServer) -> None:
    llm = slow_stream(replay_server)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in llm.generate_content_async(user_request(), stream=True):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    stopped = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await closed_within(replay_server, stopped) < LIMIT


async def test_end_of_runner_run_async(replay_server: ReplayServer) -> None:
    llm = slow_stream(replay_server)
    agent = LlmAgent(name="t", model=llm)
    runner = Runner(app=App(name="cllm_test", root_agent=agent), session_service=InMemorySessionService())
    session = await runner.session_service.create_session(app_name="cllm_test", user_id="u")
    events = runner.run_async(
        user_id="u",
        session_id=session.id,
        new_message=types.Content(role="user", parts=[types.Part(text="go")]),
        run_config=RunConfig(streaming_mode=StreamingMode.SSE),
    )
    seen = 0
    async for _ in events:
        seen += 1
        if seen == 3:
            break
    stopped = time.monotonic()
    await events.aclose()
    assert await closed_within(replay_server, stopped) < LIMIT
