"""/api/chat: cllm's events over SSE, saved conversations, resume after a drop, cancel, failures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.replay_server import ReplayServer, sse_events, stream_response

from cllm.core.accumulator import StreamAccumulator
from cllm.core.response import Response
from cllm.store import ConversationStore

from .conftest import (
    Running,
    feed_failing_on_tool_calls,
    read_sse,
    sse_body,
    text_chunks,
    text_stream,
    text_then_tool_chunks,
    tool_chunks,
)


def chat(server: Running, body: dict[str, Any], **kwargs: Any) -> list[tuple[str | None, str, Any]]:
    with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=10, **kwargs) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return list(read_sse(r))


def store_of(server: Running) -> ConversationStore:
    assert server.settings.db is not None
    return ConversationStore(server.settings.db)


def test_event_sequence_and_saved_conversation(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["Hello", " there"]))
    events = chat(server, {"content": "hi", "model": "test"})
    kinds = [kind for _, kind, _ in events]
    assert kinds == ["stream", "text-delta", "text-delta", "finish"]
    head = events[0][2]
    assert head["stream_id"] and head["conversation_id"]
    assert events[0][0] is None
    assert [event_id for event_id, _, _ in events[1:]] == ["1", "2", "3"]
    assert [data["text"] for _, kind, data in events if kind == "text-delta"] == ["Hello", " there"]
    finish = events[-1][2]
    assert finish["reason"] == "stop"
    assert finish["usage"]["total_tokens"] == 12
    assert finish["response"]["text"] == "Hello there"
    with store_of(server) as store:
        logged = store.get_response(finish["response_id"])
        assert logged is not None
        assert logged.conversation_id == head["conversation_id"]
        assert (logged.prompt, logged.text, logged.model) == ("hi", "Hello there", "test")
        assert logged.messages_in == [{"role": "user", "content": "hi"}]
        assert not logged.interrupted


def test_conversation_carries_on(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["Paris."]), text_stream(["About 2 million."]))
    first = chat(server, {"content": "Capital of France?", "system": "Be brief."})
    conversation_id = first[0][2]["conversation_id"]
    second = chat(server, {"content": "Population?", "conversation_id": conversation_id})
    assert second[0][2]["conversation_id"] == conversation_id
    assert provider.requests[1].json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Population?"},
    ]
    listed = httpx.get(server.url + "/api/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [conversation_id]
    assert listed[0]["title"] == "Capital of France?"
    detail = httpx.get(server.url + f"/api/conversations/{conversation_id}").json()
    assert [r["text"] for r in detail["responses"]] == ["Paris.", "About 2 million."]


def test_tool_call_events(server: Running, provider: ReplayServer) -> None:
    provider.add(stream_response(sse_events(sse_body(tool_chunks()))))
    events = chat(server, {"content": "weather in Paris?"})
    kinds = [kind for _, kind, _ in events]
    assert kinds[:2] == ["stream", "tool-call-start"]
    assert kinds.count("tool-call-delta") == 4
    assert kinds[-2:] == ["tool-call-end", "finish"]
    start = events[1][2]
    assert (start["id"], start["name"]) == ("call_abc", "get_weather")
    partial = [data["arguments"] for _, kind, data in events if kind == "tool-call-delta"]
    assert partial[1] == {"city": "Par"}
    assert events[-2][2]["arguments"] == {"city": "Paris", "unit": "c"}
    assert events[-1][2]["reason"] == "tool_calls"


def test_resume_after_drop_no_gap_no_repeat(server: Running, provider: ReplayServer) -> None:
    words = [f"w{i} " for i in range(40)]
    provider.add(text_stream(words, delay=0.02))
    seen: list[tuple[str | None, str, Any]] = []
    with httpx.stream("POST", server.url + "/api/chat", json={"content": "count"}, timeout=10) as r:
        for event in read_sse(r):
            seen.append(event)
            if len(seen) == 6:
                break  # drop the connection mid-stream
    stream_id = seen[0][2]["stream_id"]
    last_id = seen[-1][0]
    assert last_id == "5"
    time.sleep(0.3)  # generation goes on meanwhile
    with httpx.stream(
        "GET", server.url + f"/api/streams/{stream_id}", headers={"Last-Event-ID": last_id}, timeout=10
    ) as r:
        assert r.status_code == 200
        resumed = list(read_sse(r))
    assert resumed[0][1] == "stream"
    ids = [int(event_id) for event_id, _, _ in seen[1:] + resumed[1:] if event_id is not None]
    assert ids == list(range(1, len(ids) + 1))
    texts = [data["text"] for _, kind, data in seen[1:] + resumed[1:] if kind == "text-delta"]
    assert "".join(texts) == "".join(words)
    assert resumed[-1][1] == "finish"
    # The provider streamed to the end: the drop did not stop generation.
    exchange = provider.wait_exchange(0)
    assert exchange.wait_done() == "complete"
    # Resuming after the end replays everything after the given id, for the TTL.
    with httpx.stream(
        "GET", server.url + f"/api/streams/{stream_id}", headers={"Last-Event-ID": "38"}, timeout=10
    ) as r:
        tail = list(read_sse(r))
    assert [event_id for event_id, _, _ in tail[1:]] == ["39", "40", "41"]


def test_generation_continues_without_reader_and_is_saved(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["a", "b", "c", "d"], delay=0.05))
    with httpx.stream("POST", server.url + "/api/chat", json={"content": "go"}, timeout=10) as r:
        head = next(read_sse(r))
    conversation_id = head[2]["conversation_id"]
    assert provider.wait_exchange(0).wait_done(timeout=5) == "complete"
    deadline = time.monotonic() + 5
    while True:
        with store_of(server) as store:
            found = store.responses(conversation_id=conversation_id)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found and found[0].text == "abcd" and not found[0].interrupted


def test_cancel_stops_generation_and_saves_partial(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream([f"w{i} " for i in range(200)], delay=0.02))
    events: list[tuple[str | None, str, Any]] = []
    with httpx.stream("POST", server.url + "/api/chat", json={"content": "go"}, timeout=10) as r:
        for event in read_sse(r):
            events.append(event)
            if len(events) == 4:
                cancelled = httpx.delete(server.url + f"/api/streams/{events[0][2]['stream_id']}")
                assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    assert events[-1][1] == "error"
    error = events[-1][2]
    assert error["kind"] == "cancelled"
    assert error["response"]["finish_reason"] == "cancelled"
    assert error["response"]["interrupted"] is True
    provider.wait_client_closed(0, timeout=1.0)
    with store_of(server) as store:
        logged = store.get_response(error["response_id"])
    assert logged is not None and logged.interrupted and logged.text.startswith("w0 w1 ")
    assert httpx.delete(server.url + "/api/streams/nope").status_code == 404


def test_provider_failure_mid_stream_saves_interrupted_partial(
    server: Running, provider: ReplayServer
) -> None:
    pieces = sse_events(sse_body(text_chunks(["partial ", "answer ", "lost"])))
    provider.add(stream_response(pieces, reset_after=3))
    events = chat(server, {"content": "go"})
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "error"
    assert "finish" not in kinds
    error = events[-1][2]
    assert error["response"]["interrupted"] is True
    assert error["response"]["text"] == "partial answer "
    with store_of(server) as store:
        logged = store.get_response(error["response_id"])
    assert logged is not None and logged.interrupted and logged.text == "partial answer "
    # And the server goes on serving.
    provider.add(text_stream(["fine"]))
    assert chat(server, {"content": "again"})[-1][1] == "finish"


def test_provider_error_before_output(server: Running, provider: ReplayServer) -> None:
    from support.replay_server import error_response

    from .conftest import PROVIDER_KEY

    provider.add(error_response(401, f"Incorrect API key provided: {PROVIDER_KEY}"))
    events = chat(server, {"content": "go"})
    assert [kind for _, kind, _ in events] == ["stream", "error"]
    assert events[-1][2]["status_code"] == 401
    assert PROVIDER_KEY not in events[-1][2]["message"]
    # The conversation the request started is listed by its prompt and can be carried on.
    with store_of(server) as store:
        conversation = store.get_conversation(events[0][2]["conversation_id"])
        assert conversation is not None and conversation.title == "go"
    provider.add(text_stream(["Going."]))
    again = chat(server, {"content": "go", "conversation_id": events[0][2]["conversation_id"]})
    assert again[-1][1] == "finish"


def test_bad_requests(server: Running) -> None:
    r = httpx.post(server.url + "/api/chat", json={"model": "test"})
    assert r.status_code == 400 and "content" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/api/chat", json={"content": "x", "options": {"api_base": "http://evil"}})
    assert r.status_code == 400 and "api_base" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/api/chat", json={"content": "x", "conversation_id": "nope"})
    assert r.status_code == 404
    r = httpx.get(server.url + "/api/streams/nope")
    assert r.status_code == 404
    r = httpx.get(server.url + "/api/conversations/nope")
    assert r.status_code == 404


def test_db_is_a_real_file(server: Running, tmp_path: Path) -> None:
    assert server.settings.db == tmp_path / "cllm.db"
    assert (tmp_path / "cllm.db").exists()


def test_resume_ttl_bounds_generation_and_memory(make_server: Any, provider: ReplayServer) -> None:
    server = make_server(resume_ttl=0.5)
    provider.add(text_stream([f"w{i} " for i in range(300)], delay=0.02))
    with httpx.stream("POST", server.url + "/api/chat", json={"content": "long"}, timeout=10) as r:
        stream_id = next(read_sse(r))[2]["stream_id"]
    dropped_at = time.monotonic()
    exchange = provider.wait_exchange(0)
    # Nobody came back within the TTL: generation stopped (long before the provider's 6 s).
    closed_at = exchange.wait_client_closed(timeout=3.0)
    assert 0.4 < closed_at - dropped_at < 1.5
    # The stopped stream stays resumable for the TTL (ending with the cancellation), then it is gone.
    with httpx.stream("GET", server.url + f"/api/streams/{stream_id}", timeout=10) as r:
        events = list(read_sse(r))
    assert events[-1][1] == "error" and events[-1][2]["kind"] == "cancelled"
    time.sleep(0.7)
    assert httpx.get(server.url + f"/api/streams/{stream_id}").status_code == 404


def test_resume_when_the_client_has_everything_is_204(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["a", "b"]))
    events = chat(server, {"content": "go"})
    stream_id, last_id = events[0][2]["stream_id"], events[-1][0]
    assert last_id == "3"
    url = server.url + f"/api/streams/{stream_id}"
    # An EventSource reconnecting after the end gets 204, which tells it to stop.
    r = httpx.get(url, headers={"Last-Event-ID": last_id})
    assert r.status_code == 204 and r.content == b""
    r = httpx.get(url, headers={"Last-Event-ID": "2"})
    assert r.status_code == 200 and [kind for _, kind, _ in read_sse(r)] == ["stream", "finish"]
    for beyond in ("4", "99"):
        r = httpx.get(url, headers={"Last-Event-ID": beyond})
        assert r.status_code == 400 and r.json()["error"]["code"] == "event_id_out_of_range"
        assert "beyond" in r.json()["error"]["message"]
    assert httpx.get(url + "?last_event_id=-1").status_code == 400


def test_failure_inside_the_stream_is_reported_and_saved(
    server: Running, provider: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StreamAccumulator, "feed", feed_failing_on_tool_calls(StreamAccumulator.feed))
    provider.add(stream_response(sse_events(sse_body(text_then_tool_chunks()))))
    events = chat(server, {"content": "go"})
    assert [kind for _, kind, _ in events] == ["stream", "text-delta", "error"]
    error = events[-1][2]
    assert error["kind"] == "internal_error" and error["response_id"]
    with store_of(server) as store:
        logged = store.get_response(error["response_id"])
    assert logged is not None and logged.text == "Hi" and logged.interrupted


def test_reply_that_cannot_be_encoded_is_saved_and_reported(
    server: Running, provider: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unencodable(self: Response) -> dict[str, Any]:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(Response, "to_dict", unencodable)
    provider.add(text_stream(["kept"]))
    events = chat(server, {"content": "go"})
    assert events[-1][1] == "error"
    error = events[-1][2]
    with store_of(server) as store:
        logged = store.get_response(error["response_id"])
    assert logged is not None and logged.text == "kept"
