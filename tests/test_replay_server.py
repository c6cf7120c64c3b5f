"""The replay server itself, driven by plain httpx over loopback."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.replay_server import (
    Framing,
    Piece,
    ReplayServer,
    error_response,
    json_response,
    split_at,
    split_every,
    sse_events,
    stream_response,
)

SSE = b"".join(b'data: {"n": %d}\n\n' % n for n in range(6)) + b"data: [DONE]\n\n"


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay_server:
        yield replay_server


def read_pieces(response: httpx.Response) -> list[tuple[float, bytes]]:
    return [(time.monotonic(), piece) for piece in response.iter_raw()]


def test_slow_stream_arrives_piece_by_piece(server: ReplayServer) -> None:
    pieces = sse_events(SSE)[:4]
    server.add(stream_response(pieces, delay=0.08))
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={}) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        arrivals = read_pieces(response)
    assert [data for _, data in arrivals] == pieces
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(arrivals)]
    assert all(gap > 0.05 for gap in gaps), gaps
    exchange = server.wait_exchange(0)
    assert exchange.wait_done() == "complete"
    assert exchange.pieces_sent == 4


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_body_split_at_any_byte_arrives_whole(server: ReplayServer, framing: Framing) -> None:
    pieces = split_every(SSE, 7)
    server.add(stream_response(pieces, framing=framing))
    response = httpx.post(server.url + "/stream")
    assert response.content == SSE
    if framing == "close":
        assert "content-length" not in response.headers
        assert "transfer-encoding" not in response.headers
    assert server.wait_exchange(0).wait_done() == "complete"
    assert server.exchanges[0].pieces_sent == len(pieces)


def test_body_can_end_cleanly_without_done(server: ReplayServer) -> None:
    server.add(stream_response(sse_events(SSE)[:2]))
    response = httpx.post(server.url + "/stream")
    assert response.content == b'data: {"n": 0}\n\ndata: {"n": 1}\n\n'
    exchange = server.wait_exchange(0)
    assert exchange.wait_done() == "complete"
    assert exchange.body_complete


def test_reset_mid_stream_is_an_error_for_the_client(server: ReplayServer) -> None:
    pieces = sse_events(SSE)
    server.add(stream_response(pieces, delay=0.02, reset_after=2))
    received = b""
    with (
        pytest.raises(httpx.ReadError, match="reset"),
        httpx.stream("POST", server.url + "/stream") as response,
    ):
        for data in response.iter_raw():
            received += data
    assert b"".join(pieces[:2]).startswith(received)
    exchange = server.wait_exchange(0)
    assert exchange.wait_done() == "reset"
    assert (exchange.pieces_sent, exchange.body_complete, exchange.client_closed_at) == (2, False, None)


def test_client_close_is_seen_within_milliseconds_while_server_sleeps(server: ReplayServer) -> None:
    server.add(stream_response(sse_events(SSE), delay=2.0, headers_delay=0))
    server.add(stream_response([Piece(b"data: first\n\n")], hang_after=1))
    with httpx.Client() as client:
        with client.stream("POST", server.url + "/slow") as response:
            closed_at = time.monotonic()  # the first piece is two seconds away: close before it
        exchange = server.wait_client_closed(0, timeout=1.0)
        assert exchange.client_closed_at is not None
        assert exchange.client_closed_at - closed_at < 0.1
        assert exchange.closed_early
        assert exchange.outcome == "client_closed"
        assert exchange.pieces_sent == 0

        with client.stream("POST", server.url + "/hang") as response:
            assert next(response.iter_raw()) == b"data: first\n\n"
            closed_at = time.monotonic()
        exchange = server.wait_client_closed(1, timeout=1.0)
        assert exchange.client_closed_at is not None
        assert exchange.client_closed_at - closed_at < 0.1
        assert (exchange.closed_early, exchange.pieces_sent) == (True, 1)


def test_hang_times_out_the_client(server: ReplayServer) -> None:
    server.add(stream_response([b"data: 1\n\n"], hang_after=1))
    with httpx.stream("POST", server.url + "/hang", timeout=httpx.Timeout(5, read=0.2)) as response:
        chunks = response.iter_raw()
        assert next(chunks) == b"data: 1\n\n"
        with pytest.raises(httpx.ReadTimeout):
            next(chunks)
    exchange = server.wait_client_closed(0, timeout=1.0)
    assert (exchange.outcome, exchange.closed_early) == ("client_closed", True)


def test_stop_does_not_wait_for_a_hanging_response() -> None:
    server = ReplayServer(stream_response([b"data: 1\n\n"], hang_after=1)).start()
    try:
        with httpx.stream("POST", server.url + "/hang") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b"data: 1\n\n"
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 1.0
            with pytest.raises(httpx.RemoteProtocolError):
                next(chunks)
        assert server.exchanges[0].outcome == "server_stopped"
    finally:
        server.stop()


def test_keep_alive_close_after_full_response_is_not_early(server: ReplayServer) -> None:
    server.add(json_response({"n": 1}), json_response({"n": 2}))
    with httpx.Client() as client:
        assert client.post(server.url + "/a").json() == {"n": 1}
        assert client.post(server.url + "/b").json() == {"n": 2}
    first, second = server.exchanges
    assert first.connection == second.connection
    second.wait_client_closed(timeout=1.0)
    assert second.body_complete
    assert not second.closed_early
    assert first.client_closed_at is None  # the connection went on to serve `second`


def test_requests_are_recorded(server: ReplayServer) -> None:
    server.add(json_response({}))
    httpx.post(
        server.url + "/v1beta/models/m:streamGenerateContent?alt=sse",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers={"X-Goog-Api-Key": "sk-test"},
    )
    (request,) = server.wait_requests(1)
    assert request.method == "POST"
    assert request.target == "/v1beta/models/m:streamGenerateContent?alt=sse"
    assert request.path == "/v1beta/models/m:streamGenerateContent"
    assert request.query == {"alt": ["sse"]}
    assert request.header("x-goog-api-key") == "sk-test"
    assert request.json == {"contents": [{"parts": [{"text": "hi"}]}]}


def test_json_and_openai_style_error_responses(server: ReplayServer) -> None:
    server.add(json_response({"id": "x"}), error_response(401, "bad key"))
    ok = httpx.get(server.url + "/ok")
    assert (ok.status_code, ok.json(), ok.headers["content-length"]) == (200, {"id": "x"}, "11")
    denied = httpx.get(server.url + "/denied")
    assert denied.status_code == 401
    error = {"message": "bad key", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
    assert denied.json() == {"error": error}


def test_responses_by_path_first_then_in_order(server: ReplayServer) -> None:
    server.add(json_response("for x"), path="/x")
    server.add(json_response("first"), json_response("second"))
    server.add(json_response("again"), path="/again", repeat=True)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/y").json() == "first"
        assert client.get("/x?q=1").json() == "for x"
        assert client.get("/x").json() == "second"
        assert [client.get("/again").json() for _ in range(3)] == ["again"] * 3
        unscripted = client.get("/z")
    assert unscripted.status_code == 500
    assert [r.target for r in server.unmatched] == ["/z"]


def test_responder_callable_sees_the_request(server: ReplayServer) -> None:
    server.add(lambda request: json_response({"echo": request.json}))
    assert httpx.post(server.url + "/", json=[1, 2]).json() == {"echo": [1, 2]}


def test_streams_5000_events_quickly(server: ReplayServer) -> None:
    events = [b'data: {"i": %d}\n\n' % i for i in range(5000)]
    server.add(stream_response(events))
    started = time.monotonic()
    with httpx.stream("POST", server.url + "/fast") as response:
        lines = [line for line in response.iter_lines() if line]
    assert len(lines) == 5000
    assert time.monotonic() - started < 3.0
    exchange = server.wait_exchange(0)
    assert exchange.wait_done() == "complete"
    assert exchange.pieces_sent == 5000


async def test_async_client_close_is_awaitable(server: ReplayServer) -> None:
    server.add(stream_response(sse_events(SSE), delay=0.5))
    async with httpx.AsyncClient() as client:
        async with client.stream("POST", server.url + "/slow") as response:
            assert response.status_code == 200
        closed_at = time.monotonic()
        exchange = await server.await_client_closed(timeout=1.0)
    assert exchange.client_closed_at is not None
    assert exchange.client_closed_at - closed_at < 0.1
    assert exchange.closed_early


def test_concurrent_streams_are_served_in_parallel(server: ReplayServer) -> None:
    server.add(stream_response([b"a", b"b"], delay=0.2), stream_response([b"c", b"d"], delay=0.2))
    bodies: list[bytes] = []
    # One client made beforehand: making one loads a TLS context (hundreds of milliseconds on a busy
    # machine), which is not what is timed here.
    with httpx.Client() as client:

        def fetch() -> None:
            bodies.append(client.post(server.url + "/s").content)

        threads = [threading.Thread(target=fetch) for _ in range(2)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.monotonic() - started
    assert sorted(bodies) == [b"ab", b"cd"]
    # Each body takes 0.4 s to send: one after the other would take 0.8 s.
    assert took < 0.7


@given(st.binary(max_size=300), st.lists(st.integers(min_value=-5, max_value=320)))
def test_split_helpers_rejoin_to_the_same_bytes(body: bytes, offsets: list[int]) -> None:
    assert b"".join(split_at(body, offsets)) == body
    assert b"".join(split_every(body, 1 + len(offsets))) == body
    assert b"".join(sse_events(body)) == body


@pytest.mark.parametrize("separator", [b"\n\n", b"\r\n\r\n", b"\r\r"])
def test_sse_events_split_after_each_blank_line(separator: bytes) -> None:
    body = b"event: a" + separator + b"data: b" + separator + b"data: partial"
    assert sse_events(body) == [b"event: a" + separator, b"data: b" + separator, b"data: partial"]
