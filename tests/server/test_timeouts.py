"""A provider that never answers, or stalls mid-answer, gets a clear timeout on every protocol."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from support.replay_server import ReplayServer, json_response, sse_events, stream_response
from websockets.sync.client import connect

from cllm.server.settings import ModelTable, RequestError

from .conftest import Running, ServerFactory, read_sse, sse_body, text_chunks

MESSAGES = [{"role": "user", "content": "hi"}]


def silent() -> Any:
    """Accepts the connection and never sends a byte."""
    return stream_response(sse_events(sse_body(text_chunks(["late"]))), headers_delay=30)


def chat_events(server: Running, body: dict[str, Any]) -> list[tuple[str | None, str, Any]]:
    with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=10) as r:
        assert r.status_code == 200
        return list(read_sse(r))


def test_silent_provider_times_out_on_every_protocol(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server(first_token_timeout=0.5)
    provider.add(silent(), repeat=True)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=10)
    for stream in (True, False):
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            result = client.chat.completions.create(model="test", messages=MESSAGES, stream=stream)  # type: ignore[call-overload]
            list(result) if stream else None
        assert caught.value.status_code == 504
        assert "timeout" in caught.value.message
        assert time.monotonic() - started < 3
    events = chat_events(server, {"content": "hi"})
    error = events[-1][2]
    assert events[-1][1] == "error"
    assert (error["kind"], error["timeout"], error["status_code"]) == ("timeout", "first_token", 504)
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "message", "content": "hi"}))
        while (message := json.loads(ws.recv(timeout=5)))["type"] not in ("done", "error"):
            pass
        assert (message["type"], message["kind"], message["timeout"]) == ("error", "timeout", "first_token")
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"


def test_stalled_stream_times_out_mid_answer(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(idle_timeout=0.5)
    pieces = sse_events(sse_body(text_chunks(["partial ", "answer"])))
    provider.add(stream_response(pieces, hang_after=2), stream_response(pieces, hang_after=2))
    events = chat_events(server, {"content": "hi"})
    error = events[-1][2]
    assert (error["kind"], error["timeout"]) == ("timeout", "idle")
    assert error["response"]["text"] == "partial " and error["response"]["interrupted"]
    assert error["response_id"]
    r = httpx.post(
        server.url + "/v1/chat/completions", json={"messages": MESSAGES, "stream": True}, timeout=10
    )
    assert r.status_code == 200
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert chunks[-1]["error"]["code"] == "idle_timeout"
    assert "idle timeout" in chunks[-1]["error"]["message"]
    assert r.text.endswith("data: [DONE]\n\n")


def test_alias_timeout_overrides_the_server_default_and_clients_only_shorten(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server(first_token_timeout=0.3, config_extra="first_token_timeout = 1.5\n")
    completion = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    }
    slow = stream_response(sse_events(sse_body(text_chunks(["slow but fine"]))), headers_delay=0.8)
    provider.add(slow)
    events = chat_events(server, {"content": "hi"})
    assert events[-1][1] == "finish"
    # A client asking for more than the alias allows still gets the alias's bound...
    provider.add(silent())
    started = time.monotonic()
    events = chat_events(server, {"content": "hi", "options": {"first_token_timeout": 60}})
    assert events[-1][2]["kind"] == "timeout" and 1.2 < time.monotonic() - started < 4
    # ...and one asking for less gets its own.
    provider.add(silent())
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "test", "messages": MESSAGES, "first_token_timeout": 0.2},
        timeout=10,
    )
    assert r.status_code == 504
    provider.add(json_response(completion))
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": MESSAGES, "idle_timeout": "soon"})
    assert r.status_code == 400 and "idle_timeout" in r.json()["error"]["message"]


def test_timeout_bounds_from_the_model_table() -> None:
    table = ModelTable(
        {"slow": {"model": "openai/o3", "first_token_timeout": 900, "idle_timeout": 0}},
        timeouts={"first_token_timeout": 300.0, "idle_timeout": 120.0},
    )
    assert table.call("slow", {})[1] == {"first_token_timeout": 900.0}
    assert table.call("slow", {"idle_timeout": 5})[1] == {"first_token_timeout": 900.0, "idle_timeout": 5.0}
    assert table.call("openai/x", {"first_token_timeout": 1000})[1] == {
        "first_token_timeout": 300.0,
        "idle_timeout": 120.0,
    }
    with pytest.raises(RequestError, match="positive"):
        table.call("openai/x", {"idle_timeout": -1})
