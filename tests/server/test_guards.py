"""Auth, limits, CORS and the command line's refusal to expose itself without a token."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from support.replay_server import ReplayServer, json_response
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

from cllm.config import ConfigError
from cllm.server.settings import Scrubber, Settings, is_loopback

from .conftest import PROVIDER_KEY, Running, ServerFactory, read_sse, text_stream, write_config

TOKEN = "tok-0123456789abcdef"


def test_token_required_everywhere_but_healthz(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(token=TOKEN)
    body = {"model": "test", "messages": [{"role": "user", "content": "hi"}]}
    for method, path in [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("POST", "/api/chat"),
        ("GET", "/api/conversations"),
        ("GET", "/api/streams/x"),
        ("DELETE", "/api/streams/x"),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = httpx.request(method, server.url + path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers)
            assert r.json()["error"]["type"] == "authentication_error"
            assert TOKEN not in r.text
    assert httpx.get(server.url + "/healthz").status_code == 200
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(server.url + "/v1/models", headers=good).status_code == 200
    provider.add(text_stream(["ok"]))
    r = httpx.post(server.url + "/api/chat", json={"content": "hi"}, headers=good)
    assert r.status_code == 200 and "event: finish" in r.text


def test_page_files_are_open_but_hold_no_data(make_server: ServerFactory) -> None:
    server = make_server(token=TOKEN)
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "<title>cllm</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(server.url + "/static/app.js").status_code == 200
    assert TOKEN not in page.text


def test_body_limit(make_server: ServerFactory) -> None:
    server = make_server(max_body=2048)
    big = {"content": "x" * 4096}
    r = httpx.post(server.url + "/api/chat", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b"x" * 1024

    r = httpx.post(
        server.url + "/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_concurrent_streams_per_client(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(max_streams_per_client=1)
    provider.add(text_stream([f"w{i} " for i in range(30)], delay=0.02), text_stream(["next"]))
    with httpx.stream("POST", server.url + "/api/chat", json={"content": "long"}, timeout=10) as first:
        events = read_sse(first)
        next(events)
        second = httpx.post(server.url + "/api/chat", json={"content": "again"})
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "too_many_streams"
        third = httpx.post(
            server.url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "x"}], "stream": True},
        )
        assert third.status_code == 429
        assert [kind for _, kind, _ in events][-1] == "finish"
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # the slot is released when the generation ends
        r = httpx.post(server.url + "/api/chat", json={"content": "again"})
        if r.status_code != 429:
            break
        time.sleep(0.02)
    assert r.status_code == 200 and "event: finish" in r.text


def test_cors_off_by_default_and_on_when_configured(make_server: ServerFactory) -> None:
    preflight = {
        "Origin": "http://example.test",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    off = make_server()
    r = httpx.options(off.url + "/api/chat", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(off.url + "/healthz", headers={"Origin": "http://example.test"})
    assert "access-control-allow-origin" not in r.headers
    on = make_server(cors_origins=["http://example.test"], token=TOKEN)
    r = httpx.options(on.url + "/api/chat", headers=preflight)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://example.test"
    r = httpx.options(on.url + "/api/chat", headers={**preflight, "Origin": "http://other.test"})
    assert "access-control-allow-origin" not in r.headers


def test_settings_refuse_non_loopback_without_token(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="without a token"):
        Settings.load({"host": "0.0.0.0"}, empty)
    assert Settings.load({"host": "0.0.0.0", "token": TOKEN}, empty).host == "0.0.0.0"
    assert Settings.load({}, empty).host == "127.0.0.1"
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("192.168.1.2")


def test_scrubber_hides_keys() -> None:
    scrub = Scrubber.from_environment(
        ["alias-key-123456"], environ={"OPENAI_API_KEY": "sk-env-abcdef", "HOME": "/root"}
    )
    assert scrub("bad key sk-env-abcdef and alias-key-123456 in /root") == "bad key *** and *** in /root"


def _serve(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "CLLM_HOME": str(cwd), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("CLLM_SERVER_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "cllm.server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def _wait_for_url(proc: subprocess.Popen[str]) -> str:
    """The address a ``cllm serve`` subprocess listens on, from its log."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if m := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line):
            return m.group(1)
    raise AssertionError("".join(lines))


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-test",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def test_command_refuses_public_bind_without_token(tmp_path: Path) -> None:
    proc = _serve("--host", "0.0.0.0", "--port", "0", cwd=tmp_path)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in err


