"""/api/conversations/{id}: renaming and deleting saved conversations, and the stream's model."""

from __future__ import annotations

from typing import Any

import httpx
from support.replay_server import ReplayServer, error_response

from .conftest import Running, ServerFactory, read_sse, text_stream

TOKEN = "conversations-token-0123"


def start_conversation(server: Running, provider: ReplayServer, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    provider.add(text_stream(["Hello"]))
    with httpx.stream(
        "POST", server.url + "/api/chat", json={"content": "hi there"}, timeout=10, **kwargs
    ) as r:
        assert r.status_code == 200, r.read()
        events = list(read_sse(r))
    head = events[0][2]
    return head["conversation_id"], head


def test_the_last_event_names_the_model(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["Hello"]))
    r = httpx.post(server.url + "/api/chat", json={"content": "hi"}, timeout=10)
    finish = [data for _, kind, data in read_sse(r) if kind == "finish"]
    assert finish[0]["model"] == "test"  # the config's default, which the request did not name
    r = httpx.post(
        server.url + "/api/chat", json={"content": "hi", "model": "local/nowhere.gguf"}, timeout=10
    )
    assert r.status_code == 404  # refused before any stream
    provider.add(error_response(401, "Incorrect API key provided"))
    r = httpx.post(server.url + "/api/chat", json={"content": "hi", "model": "test"}, timeout=10)
    errors = [data for _, kind, data in read_sse(r) if kind == "error"]
    assert errors and errors[0]["model"] == "test"


def test_rename(server: Running, provider: ReplayServer) -> None:
    conversation_id, _ = start_conversation(server, provider)
    url = f"{server.url}/api/conversations/{conversation_id}"
    r = httpx.patch(url, json={"title": "  Greetings\n and more  "})
    assert r.status_code == 200
    assert r.json()["title"] == "Greetings and more" and r.json()["id"] == conversation_id
    assert httpx.get(url).json()["title"] == "Greetings and more"
    listed = httpx.get(server.url + "/api/conversations").json()["conversations"]
    assert [c["title"] for c in listed] == ["Greetings and more"]
    assert len(httpx.get(url).json()["responses"]) == 1


def test_rename_refuses_bad_input_and_changes_nothing(server: Running, provider: ReplayServer) -> None:
    conversation_id, _ = start_conversation(server, provider)
    url = f"{server.url}/api/conversations/{conversation_id}"
    for body, param in [
        ({}, "title"),
        ({"title": 5}, "title"),
        ({"title": None}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "model": "x"}, "model"),
        ([], "title"),
    ]:
        r = httpx.patch(url, json=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["param"] == param, body
    assert (
        httpx.patch(url, content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 400
    )
    r = httpx.patch(url, content=b'{"title": "x"}', headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert httpx.get(url).json()["title"] == "hi there"
    r = httpx.patch(f"{server.url}/api/conversations/nope", json={"title": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "conversation_not_found"


def test_rename_and_delete_are_guarded(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(token=TOKEN)
    good = {"Authorization": f"Bearer {TOKEN}"}
    conversation_id, _ = start_conversation(server, provider, headers=good)
    url = f"{server.url}/api/conversations/{conversation_id}"
    assert httpx.patch(url, json={"title": "x"}).status_code == 401
    assert httpx.delete(url).status_code == 401
    evil = {**good, "Origin": "http://evil.example"}
    assert httpx.patch(url, json={"title": "x"}, headers=evil).status_code == 403
    assert httpx.delete(url, headers=evil).status_code == 403
    assert httpx.get(url, headers=good).json()["title"] == "hi there"
    assert httpx.patch(url, json={"title": "renamed"}, headers=good).status_code == 200
    r = httpx.delete(url, headers=good)
    assert r.status_code == 200 and r.json() == {"id": conversation_id, "deleted": True}
    assert httpx.get(url, headers=good).status_code == 404
    assert httpx.delete(url, headers=good).status_code == 404


def test_rename_body_is_bounded(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(max_body=1024)
    conversation_id, _ = start_conversation(server, provider)
    r = httpx.patch(f"{server.url}/api/conversations/{conversation_id}", json={"title": "x" * 5000})
    assert r.status_code == 413
