"""Where cllm keeps its files, and how the default model is chosen."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cllm import config, local


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLLM_MODEL", raising=False)
    return tmp_path / "home"


def test_paths_follow_cllm_home(home: Path) -> None:
    assert config.cllm_home() == home
    assert config.default_db_path() == home / "cllm.db"
    assert config.config_path() == home / "config.toml"


def test_without_cllm_home_the_platform_data_dir_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLLM_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "/somewhere/data")
    assert config.cllm_home() == Path("/somewhere/data/cllm")


def test_missing_config_reads_empty(home: Path) -> None:
    assert config.load_config() == {}


def test_set_and_remove_a_value_keeps_the_others(home: Path) -> None:
    home.mkdir()
    config.config_path().write_text('other = "x"\n\n[models.fast]\nmodel = "openai/gpt-4o-mini"\n')
    config.set_config_value("default_model", 'openai/"quoted" ✓')
    written = tomllib.loads(config.config_path().read_text())
    assert written == {
        "other": "x",
        "default_model": 'openai/"quoted" ✓',
        "models": {"fast": {"model": "openai/gpt-4o-mini"}},
    }
    config.set_config_value("default_model", None)
    assert "default_model" not in config.load_config()
    assert config.load_config()["other"] == "x"


def test_broken_config_is_a_clear_error(home: Path) -> None:
    home.mkdir()
    config.config_path().write_text("default_model = \n")
    with pytest.raises(config.ConfigError, match=r"config\.toml"):
        config.load_config()


def test_unwritable_config_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CLLM_HOME", str(blocker / "home"))
    with pytest.raises(config.ConfigError, match="cannot write"):
        config.set_config_value("default_model", "x")


def test_default_model_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "is_available", lambda: False)
    assert config.default_model() is None
    monkeypatch.setattr(local, "is_available", lambda: True)
    assert config.default_model() == "local/gemma-3-270m"
    config.set_config_value("default_model", "anthropic/claude-sonnet-4-5")
    assert config.default_model() == "anthropic/claude-sonnet-4-5"
    monkeypatch.setenv("CLLM_MODEL", "openai/gpt-4o")
    assert config.default_model() == "openai/gpt-4o"


def test_default_model_source_says_where_the_default_comes_from(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "is_available", lambda: False)
    assert config.default_model_source() == (None, "")
    monkeypatch.setattr(local, "is_available", lambda: True)
    assert config.default_model_source() == ("local/gemma-3-270m", "the local model")
    config.set_config_value("default_model", "anthropic/claude-sonnet-4-5")
    assert config.default_model_source() == (
        "anthropic/claude-sonnet-4-5",
        f"set in {home / 'config.toml'}",
    )
    monkeypatch.setenv("CLLM_MODEL", "openai/gpt-4o")
    assert config.default_model_source() == ("openai/gpt-4o", "from CLLM_MODEL")
