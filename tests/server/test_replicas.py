"""Two ``cllm serve`` processes (A and B) on loopback ports, sharing one redis-server and one
PostgreSQL, in front of one scripted provider: any replica serves any request."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.replay_server import ReplayServer
from support.replicas import Replica
from support.services import PostgresServer, RedisServer

from .conftest import read_sse, text_stream, write_config

pytestmark = pytest.mark.slow

LEASE = 1.5


@dataclass
class Cluster:
    a: Replica
    b: Replica
    redis: RedisServer
    provider: ReplayServer
    database_url: str


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer) -> Iterator[Cluster]:
    home = Path(tempfile.mkdtemp(prefix="cllm-replicas-"))
    redis = RedisServer(home)
    provider = ReplayServer().start()
    replicas: list[Replica] = []
    try:
        redis.start()
        database_url = postgres_server.create_database()
        config = write_config(home / "config.toml", provider, f"\n[server]\nstream_lease = {LEASE}\n")
        args = ["--config", str(config), "--redis", redis.url, "--db", database_url]
        replicas = [Replica(name, args, home) for name in ("a", "b")]
        for replica in replicas:
            replica.wait_ready()
        yield Cluster(replicas[0], replicas[1], redis, provider, database_url)
    finally:
        for replica in replicas:
            replica.stop()
        provider.stop()
        redis.stop()
        shutil.rmtree(home, ignore_errors=True)


Event = tuple[str | None, str, Any]


def ids_of(events: list[Event]) -> list[int]:
    return [int(event_id) for event_id, _, _ in events if event_id is not None]


def text_of(events: list[Event]) -> str:
    return "".join(data["text"] for _, kind, data in events if kind == "text-delta")


def start_on(replica: Replica, count: int, body: dict[str, Any]) -> list[Event]:
    """POST /api/chat on ``replica``; the first ``count`` events, then the client drops."""
    events: list[Event] = []
    with httpx.stream("POST", replica.url + "/api/chat", json=body, timeout=10) as r:
        assert r.status_code == 200, r.read()
        for event in read_sse(r):
            events.append(event)
            if len(events) == count:
                break
    return events


def read_on(replica: Replica, stream_id: str, after: int, timeout: float = 20) -> list[Event]:
    headers = {"Last-Event-ID": str(after)}
    with httpx.stream(
        "GET", replica.url + f"/api/streams/{stream_id}", headers=headers, timeout=timeout
    ) as r:
        assert r.status_code == 200, r.read()
        return list(read_sse(r))


def test_a_stream_started_on_a_resumes_on_b_with_nothing_missing_or_repeated(cluster: Cluster) -> None:
    words = [f"w{i} " for i in range(60)]
    cluster.provider.add(text_stream(words, delay=0.02))
    first = start_on(cluster.a, 8, {"content": "count"})
    stream_id = first[0][2]["stream_id"]
    resumed = read_on(cluster.b, stream_id, after=7)
    assert resumed[0][1] == "stream" and resumed[0][2]["stream_id"] == stream_id
    ids = ids_of(first[1:] + resumed[1:])
    assert ids == list(range(1, len(ids) + 1))
    assert text_of(first + resumed) == "".join(words)
    assert resumed[-1][1] == "finish"
    # Finished: B answers 204 for the last id and replays any suffix, as A would.
    last = ids[-1]
    assert (
        httpx.get(
            cluster.b.url + f"/api/streams/{stream_id}", headers={"Last-Event-ID": str(last)}
        ).status_code
        == 204
    )
    assert ids_of(read_on(cluster.b, stream_id, after=last - 2)[1:]) == [last - 1, last]
    beyond = httpx.get(cluster.b.url + f"/api/streams/{stream_id}", headers={"Last-Event-ID": str(last + 1)})
    assert beyond.status_code == 400


def test_a_conversation_written_through_a_is_listed_and_continued_through_b(cluster: Cluster) -> None:
    cluster.provider.add(text_stream(["Paris ", "is ", "sunny."]))
    events = start_on(cluster.a, 1000, {"content": "Weather in Paris?"})
    conversation_id = events[-1][2]["conversation_id"]
    listed = httpx.get(cluster.b.url + "/api/conversations").json()["conversations"]
    assert conversation_id in [c["id"] for c in listed]
    before = len(cluster.provider.exchanges)
    cluster.provider.add(text_stream(["You're ", "welcome."]))
    more = start_on(cluster.b, 1000, {"content": "Thanks", "conversation_id": conversation_id})
    assert more[-1][1] == "finish"
    sent = cluster.provider.exchanges[before].request.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == "Paris is sunny."
    on_a = httpx.get(cluster.a.url + f"/api/conversations/{conversation_id}").json()
    assert [r["text"] for r in on_a["responses"]] == ["Paris is sunny.", "You're welcome."]


def test_delete_on_b_stops_the_generation_on_a(cluster: Cluster) -> None:
    cluster.provider.add(text_stream([f"w{i} " for i in range(400)], delay=0.02))
    before = len(cluster.provider.exchanges)
    events: list[Event] = []
    with httpx.stream("POST", cluster.a.url + "/api/chat", json={"content": "go"}, timeout=10) as r:
        for event in read_sse(r):
            events.append(event)
            if len(events) == 5:
                started = time.monotonic()
                cancelled = httpx.delete(
                    cluster.b.url + f"/api/streams/{events[0][2]['stream_id']}", timeout=10
                )
                assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    assert events[-1][1] == "error" and events[-1][2]["kind"] == "cancelled"
    assert events[-1][2]["response"]["interrupted"] is True
    closed = cluster.provider.wait_client_closed(before, timeout=5)
    assert closed.closed_early and time.monotonic() - started < 5
    assert httpx.delete(cluster.b.url + "/api/streams/nope").status_code == 404


def test_redis_stopped_mid_run_gives_503s_and_degraded_health_not_hangs(cluster: Cluster) -> None:
    cluster.provider.add(text_stream([f"w{i} " for i in range(300)], delay=0.02))
    events: list[Event] = []
    with httpx.stream("POST", cluster.a.url + "/api/chat", json={"content": "go"}, timeout=20) as r:
        for event in read_sse(r):
            events.append(event)
            if len(events) == 4:
                cluster.redis.stop()
                stopped = time.monotonic()
    # The running stream could no longer be stored: its reader hears so, promptly.
    assert events[-1][1] == "error" and events[-1][2]["kind"] == "streams_unavailable"
    assert time.monotonic() - stopped < 8
    try:
        for replica in (cluster.a, cluster.b):
            t0 = time.monotonic()
            r = httpx.post(replica.url + "/api/chat", json={"content": "again"}, timeout=20)
            assert r.status_code == 503 and "Redis" in r.json()["error"]["message"]
            health = httpx.get(replica.url + "/healthz", timeout=20)
            assert health.status_code == 503 and health.json()["status"] == "degraded"
            assert httpx.get(replica.url + "/api/streams/x", timeout=20).status_code == 503
            assert time.monotonic() - t0 < 10
            # What does not need Redis still works.
            assert httpx.get(replica.url + "/api/conversations", timeout=20).status_code == 200
    finally:
        cluster.redis.start()
    for replica in (cluster.a, cluster.b):
        deadline = time.monotonic() + 10
        while httpx.get(replica.url + "/healthz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the replica did not recover with Redis"
            time.sleep(0.1)


def test_a_killed_mid_stream_b_serves_all_it_wrote_then_producer_lost(cluster: Cluster) -> None:
    # Runs last in this module: A does not come back.
    cluster.provider.add(text_stream([f"w{i} " for i in range(400)], delay=0.02))
    before = len(cluster.provider.exchanges)
    first = start_on(cluster.a, 2, {"content": "go"})
    stream_id = first[0][2]["stream_id"]
    on_b: list[Event] = []
    done = threading.Event()

    def follow() -> None:
        try:
            on_b.extend(read_on(cluster.b, stream_id, after=0, timeout=30))
        finally:
            done.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(0.5)
    cluster.a.kill()
    killed = time.monotonic()
    assert done.wait(LEASE + 10), "B's reader was left hanging"
    elapsed = time.monotonic() - killed
    assert on_b[-1][1] == "error" and on_b[-1][2]["kind"] == "producer_lost"
    assert elapsed < LEASE + 3
    ids = ids_of(on_b[1:])
    assert ids == list(range(1, len(ids) + 1))
    assert len(ids) > 10  # it had been streaming for half a second
    # Everything A stored is what B served, and the terminal event is stored too: the same for all.
    redis: Any = cluster.redis.client()
    stored = [fields[b"f"] for _, fields in redis.xrange(f"cllm:s:{{{stream_id}}}")]
    assert len(stored) == len(ids)
    again = read_on(cluster.b, stream_id, after=0)
    assert ids_of(again[1:]) == ids and again[-1][2]["kind"] == "producer_lost"
    assert text_of(again) == text_of(on_b)
    # Nothing started the generation again.
    time.sleep(0.3)
    assert len(cluster.provider.exchanges) == before + 1


def test_workers_share_streams_through_redis(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str, replay_server: ReplayServer
) -> None:
    config = write_config(tmp_path / "config.toml", replay_server)
    children: list[str] = []
    replica = Replica(
        "workers",
        ["--config", str(config), "--redis", redis_server.url, "--db", postgres_url, "--workers", "2"],
        tmp_path,
    )
    try:
        replica.wait_ready()
        children = (
            Path(f"/proc/{replica.process.pid}/task/{replica.process.pid}/children").read_text().split()
        )
        assert len(children) >= 2
        # Each request may reach either worker; starting on one and resuming on any always works.
        for i in range(6):
            replay_server.add(text_stream([f"r{i}w{j} " for j in range(20)], delay=0.01))
            first = start_on(replica, 4, {"content": f"q{i}"})
            rest = read_on(replica, first[0][2]["stream_id"], after=3)
            ids = ids_of(first[1:] + rest[1:])
            assert ids == list(range(1, len(ids) + 1)) and rest[-1][1] == "finish"
            assert text_of(first + rest) == "".join(f"r{i}w{j} " for j in range(20))
        assert len(httpx.get(replica.url + "/api/conversations").json()["conversations"]) == 6
    finally:
        replica.stop()
    # Stopping the supervisor stops its workers too.
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        time.sleep(0.05)
