"""/ws: chat over a WebSocket with the websockets client."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from support.replay_server import ReplayServer, error_response
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from cllm.core.response import Response

from .conftest import Running, ServerFactory, text_stream


def receive_until(ws: ClientConnection, *kinds: str) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = json.loads(ws.recv(timeout=10))
        messages.append(message)
        if message["type"] in kinds:
            return messages


def test_message_reply_done(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["Hi", " you"]))
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "message", "content": "hello", "model": "test"}))
        messages = receive_until(ws, "done", "error")
    kinds = [m["type"] for m in messages]
    assert kinds == ["start", "text-delta", "text-delta", "finish", "done"]
    assert messages[0]["conversation_id"] and messages[0]["model"] == "test"
    assert messages[-1]["response"]["text"] == "Hi you"
    assert messages[-1]["conversation_id"] == messages[0]["conversation_id"]
    assert messages[-1]["response_id"]


def test_cancel_then_still_usable(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream([f"w{i} " for i in range(300)], delay=0.02), text_stream(["again"]))
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "message", "content": "long"}))
        first = receive_until(ws, "text-delta")
        conversation_id = first[0]["conversation_id"]
        ws.send(json.dumps({"type": "cancel"}))
        rest = receive_until(ws, "done", "error")
        assert rest[-1]["type"] == "error" and rest[-1]["kind"] == "cancelled"
        assert rest[-1]["response"]["finish_reason"] == "cancelled"
        provider.wait_client_closed(0, timeout=1.0)
        ws.send(json.dumps({"type": "message", "content": "next", "conversation_id": conversation_id}))
        reply = receive_until(ws, "done", "error")
    assert reply[-1]["type"] == "done"
    assert reply[-1]["response"]["text"] == "again"
    # The cancelled partial answer is part of the conversation's history.
    history = provider.requests[1].json["messages"]
    assert history[0] == {"role": "user", "content": "long"}
    assert history[1]["role"] == "assistant" and history[1]["content"].startswith("w0 ")


def test_errors_keep_the_connection_usable(server: Running, provider: ReplayServer) -> None:
    provider.add(error_response(401, "bad key"), text_stream(["works"]))
    with connect(server.ws_url) as ws:
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=5))["type"] == "error"
        ws.send(json.dumps({"type": "nonsense"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "error"
        ws.send(json.dumps({"type": "message"}))
        bad = json.loads(ws.recv(timeout=5))
        assert bad["type"] == "error" and bad["status_code"] == 400
        ws.send(json.dumps({"type": "message", "content": "x"}))
        failed = receive_until(ws, "done", "error")
        assert failed[-1]["type"] == "error" and failed[-1]["status_code"] == 401
        ws.send(json.dumps({"type": "message", "content": "y"}))
        ok = receive_until(ws, "done", "error")
    assert ok[-1]["type"] == "done" and ok[-1]["response"]["text"] == "works"


def test_disconnect_closes_upstream_within_100ms(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream([f"w{i} " for i in range(500)], delay=0.02))
    ws = connect(server.ws_url)
    ws.send(json.dumps({"type": "message", "content": "long"}))
    receive_until(ws, "text-delta")
    receive_until(ws, "text-delta")
    exchange = provider.wait_exchange(0)
    closed_at = time.monotonic()
    ws.close()
    assert exchange.wait_client_closed(timeout=2.0) - closed_at < 0.1
    assert exchange.closed_early


def test_token_required_on_the_handshake(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(token="s3cret-token")
    with pytest.raises(InvalidStatus):
        connect(server.ws_url).close()
    with pytest.raises(InvalidStatus):
        connect(server.ws_url + "?token=wrong").close()
    provider.add(text_stream(["ok"]))
    with connect(server.ws_url + "?token=s3cret-token") as ws:
        ws.send(json.dumps({"type": "message", "content": "hi"}))
        assert receive_until(ws, "done", "error")[-1]["type"] == "done"
    with connect(server.ws_url, additional_headers={"Authorization": "Bearer s3cret-token"}) as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"


def test_failure_inside_a_reply_ends_it_with_an_error_and_keeps_the_socket(
    server: Running, provider: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unencodable(self: Response) -> dict[str, Any]:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(Response, "to_dict", unencodable)
    provider.add(text_stream(["kept"]))
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "message", "content": "go"}))
        messages = receive_until(ws, "done", "error")
        assert messages[-1]["type"] == "error" and messages[-1]["response_id"]
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
