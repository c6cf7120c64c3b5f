"""Which models a client may ask for: local files only when configured, optionally aliases only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.replay_server import ReplayServer
from websockets.sync.client import connect

from cllm.server.settings import ModelTable, RequestError, Settings

from .conftest import Running, ServerFactory, start_server, stop_server, text_stream

MESSAGES = [{"role": "user", "content": "hi"}]


def refusals(server: Running, model: str) -> list[tuple[int, str]]:
    """(status, message) for ``model`` on /v1, /api/chat and /ws."""
    out = []
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": model, "messages": MESSAGES})
    out.append((r.status_code, r.json()["error"]["message"]))
    r = httpx.post(server.url + "/api/chat", json={"model": model, "content": "hi"})
    out.append((r.status_code, r.json()["error"]["message"]))
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"type": "message", "model": model, "content": "hi"}))
        answer = json.loads(ws.recv(timeout=10))
    out.append((answer["status_code"], answer["message"]))
    return [(status, message.replace(model, "MODEL")) for status, message in out]


def test_local_files_are_not_for_clients(server: Running, provider: ReplayServer, tmp_path: Path) -> None:
    existing = tmp_path / "weights.gguf"
    existing.write_bytes(b"GGUF not really")
    found = refusals(server, f"local/{existing}")
    missing = refusals(server, f"local/{tmp_path / 'nothing-here.gguf'}")
    assert found == missing  # the answer says nothing of the disk
    assert all(
        status == 404 and message == "model 'MODEL' is not available on this server"
        for status, message in found
    )
    assert refusals(server, "LOCAL/gemma-3-270m")[0][0] == 404
    assert provider.requests == []
    # Remote names still pass through.
    provider.add(text_stream(["fine"]))
    r = httpx.post(server.url + "/api/chat", json={"model": "openai/gpt-test", "content": "hi"}, timeout=10)
    assert r.status_code == 200


def test_only_configured_models(make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(only_configured_models=True)
    assert all(status == 404 for status, _ in refusals(server, "openai/gpt-test"))
    assert [m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]] == ["test"]
    provider.add(text_stream(["alias works"]))
    r = httpx.post(server.url + "/api/chat", json={"model": "test", "content": "hi"}, timeout=10)
    assert r.status_code == 200 and "alias works" in r.text


def test_configured_local_models_are_allowed() -> None:
    table = ModelTable({"small": {"model": "local/gemma-3-270m"}}, default="local//srv/m.gguf")
    assert table.choose("small") == "small"
    assert table.choose("local/gemma-3-270m") == "local/gemma-3-270m"
    assert table.choose(None) == "local//srv/m.gguf"
    with pytest.raises(RequestError, match="not available"):
        table.choose("local//etc/other.gguf")


@pytest.fixture
def unconfigured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    """A server with an empty config file; cllm's default model comes from $CLLM_MODEL."""
    monkeypatch.setenv("CLLM_MODEL", "openai/gpt-default")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    running, thread = start_server(Settings.load({"db": str(tmp_path / "c.db")}, empty))
    yield running
    stop_server(running, thread)


def test_models_lists_the_default_model_without_a_config(unconfigured: Running) -> None:
    data = httpx.get(unconfigured.url + "/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["openai/gpt-default"]


def test_settings_file_keys(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[server]\nallowed_hosts = ["a.example"]\nonly_configured_models = true\nfirst_token_timeout = 600\n'
        "idle_timeout = 0\nws_idle_timeout = 30\nmax_websockets_per_client = 2\nmax_streams = 50\n"
    )
    settings = Settings.load({}, config)
    assert settings.allowed_hosts == ("a.example",)
    assert settings.models.only_configured
    assert settings.models.timeouts == {"first_token_timeout": 600.0, "idle_timeout": 0.0}
    assert (settings.ws_idle_timeout, settings.max_websockets_per_client, settings.max_streams) == (30, 2, 50)
    assert Settings.load({"first_token_timeout": 5}, config).models.timeouts["first_token_timeout"] == 5
