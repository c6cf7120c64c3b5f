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
from support.replay_server import ReplayServer, error_response
from support.replicas import Replica
from support.services import PostgresServer, RedisServer

from .conftest import PROVIDER_KEY, read_sse, text_stream, write_config

pytestmark = pytest.mark.slow

LEASE = 1.5


@dataclass
class Cluster:
    a: Replica
    b: Replica
    redis: RedisServer
    provider: ReplayServer
    database_url: str


RPM = 240
TPM = 1440


def limited_aliases(provider: ReplayServer) -> str:
    common = f'model = "openai/gpt-test"\napi_base = "{provider.url}/v1"\napi_key = "{PROVIDER_KEY}"\n'
    return (
        f"\n[models.limited]\n{common}concurrency = 2\nrpm = {RPM}\n\n[models.metered]\n{common}tpm = {TPM}\n"
    )


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer) -> Iterator[Cluster]:
    home = Path(tempfile.mkdtemp(prefix="cllm-replicas-"))
    redis = RedisServer(home)
    provider = ReplayServer().start()
    replicas: list[Replica] = []
    try:
        redis.start()
        database_url = postgres_server.create_database()
        config = write_config(
            home / "config.toml",
            provider,
            limited_aliases(provider) + f"\n[server]\nstream_lease = {LEASE}\n",
        )
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


def run_everywhere(cluster: Cluster, model: str, count: int, **extra: Any) -> list[list[Event]]:
    """``count`` chats at once, alternately on A and B; every one's events."""
    results: list[list[Event]] = [[] for _ in range(count)]

    def one(i: int) -> None:
        replica = cluster.a if i % 2 == 0 else cluster.b
        results[i] = start_on(replica, 10_000, {"model": model, "content": f"q{i}", **extra})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_a_shared_concurrency_and_rpm_limit_is_never_exceeded(cluster: Cluster) -> None:
    before = len(cluster.provider.exchanges)
    count = 8
    for _ in range(count):
        cluster.provider.add(text_stream([f"w{i} " for i in range(10)], delay=0.06))
    results = run_everywhere(cluster, "limited", count)
    assert all(events[-1][1] == "finish" for events in results)
    # The provider's own count: when each request arrived, and when its stream ended.
    exchanges = cluster.provider.exchanges[before:]
    assert len(exchanges) == count
    spans = sorted((e.started_at, e.completed_at or e.started_at) for e in exchanges)
    overlap = max(sum(1 for s, end in spans if s <= start < end) for start, _ in spans)
    assert overlap == 2  # at most two at once, across both replicas (and the limit was reached)
    arrivals = [start for start, _ in spans]
    for k, arrival in enumerate(arrivals):
        assert arrival - arrivals[0] >= k * 60 / RPM - 0.05, (k, arrival - arrivals[0])
    assert any(kind == "queued" for events in results for _, kind, _ in events)


def test_a_shared_tpm_limit_is_never_exceeded(cluster: Cluster) -> None:
    before = len(cluster.provider.exchanges)
    count = 4
    for _ in range(count):
        cluster.provider.add(text_stream(["ok"]))
    # A small max_tokens keeps each reservation near what is used (a refund made on one replica
    # does not wake a request waiting on the other: it waits out the wait it was told).
    results = run_everywhere(cluster, "metered", count, options={"max_tokens": 4})
    assert all(events[-1][1] == "finish" for events in results)
    exchanges = sorted(cluster.provider.exchanges[before:], key=lambda e: e.started_at)
    assert len(exchanges) == count
    # Each used 12 tokens by the provider's own usage: 12 * 60 / TPM = 0.5 s of the budget.
    used = [r[-1][2]["usage"]["total_tokens"] for r in results]
    assert used == [12] * count
    for k, exchange in enumerate(exchanges):
        assert exchange.started_at - exchanges[0].started_at >= k * 12 * 60 / TPM - 0.05


def test_a_429_with_retry_after_on_a_holds_back_b(cluster: Cluster) -> None:
    before = len(cluster.provider.exchanges)
    cluster.provider.add(
        error_response(
            429, "slow down", type="rate_limit_error", code="rate_limited", headers=[("retry-after", "1")]
        )
    )
    refused = start_on(cluster.a, 10_000, {"content": "one"})
    assert refused[-1][1] == "error" and refused[-1][2]["status_code"] == 429
    told = time.monotonic()
    cluster.provider.add(text_stream(["later"]))
    answered = start_on(cluster.b, 10_000, {"content": "two"})
    assert answered[-1][1] == "finish"
    assert any(kind == "queued" for _, kind, _ in answered)
    exchanges = cluster.provider.exchanges[before:]
    assert len(exchanges) == 2
    # B sent nothing to the provider until the pause A was told of had passed.
    assert exchanges[1].started_at - exchanges[0].started_at >= 0.95
    assert exchanges[1].started_at - told > 0.5


def test_redis_stopped_mid_run_gives_503s_and_degraded_health_not_hangs(cluster: Cluster) -> None:
    cluster.provider.add(text_stream([f"w{i} " for i in range(300)], delay=0.02))
    events: list[Event] = []
    on_b: list[Event] = []
    follower: threading.Thread | None = None
    with httpx.stream("POST", cluster.a.url + "/api/chat", json={"content": "go"}, timeout=20) as r:
        for event in read_sse(r):
            events.append(event)
            if len(events) == 2:
                stream_id = events[0][2]["stream_id"]
                follower = threading.Thread(
                    target=lambda sid: on_b.extend(read_on(cluster.b, sid, 0)), args=(stream_id,)
                )
                follower.start()
                time.sleep(0.3)
            if len(events) == 20:
                cluster.redis.stop()
                stopped = time.monotonic()
    # The running stream could no longer be stored: its readers hear so, promptly, on A and on B.
    assert events[-1][1] == "error" and events[-1][2]["kind"] == "streams_unavailable"
    assert follower is not None
    follower.join(10)
    assert on_b[-1][1] == "error" and on_b[-1][2]["kind"] == "streams_unavailable"
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
