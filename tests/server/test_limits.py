"""Per-alias limits in the server: all clients together, a `queued` event, `/v1` simply later."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from support.replay_server import RecordedRequest, ReplayServer, ScriptedResponse, stream_response
from support.scripted_provider import peak_in_flight
from websockets.sync.client import connect

from cllm.config import ConfigError
from cllm.server.settings import Settings

from .conftest import Running, ServerFactory, read_sse, text_stream, write_config


def json_piece(text: str) -> bytes:
    """A non-streamed completion, sent after a pause (so its time in flight can be measured)."""
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-test",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    ).encode()


def chat_events(
    server: Running, content: str, headers: dict[str, str] | None = None
) -> list[tuple[str, Any]]:
    with httpx.stream(
        "POST", server.url + "/api/chat", json={"content": content}, headers=headers or {}, timeout=20
    ) as r:
        assert r.status_code == 200, r.read()
        return [(event, data) for _, event, data in read_sse(r)]


def in_parallel(*calls: Any) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_alias_concurrency_applies_to_all_clients_and_says_queued(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server("concurrency = 1\n", token="secret-token-1", max_streams_per_client=8)
    provider.add(text_stream(["a", "b", "c"], delay=0.1), repeat=True)
    auth = {"Authorization": "Bearer secret-token-1"}
    results = in_parallel(
        *(lambda i=i: chat_events(server, f"hi {i}", auth) for i in range(3)),
    )
    assert peak_in_flight(provider.exchanges) == 1
    kinds = [[event for event, _ in events] for events in results]
    assert all(k[-1] == "finish" for k in kinds)
    queued = [k for k in kinds if "queued" in k]
    assert len(queued) == 2  # the first went straight through
    for k in queued:
        assert k.index("queued") < k.index("text-delta")
    # The alias's limits are cllm's, never LiteLLM parameters.
    assert all("concurrency" not in ex.request.json for ex in provider.exchanges)


def test_v1_simply_starts_later(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server("concurrency = 1\n")

    def respond(request: RecordedRequest) -> ScriptedResponse:
        if request.json.get("stream"):
            return text_stream(["x", "y"], delay=0.15)
        return stream_response([json_piece("xy")], content_type="application/json", delay=0.3)

    provider.add(respond, repeat=True)

    def completion() -> list[str]:
        body = {"model": "test", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=20) as r:
            assert r.status_code == 200
            return [line for line in r.iter_lines() if line.startswith("data: ")]

    def plain() -> dict[str, Any]:
        body = {"model": "test", "messages": [{"role": "user", "content": "hi"}]}
        return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=20).json()

    streamed_a, streamed_b, whole = in_parallel(completion, completion, plain)
    assert peak_in_flight(provider.exchanges) == 1
    for lines in (streamed_a, streamed_b):
        assert lines[-1] == "data: [DONE]"
        first = json.loads(lines[0][len("data: ") :])
        assert first["choices"][0]["delta"]["role"] == "assistant"
        assert "queued" not in "".join(lines)
        text = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in lines[:-1]
            if json.loads(line[6:])["choices"]
        )
        assert text == "xy"
    assert whole["choices"][0]["message"]["content"] == "xy"


def test_websocket_says_queued(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server("concurrency = 1\n")
    provider.add(text_stream(["slow", " answer"], delay=0.3))
    provider.add(text_stream(["second"]), repeat=True)

    def first() -> list[tuple[str, Any]]:
        return chat_events(server, "first")

    holder = threading.Thread(target=first)
    holder.start()
    provider.wait_exchange(0, timeout=10)
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "message", "content": "hello"}))
        kinds = []
        while not kinds or kinds[-1] not in ("done", "error"):
            kinds.append(json.loads(ws.recv(timeout=10))["type"])
    holder.join(10)
    assert kinds[:2] == ["start", "queued"]
    assert kinds[-2:] == ["finish", "done"]


def test_bad_alias_limits_are_refused_at_start(tmp_path: Any, replay_server: ReplayServer) -> None:
    config = write_config(tmp_path / "c.toml", replay_server, "rpm = -5\n")
    with pytest.raises(ConfigError, match=r"\[models.test\] rpm must be a positive number"):
        Settings.load({}, config)
    good = write_config(tmp_path / "g.toml", replay_server, "concurrency = 2\nrpm = 600\ntpm = 100000\n")
    limits = Settings.load({}, good).models.limits["test"]
    assert (limits.concurrency, limits.rpm, limits.tpm) == (2, 600, 100000)
