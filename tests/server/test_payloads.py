"""Client JSON the rest of the server cannot handle: lone surrogates and deep nesting, on every
protocol, and never at the cost of the client's stream slots or its WebSocket."""

from __future__ import annotations

import json

import httpx
import pytest
from support.replay_server import ReplayServer
from websockets.sync.client import connect

from cllm.server.settings import RequestError

from .conftest import ServerFactory, text_stream

JSON = {"content-type": "application/json"}
SURROGATE = "\\ud800"  # valid JSON, but no valid UTF-8


def post(url: str, raw: str) -> httpx.Response:
    return httpx.post(url, content=raw.encode(), headers=JSON, timeout=10)


def test_lone_surrogates_get_400_and_never_lock_the_client_out(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server(max_streams_per_client=2)
    bodies = [
        f'{{"content": "hi {SURROGATE}"}}',
        f'{{"content": "hi", "system": "{SURROGATE}"}}',
        f'{{"content": "hi", "conversation_id": "{SURROGATE}"}}',
        f'{{"messages": [{{"role": "user", "content": "{SURROGATE}"}}]}}',
        f'{{"content": "hi", "options": {{"{SURROGATE}": 1}}}}',
    ]
    for _ in range(2):  # more requests than the client has slots
        for raw in bodies:
            r = post(server.url + "/api/chat", raw)
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["code"] == "invalid_text" and "UTF-8" in error["message"]
            r = post(server.url + "/v1/chat/completions", raw.replace('"content": "hi"', '"model": "test"'))
            assert r.status_code == 400
            assert r.json()["error"]["type"] == "invalid_request_error"
    assert provider.requests == []
    provider.add(text_stream(["still"]), text_stream(["here"]))
    r = httpx.post(server.url + "/api/chat", json={"content": "hi"}, timeout=10)
    assert r.status_code == 200 and "event: finish" in r.text
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
        timeout=10,
    )
    assert r.status_code == 200 and "data: [DONE]" in r.text


@pytest.mark.parametrize("depth", [129, 1_500, 100_000])  # the limit is 128
def test_deep_nesting_gets_400(make_server: ServerFactory, provider: ReplayServer, depth: int) -> None:
    server = make_server()
    nested = "[" * depth + "]" * depth
    for path, raw in [
        ("/api/chat", f'{{"content": "hi", "options": {{"tools": {nested}}}}}'),
        ("/v1/chat/completions", f'{{"messages": [{{"role": "user", "content": "hi"}}], "tools": {nested}}}'),
        ("/api/chat", nested),
    ]:
        r = post(server.url + path, raw)
        assert r.status_code == 400, (path, r.status_code)
        assert "nested too deeply" in r.json()["error"]["message"]
    assert provider.requests == []


def test_websocket_answers_bad_text_and_deep_nesting_and_stays_open(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server(max_streams_per_client=1)
    provider.add(text_stream(["fine"]))
    with connect(server.ws_url, max_size=None) as ws:
        for raw in [
            f'{{"type": "message", "content": "{SURROGATE}"}}',
            f'{{"type": "message", "content": "hi", "conversation_id": "{SURROGATE}"}}',
            "[" * 100_000 + "]" * 100_000,
            '{"type": "message", "content": "hi", "options": {"tools": ' + "[" * 2_000 + "]" * 2_000 + "}}",
        ]:
            ws.send(raw)
            answer = json.loads(ws.recv(timeout=5))
            assert answer["type"] == "error" and answer["status_code"] == 400, answer
        ws.send(json.dumps({"type": "message", "content": "hi"}))
        while (message := json.loads(ws.recv(timeout=10)))["type"] not in ("done", "error"):
            pass
    assert message["type"] == "done" and message["response"]["text"] == "fine"


def test_check_is_iterative_and_exact() -> None:
    from cllm.server import payloads

    assert payloads.MAX_DEPTH == 128
    payloads.check({"a": [[["ok"]]], "é": "ünïcode"})
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(RequestError, match="nested too deeply"):
        payloads.check(deep)
    with pytest.raises(RequestError, match="not valid Unicode"):
        payloads.check({"k": ["\ud83d"]})
