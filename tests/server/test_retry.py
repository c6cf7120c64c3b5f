"""Retries, fallbacks and mid-stream recovery on the server: per alias and per request, on
/api/chat, /ws and /v1 (which continues or raises: what it sent cannot be taken back)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from support.faults import FULL_TEXT, WORDS, continuing, text_stream
from support.replay_server import ReplayServer, error_response
from websockets.sync.client import connect

from cllm.config import ConfigError
from cllm.server.settings import Settings

from .conftest import Running, ServerFactory, read_sse, write_config

DEEP = """
[models.deep]
model = "deepseek/deepseek-chat"
api_base = "{url}/v1"
api_key = "sk-provider-secret-0123456789"
retries = 1
"""


def chat(server: Running, body: dict[str, Any]) -> list[tuple[str, Any]]:
    with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=20) as r:
        assert r.status_code == 200, r.read()
        return [(kind, data) for _, kind, data in read_sse(r)]


def test_alias_retries_on_api_chat_with_an_attempt_event(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server("retries = 2")
    provider.add(
        error_response(429, "slow down", code="rate_limit_exceeded", headers={"retry-after": "1"}),
        text_stream(["Hello", " there"]),
    )
    events = chat(server, {"content": "hi", "model": "test"})
    kinds = [kind for kind, _ in events]
    assert kinds == ["stream", "attempt", "text-delta", "text-delta", "finish"]
    attempt = events[1][1]
    assert attempt["number"] == 2 and attempt["model"] == "openai/gpt-test"
    assert attempt["error"] == "429 rate limit" and attempt["delay"] >= 1.0 and attempt["discard"] is False
    finish = events[-1][1]
    assert finish["response"]["text"] == "Hello there"
    assert [a["outcome"] for a in finish["response"]["attempts"]] == ["failed", "finished"]
    assert provider.requests[1].received_at - provider.requests[0].received_at >= 1.0


def test_request_options_restart_on_api_chat(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(WORDS, cut_after=10), text_stream(WORDS))
    events = chat(server, {"content": "hi", "options": {"retries": 1, "mid_stream": "restart"}})
    attempts = [data for kind, data in events if kind == "attempt"]
    assert len(attempts) == 1 and attempts[0]["discard"] is True
    after = events[[kind for kind, _ in events].index("attempt") + 1 :]
    assert "".join(d["text"] for k, d in after if k == "text-delta") == FULL_TEXT
    assert events[-1][1]["response"]["text"] == FULL_TEXT


def test_bad_retry_options_are_a_400(server: Running, provider: ReplayServer) -> None:
    for options in ({"retries": 99}, {"retries": "2"}, {"fallbacks": [{"model": "x"}]}, {"mid_stream": "x"}):
        events = chat(server, {"content": "hi", "options": options})
        kind, data = events[-1]
        assert kind == "error" and data["status_code"] == 400 and data["kind"] == "bad_request", options
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "test", "messages": [{"role": "user", "content": "x"}], "retries": -1},
        timeout=10,
    )
    assert r.status_code == 400
    assert provider.requests == []


def test_ws_continues_a_cut_stream_on_a_prefix_alias(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server(DEEP.format(url=provider.url))
    provider.add(text_stream(WORDS, model="deepseek-chat", cut_after=40), continuing())
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "message", "content": "hi", "model": "deep"}))
        messages = []
        while not messages or messages[-1]["type"] not in ("done", "error"):
            messages.append(json.loads(ws.recv(timeout=20)))
    [attempt] = [m for m in messages if m["type"] == "attempt"]
    assert attempt["discard"] is False and attempt["error"] == "connection reset"
    assert "".join(m["text"] for m in messages if m["type"] == "text-delta") == FULL_TEXT
    done = messages[-1]
    assert done["type"] == "done" and done["response"]["text"] == FULL_TEXT
    assert len(done["response"]["attempts"]) == 2


def test_ws_fallback_to_another_alias(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(DEEP.format(url=provider.url))
    provider.add(
        error_response(503, "overloaded", code=None), text_stream(["from deep"], model="deepseek-chat")
    )
    with connect(server.ws_url) as ws:
        ws.send(
            json.dumps(
                {"type": "message", "content": "hi", "model": "test", "options": {"fallbacks": ["deep"]}}
            )
        )
        messages = []
        while not messages or messages[-1]["type"] not in ("done", "error"):
            messages.append(json.loads(ws.recv(timeout=20)))
    [attempt] = [m for m in messages if m["type"] == "attempt"]
    assert attempt["model"] == "deepseek/deepseek-chat"
    assert messages[-1]["response"]["text"] == "from deep"
    assert provider.requests[1].json["model"] == "deepseek-chat"


def test_v1_continues_a_cut_stream(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(DEEP.format(url=provider.url))
    provider.add(text_stream(WORDS, model="deepseek-chat", cut_after=40), continuing())
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="deep", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == FULL_TEXT
    assert len(provider.requests) == 2


def test_v1_never_restarts_what_it_sent(make_server: ServerFactory, provider: ReplayServer) -> None:
    """An alias that says restart: on /v1 the text already sent cannot be taken back, so it raises."""
    server = make_server('retries = 1\nmid_stream = "restart"')
    provider.add(
        error_response(500, "boom", code=None),  # before any output: retried as usual
        text_stream(WORDS, cut_after=10),
        text_stream(WORDS),
    )
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="test", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = ""
    with pytest.raises(openai.APIError):
        for c in stream:
            if c.choices:
                text += c.choices[0].delta.content or ""
    assert text == "".join(WORDS[:10])
    time.sleep(0.2)
    assert len(provider.requests) == 2


def test_v1_does_not_retry_a_401(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server("retries = 3")
    provider.add(error_response(401, "Incorrect API key provided"), text_stream(["never"]))
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "test", "messages": [{"role": "user", "content": "x"}], "stream": True},
        timeout=10,
    )
    assert r.status_code == 401
    assert len(provider.requests) == 1


def test_alias_retry_settings_are_checked(tmp_path: Path, provider: ReplayServer) -> None:
    for extra in ('mid_stream = "again"', "retries = -1", "fallbacks = [3]"):
        config = write_config(tmp_path / "c.toml", provider, extra)
        with pytest.raises(ConfigError, match=r"\[models\.test\]"):
            Settings.load({"db": str(tmp_path / "x.db")}, config)
