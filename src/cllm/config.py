"""Where cllm keeps its files, and the user's settings.

Everything lives in one directory: ``$CLLM_HOME`` when set, else the platform's user data
directory (``~/.local/share/cllm`` on Linux). It holds ``cllm.db`` (conversations and logs) and
``config.toml``. This module imports only the standard library and platformdirs, so the CLI can
use it without paying for LiteLLM's import.

The model aliases in the config file are read here, for the CLI and the server alike::

    default_model = "fast"              # an alias or a LiteLLM model name

    [models.fast]                       # an alias: "model" plus any LiteLLM parameters
    model = "openai/gpt-4o-mini"
    api_base = "http://localhost:4000/v1"
    api_key_env = "MY_PROVIDER_KEY"     # read the key from this environment variable
    first_token_timeout = 900           # cllm's timeouts, per alias (0: none)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ALIAS_TIMEOUTS",
    "ConfigError",
    "alias_call",
    "cllm_home",
    "config_path",
    "default_db_path",
    "default_model",
    "default_model_source",
    "load_config",
    "model_aliases",
    "set_config_value",
]

DB_NAME = "cllm.db"
CONFIG_NAME = "config.toml"


class ConfigError(Exception):
    """The config file cannot be read or written."""


def cllm_home() -> Path:
    """The directory cllm keeps its files in (not created here)."""
    home = os.environ.get("CLLM_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("cllm", appauthor=False))


def default_db_path() -> Path:
    """The SQLite database the CLI and the server log to by default."""
    return cllm_home() / DB_NAME


def config_path() -> Path:
    """The user's config file (it may not exist)."""
    return cllm_home() / CONFIG_NAME


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The settings in ``config.toml``; an empty dict when there is no file."""
    path = path or config_path()
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e


def set_config_value(key: str, value: str | None, path: Path | None = None) -> None:
    """Set (or, with None, remove) one top-level setting, keeping the others."""
    import tomli_w

    path = path or config_path()
    config = load_config(path)
    if value is None:
        config.pop(key, None)
    else:
        config[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(config), encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e}") from e


def default_model() -> str | None:
    """The model to use when none is given: ``$CLLM_MODEL``, then ``default_model`` in the
    config file, then the embedded local model when the ``local`` extra is installed."""
    return default_model_source()[0]


def default_model_source() -> tuple[str | None, str]:
    """`default_model` and where it comes from, in words (``""`` when there is none)."""
    model = os.environ.get("CLLM_MODEL")
    if model:
        return model, "from CLLM_MODEL"
    configured = load_config().get("default_model")
    if isinstance(configured, str) and configured:
        return configured, f"set in {config_path()}"
    from cllm import local

    if local.is_available():
        return local.DEFAULT_MODEL, "the local model"
    return None, ""


# -- model aliases ----------------------------------------------------------------------------------

ALIAS_TIMEOUTS = ("first_token_timeout", "idle_timeout")
"""cllm's timeouts an alias may set (seconds; 0: none)."""


def _is_seconds(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value >= 0


def model_aliases(config: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The ``[models.<alias>]`` tables of the config file (``config``, else the user's file),
    each checked: `ConfigError` names the first bad one."""
    if config is None:
        config = load_config()
    raw = config.get("models", {})
    if not isinstance(raw, dict):
        raise ConfigError("[models] must be a table of aliases")
    aliases: dict[str, dict[str, Any]] = {}
    for alias, params in raw.items():
        if not isinstance(params, dict) or not isinstance(params.get("model"), str):
            raise ConfigError(f'[models.{alias}] needs model = "<provider>/<model>"')
        for option in ALIAS_TIMEOUTS:
            value = params.get(option)
            if value is not None and not _is_seconds(value):
                raise ConfigError(f"[models.{alias}] {option} must be a number of seconds (0: none)")
        aliases[alias] = dict(params)
    return aliases


def alias_call(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """An alias's LiteLLM model and call parameters: ``api_key_env`` becomes ``api_key`` (when
    that variable is set)."""
    options = dict(params)
    model = str(options.pop("model"))
    env_name = options.pop("api_key_env", None)
    if env_name:
        key = os.environ.get(str(env_name))
        if key:
            options["api_key"] = key
    return model, options
