"""compose.yaml (the deployment README describes) stays valid: it parses, its services hang
together, and each replica's command is one `cllm serve` accepts, with Redis and PostgreSQL."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cllm.server.command import configure_parser
from cllm.server.settings import Settings

COMPOSE = Path(__file__).resolve().parent.parent / "compose.yaml"

# Compose's variable syntax: ${NAME}, ${NAME:-default}, ${NAME:?error}; $$ is a literal $.
_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?([-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            name, kind, arg = m.group(1), m.group(2), m.group(3)
            if name in env:
                return env[name]
            if kind == "-":
                return arg or ""
            raise AssertionError(f"${{{name}}} has no default and is not set: {arg}")

        return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    env = {"CLLM_SERVER_TOKEN": "t" * 32, "POSTGRES_PASSWORD": "p" * 24}
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env)  # type: ignore[no-any-return]


def test_it_parses_and_its_services_hang_together(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"cllm-a", "cllm-b", "proxy", "redis", "postgres"} <= services.keys()
    for name, service in services.items():
        assert "image" in service, name
        depends = service.get("depends_on", [])
        assert set(depends) <= services.keys(), name
        for source in service.get("configs", []):
            assert source["source"] in compose["configs"]
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"]
    # Without the secrets, compose refuses to start rather than run with blank ones.
    with pytest.raises(AssertionError, match="CLLM_SERVER_TOKEN"):
        interpolate(yaml.safe_load(COMPOSE.read_text()), {})


def test_every_replica_runs_a_command_cllm_serve_accepts(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLLM_HOME", str(tmp_path))
    services = compose["services"]
    replicas = [s for s in services.values() if s.get("command", [])[:2] == ["cllm", "serve"]]
    assert len(replicas) == 2
    for service in replicas:
        parser = argparse.ArgumentParser()
        configure_parser(parser)
        args = parser.parse_args(service["command"][2:])
        options = {k: v for k, v in vars(args).items() if k != "config"}
        settings = Settings.load(options, None)
        assert settings.host == "0.0.0.0" and settings.token
        assert settings.redis_url == "redis://redis:6379/0" and settings.workers == 2
        assert settings.database_url is not None and "@postgres:5432/cllm" in settings.database_url
        # The proxy's upstreams are these replicas, on the port they listen on.
    nginx = compose["configs"]["nginx"]["content"]
    for name in ("cllm-a", "cllm-b"):
        assert f"server {name}:{settings.port}" in nginx
    assert "proxy_buffering off;" in nginx and "$http_upgrade" in nginx
    postgres = services["postgres"]["environment"]
    assert f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@" in settings.database_url
