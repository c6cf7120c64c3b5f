"""Resumable streams in a real redis-server, one server process: the same behaviour as in memory,
the events stored once each as entries 0-N, a second producer fenced off, and an honest 503 and
/healthz when Redis is gone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from support.replay_server import ReplayServer
from support.services import RedisServer

from cllm.server.redis_streams import RedisStreamRegistry
from cllm.server.streams import StreamsUnavailable

from .conftest import Running, ServerFactory, read_sse, text_stream


@pytest.fixture
def server(make_server: ServerFactory, redis_server: RedisServer) -> Running:
    return make_server(redis_url=redis_server.url)


def chat(server: Running, body: dict[str, Any]) -> list[tuple[str | None, str, Any]]:
    with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=10) as r:
        assert r.status_code == 200, r.read()
        return list(read_sse(r))


def test_events_are_stored_once_each_as_entries_0_n(
    server: Running, provider: ReplayServer, redis_server: RedisServer
) -> None:
    words = [f"w{i} " for i in range(30)]
    provider.add(text_stream(words))
    events = chat(server, {"content": "count"})
    assert events[-1][1] == "finish"
    stream_id = events[0][2]["stream_id"]
    r: Any = redis_server.client()
    # The reply came from the server's memory; its last events reach Redis a moment later.
    deadline = time.monotonic() + 5
    while r.hget(f"cllm:s:{{{stream_id}}}:meta", "done") != b"1":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    entries = r.xrange(f"cllm:s:{{{stream_id}}}")
    ids = [int(event_id) for event_id, _, _ in events[1:] if event_id is not None]
    assert [e[0] for e in entries] == [f"0-{i}".encode() for i in ids]
    assert b"event: finish" in entries[-1][1][b"f"]
    meta = r.hgetall(f"cllm:s:{{{stream_id}}}:meta")
    assert meta[b"done"] == b"1" and int(meta[b"last"]) == ids[-1]
    # Everything expires with the resume TTL; the lease is gone with the producer's last event.
    assert 0 < r.pttl(f"cllm:s:{{{stream_id}}}") <= 300_000
    assert not r.exists(f"cllm:s:{{{stream_id}}}:lease")


def test_resume_and_cancel_work_as_in_memory(server: Running, provider: ReplayServer) -> None:
    words = [f"w{i} " for i in range(40)]
    provider.add(text_stream(words, delay=0.02))
    seen = []
    with httpx.stream("POST", server.url + "/api/chat", json={"content": "count"}, timeout=10) as r:
        for event in read_sse(r):
            seen.append(event)
            if len(seen) == 6:
                break
    stream_id = seen[0][2]["stream_id"]
    with httpx.stream(
        "GET", server.url + f"/api/streams/{stream_id}", headers={"Last-Event-ID": "5"}, timeout=10
    ) as r:
        resumed = list(read_sse(r))
    texts = [d["text"] for _, kind, d in seen[1:] + resumed[1:] if kind == "text-delta"]
    assert "".join(texts) == "".join(words)
    provider.add(text_stream([f"x{i} " for i in range(200)], delay=0.02))
    events = []
    with httpx.stream("POST", server.url + "/api/chat", json={"content": "go"}, timeout=10) as r:
        for event in read_sse(r):
            events.append(event)
            if len(events) == 4:
                assert (
                    httpx.delete(server.url + f"/api/streams/{events[0][2]['stream_id']}").status_code == 200
                )
    assert events[-1][1] == "error" and events[-1][2]["kind"] == "cancelled"
    assert httpx.get(server.url + "/api/streams/nope").status_code == 404
    assert httpx.get(server.url + "/healthz").json()["streams"] == "redis"


async def test_a_second_producer_for_a_stream_is_refused(redis_server: RedisServer) -> None:
    registry = RedisStreamRegistry(60, redis_server.url, lease=5)
    release = asyncio.Event()

    async def generate(emit: Any) -> None:
        emit("text-delta", {"text": "a"})
        await release.wait()

    try:
        stream: Any = await registry.open(None, generate)
        await asyncio.sleep(0.1)
        keys = [f"cllm:s:{{{stream.id}}}", f"cllm:s:{{{stream.id}}}:meta", f"cllm:s:{{{stream.id}}}:lease"]
        # An impostor with another token writes nothing.
        assert await registry._append(keys=keys, args=["not-the-owner", 2, 60_000, 0, 5000, b"forged"]) == -1
        r: Any = redis_server.client()
        assert [e[0] for e in r.xrange(keys[0])] == [b"0-1"]
        # Nor can anyone write an event number already taken.
        with pytest.raises(Exception, match="equal or smaller"):
            await registry._append(keys=keys, args=[stream.token, 1, 60_000, 0, 5000, b"again"])
        release.set()
        await asyncio.wait_for(stream.task, 5)
    finally:
        await registry.aclose()


def test_redis_gone_is_503_and_degraded_health_not_a_hang(
    server: Running, provider: ReplayServer, redis_server: RedisServer
) -> None:
    provider.add(text_stream(["a ", "b "]))
    assert chat(server, {"content": "first"})[-1][1] == "finish"
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    redis_server.stop()
    started = time.monotonic()
    r = httpx.post(server.url + "/api/chat", json={"content": "again"}, timeout=20)
    assert r.status_code == 503
    assert "Redis" in r.json()["error"]["message"] and "unreachable" in r.json()["error"]["message"]
    health = httpx.get(server.url + "/healthz", timeout=20)
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert httpx.get(server.url + "/api/streams/abc", timeout=20).status_code == 503
    assert httpx.delete(server.url + "/api/streams/abc", timeout=20).status_code == 503
    assert time.monotonic() - started < 10
    # The failed request held no slot: with Redis back, chats run again.
    redis_server.start()
    provider.add(text_stream(["back"]))
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/healthz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert chat(server, {"content": "back"})[-1][1] == "finish"


async def test_an_unreachable_redis_is_reported_by_every_operation(tmp_path: Any) -> None:
    registry = RedisStreamRegistry(60, f"unix://{tmp_path}/none.sock", lease=1)
    try:
        with pytest.raises(StreamsUnavailable, match=r"Redis at unix://.*none\.sock\) is unreachable"):
            await registry.open(None, lambda emit: asyncio.sleep(0))
        with pytest.raises(StreamsUnavailable):
            await registry.find("x")
        with pytest.raises(StreamsUnavailable):
            await registry.health()
    finally:
        await registry.aclose()


async def test_a_slow_producer_keeps_its_stream_unless_declared_lost(redis_server: RedisServer) -> None:
    registry = RedisStreamRegistry(60, redis_server.url, lease=5)
    r: Any = redis_server.client()
    go = [asyncio.Event(), asyncio.Event()]

    async def generate(emit: Any) -> None:
        emit("text-delta", {"text": "a"})
        await go[0].wait()
        emit("text-delta", {"text": "b"})
        await go[1].wait()
        emit("text-delta", {"text": "c"})

    try:
        slow: Any = await registry.open(None, generate)
        await asyncio.sleep(0.1)
        base = f"cllm:s:{{{slow.id}}}"
        # Its lease lapsed (a long stall), but no reader noticed: it carries on and finishes.
        r.delete(base + ":lease")
        go[0].set()
        await asyncio.sleep(0.1)
        assert r.get(base + ":lease") == slow.token.encode()
        # This time a reader declares it lost before it writes again: it is stopped, and the
        # stream ends with producer_lost for everyone.
        r.delete(base + ":lease")
        keys = [base, base + ":meta", base + ":lease"]
        assert await registry._lost(keys=keys, args=[2, b"id: 3\nevent: error\ndata: {}\n\n", 60_000]) == 1
        go[1].set()
        await asyncio.wait_for(slow.task, 5)
        for _ in range(100):
            if slow.broken:
                break
            await asyncio.sleep(0.02)
        assert slow.broken == "producer_lost"
        assert [e[0] for e in r.xrange(base)] == [b"0-1", b"0-2", b"0-3"]
        assert r.hget(base + ":meta", "done") == b"1"
    finally:
        await registry.aclose()
