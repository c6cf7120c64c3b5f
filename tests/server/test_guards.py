"""Auth, limits, CORS and the command line's refusal to expose itself without a token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.replay_server import ReplayServer

from cllm.config import ConfigError
from cllm.server.settings import Scrubber, Settings, is_loopback

from .conftest import PROVIDER_KEY, ServerFactory, read_sse, text_stream, write_config

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


def test_command_refuses_public_bind_without_token(tmp_path: Path) -> None:
    proc = _serve("--host", "0.0.0.0", "--port", "0", cwd=tmp_path)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in err


def test_command_serves_and_keeps_keys_out_of_logs(tmp_path: Path, provider: ReplayServer) -> None:
    config = write_config(tmp_path / "config.toml", provider)
    proc = _serve("--port", "0", "--config", str(config), "--db", str(tmp_path / "c.db"), cwd=tmp_path)
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        lines = []
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if m := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line):
                url = m.group(1)
        assert url, "".join(lines)
        assert httpx.get(url + "/healthz").json()["status"] == "ok"
        from support.replay_server import error_response

        provider.add(error_response(401, f"Incorrect API key provided: {PROVIDER_KEY}"))
        r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 401 and PROVIDER_KEY not in r.text
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert PROVIDER_KEY not in err
