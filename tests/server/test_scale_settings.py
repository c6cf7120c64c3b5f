"""The scale-out settings: where conversations and streams live, and how many processes serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from cllm.cli import main
from cllm.config import ConfigError
from cllm.server.settings import Settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLLM_HOME", str(tmp_path))
    monkeypatch.delenv("CLLM_DATABASE_URL", raising=False)
    monkeypatch.delenv("CLLM_REDIS_URL", raising=False)


def test_db_takes_a_postgresql_url_and_its_password_is_scrubbed() -> None:
    settings = Settings.load({"db": "postgresql://cllm:s3cret-pw@db.internal/cllm"})
    assert settings.database_url == "postgresql://cllm:s3cret-pw@db.internal/cllm" and settings.db is None
    assert "s3cret-pw" not in settings.scrubber("cannot connect to postgresql://cllm:s3cret-pw@db.internal")


def test_the_environment_names_the_services_unless_a_file_or_option_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLLM_DATABASE_URL", "postgresql://env/db")
    monkeypatch.setenv("CLLM_REDIS_URL", "redis://env:6379/0")
    settings = Settings.load({})
    assert (settings.database_url, settings.redis_url) == ("postgresql://env/db", "redis://env:6379/0")
    settings = Settings.load({"db": str(tmp_path / "x.db"), "redis_url": "unix:///run/r.sock"})
    assert settings.database_url is None and settings.db == tmp_path / "x.db"
    assert settings.redis_url == "unix:///run/r.sock"
    config = tmp_path / "c.toml"
    config.write_text('[server]\ndatabase_url = "postgresql://file/db"\nredis_url = "redis://file"\n')
    settings = Settings.load({}, config)
    assert (settings.database_url, settings.redis_url) == ("postgresql://file/db", "redis://file")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 2}, "--workers 2 needs --redis"),
        ({"workers": 0}, "workers must be at least 1"),
        ({"redis_url": "http://x"}, "redis_url must be a redis://"),
        ({"database_url": "mysql://x"}, "database_url must be a postgresql:// URL"),
        ({"stream_lease": 0}, "stream_lease must be positive"),
    ],
)
def test_settings_that_cannot_work_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(options)


def test_serve_refuses_workers_without_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "3"]) == 2
    err = capsys.readouterr().err
    assert "--workers 3 needs --redis URL" in err and "could not resume or stop them" in err


def test_alias_limits_become_cllm_limits_and_never_reach_litellm(tmp_path: Path) -> None:
    from cllm.limits import Limits, MemoryStore

    config = tmp_path / "c.toml"
    config.write_text(
        '[models.fast]\nmodel = "openai/x"\nconcurrency = 2\nrpm = 60\ntpm = 1000\n[models.plain]\nmodel = "openai/y"\n'
    )
    models = Settings.load({}, config).models.with_limits(MemoryStore())
    model, kwargs = models.call("fast", {})
    assert model == "openai/x" and not {"concurrency", "rpm", "tpm"} & kwargs.keys()
    limits = kwargs["limits"]
    assert isinstance(limits, Limits) and (limits.concurrency, limits.rpm, limits.tpm) == (2, 60, 1000)
    assert "limits" not in models.call("plain", {})[1]
    # With a shared store every model gets one, so that a 429's pause holds for all processes.
    shared = Settings.load({}, config).models.with_limits(MemoryStore(), every_model=True)
    assert shared.call("plain", {})[1]["limits"].name == "serve"
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.fast]\nmodel = "openai/x"\nrpm = -1\n')
    with pytest.raises(ConfigError, match=r"\[models.fast\] rpm must be a positive number"):
        Settings.load({}, bad)