def test_command_serves_and_keeps_keys_out_of_logs(tmp_path: Path, provider: ReplayServer) -> None:
    config = write_config(tmp_path / "config.toml", provider)
    proc = _serve("--port", "0", "--config", str(config), "--db", str(tmp_path / "c.db"), cwd=tmp_path)
    try:
        url = _wait_for_url(proc)
        assert httpx.get(url + "/healthz").json()["status"] == "ok"
        from support.replay_server import error_response

        provider.add(error_response(401, f"Incorrect API key provided: {PROVIDER_KEY}"))
        r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 401 and PROVIDER_KEY not in r.text
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert PROVIDER_KEY not in err


# -- where requests come from ----------------------------------------------------------------------

EVIL = "http://evil.example"


def test_cross_origin_and_rebound_requests_are_refused(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server()
    port = server.url.rsplit(":", 1)[1]
    body = {"content": "hi"}
    # A page elsewhere posting a "simple" request: no preflight, so the server must refuse it.
    r = httpx.post(server.url + "/api/chat", content=json.dumps(body), headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = httpx.post(server.url + "/api/chat", json=body, headers={"Origin": EVIL})
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    r = httpx.post(
        server.url + "/api/chat", json=body, headers={"Origin": f"http://127.0.0.1:{int(port) + 1}"}
    )
    assert r.status_code == 403
    r = httpx.post(server.url + "/api/chat", json=body, headers={"Origin": "null"})
    assert r.status_code == 403
    # DNS rebinding: a name the attacker controls, pointed at 127.0.0.1.
    for path in ("/", "/api/conversations", "/v1/models"):
        r = httpx.get(server.url + path, headers={"Host": f"attacker.example:{port}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
    with pytest.raises(InvalidStatus):
        connect(server.ws_url, origin=EVIL).close()  # type: ignore[arg-type]
    assert _handshake_status(server, host="attacker.example") == 403
    assert _handshake_status(server, host=f"127.0.0.1:{port}") == 101
    assert provider.requests == []
    # The server's own origin, under each of its local names, is served.
    provider.add(text_stream(["ok"]), repeat=True)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        headers = {"Origin": f"http://{host}", "Host": host}
        r = httpx.post(server.url + "/api/chat", json=body, headers=headers)
        assert r.status_code == 200 and "event: finish" in r.text
    with connect(server.ws_url, origin=f"http://127.0.0.1:{port}") as ws:  # type: ignore[arg-type]
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"


def _handshake_status(server: Running, *, host: str) -> int:
    """The status a WebSocket handshake with this Host header gets (written by hand: clients set
    Host from the URL)."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        return int(sock.recv(1024).split(b" ", 2)[1])


def test_allowed_hosts_and_cors_origins_are_let_in(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server(allowed_hosts=["chat.example.org"], cors_origins=[EVIL])
    r = httpx.get(server.url + "/v1/models", headers={"Host": "chat.example.org"})
    assert r.status_code == 200
    assert httpx.get(server.url + "/v1/models", headers={"Host": "other.example.org"}).status_code == 403
    r = httpx.get(server.url + "/v1/models", headers={"Origin": EVIL})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == EVIL


def test_non_ascii_token_matches_in_header_and_query(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    token = "tök-en-ünïcode-✓"
    server = make_server(token=token)
    good = {"Authorization": b"Bearer " + token.encode()}
    assert httpx.get(server.url + "/v1/models", headers=good).status_code == 200
    bad = {"Authorization": b"Bearer " + token.encode("latin-1", "replace")}
    assert httpx.get(server.url + "/v1/models", headers=bad).status_code == 401
    with connect(server.ws_url + "?token=" + quote(token)) as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
    with pytest.raises(InvalidStatus):
        connect(server.ws_url + "?token=" + quote(token[:-1])).close()


# -- limits ----------------------------------------------------------------------------------------


def test_non_streaming_calls_hold_a_slot(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(max_streams_per_client=1)
    provider.add(dataclasses.replace(json_response(COMPLETION), delay=0.5))
    body = {"model": "test", "messages": [{"role": "user", "content": "x"}]}
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.post, server.url + "/v1/chat/completions", json=body, timeout=10)
        provider.wait_exchange(0, timeout=5)
        r = httpx.post(server.url + "/v1/chat/completions", json=body)
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_streams"
        assert slow.result().status_code == 200


def test_server_wide_stream_limit(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(max_streams=1)
    provider.add(text_stream([f"w{i} " for i in range(20)], delay=0.02), text_stream(["next"]))
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with httpx.stream("POST", server.url + "/api/chat", json={"content": "long"}, timeout=10) as first:
        events = read_sse(first)
        next(events)
        r = other.post(server.url + "/api/chat", json={"content": "x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "server_busy"
        list(events)
    deadline = time.monotonic() + 2
    while (r := other.post(server.url + "/api/chat", json={"content": "x"})).status_code == 503:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert r.status_code == 200 and "event: finish" in r.text


def test_websockets_per_client_are_capped(make_server: ServerFactory) -> None:
    server = make_server(max_websockets_per_client=2)
    first, second = connect(server.ws_url), connect(server.ws_url)
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url).close()
    assert refused.value.response.status_code == 429
    first.close()
    deadline = time.monotonic() + 2
    while True:
        try:
            third = connect(server.ws_url)
            break
        except InvalidStatus:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    third.close()
    second.close()


def test_idle_websocket_is_closed_but_not_while_streaming(
    make_server: ServerFactory, provider: ReplayServer
) -> None:
    server = make_server(ws_idle_timeout=0.4)
    provider.add(text_stream([f"w{i} " for i in range(20)], delay=0.05))
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "message", "content": "slow"}))  # 1 s, longer than the idle limit
        kinds = []
        while (message := json.loads(ws.recv(timeout=5)))["type"] not in ("done", "error"):
            kinds.append(message["type"])
        assert message["type"] == "done" and kinds.count("text-delta") == 20
        ended = time.monotonic()
        with pytest.raises(ConnectionClosedOK) as closed:
            ws.recv(timeout=5)
        assert 0.3 < time.monotonic() - ended < 2
        assert closed.value.rcvd is not None and closed.value.rcvd.reason == "idle"


def test_litellm_may_open_as_many_connections_as_the_server_runs_streams(
    tmp_path: Path, provider: ReplayServer
) -> None:
    # LiteLLM's own default stops at 500 connections per provider host and queues the rest.
    count = 520
    provider.add(text_stream(["never"], hang_after=0), repeat=True)
    config = write_config(tmp_path / "config.toml", provider)
    proc = _serve(
        "--port", "0", "--config", str(config), "--db", str(tmp_path / "c.db"),
        "--max-streams-per-client", str(count), "--max-streams", str(count),
        "--first-token-timeout", "60",
        cwd=tmp_path,
    )  # fmt: skip
    try:
        url = _wait_for_url(proc)
        assert proc.stderr is not None
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its log from blocking it
        body = {"model": "test", "messages": [{"role": "user", "content": "x"}], "stream": True}

        async def hold_streams() -> int:
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
            async with httpx.AsyncClient(limits=limits, timeout=60) as client:
                tasks = [
                    asyncio.ensure_future(client.post(url + "/v1/chat/completions", json=body))
                    for _ in range(count)
                ]
                deadline = time.monotonic() + 40
                while len(provider.exchanges) < count and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            return len(provider.exchanges)

        assert asyncio.run(hold_streams()) == count
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
