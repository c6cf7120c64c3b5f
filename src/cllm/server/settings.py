"""The server's settings: command-line options, the config file, model aliases and secret scrubbing.

Standard library only, so the command line can check its options (and refuse to start) without
importing Starlette or LiteLLM.

The config file is TOML::

    default_model = "fast"              # used when a request names no model

    [server]                            # any command-line option; the command line wins
    host = "127.0.0.1"
    port = 8000
    token = "..."
    cors_origins = ["http://localhost:3000"]
    max_body = 1048576
    max_streams_per_client = 8
    resume_ttl = 300
    db = "/path/to/cllm.db"

    [models.fast]                       # an alias: "model" plus any LiteLLM parameters
    model = "openai/gpt-4o-mini"
    api_base = "http://localhost:4000/v1"
    api_key_env = "MY_PROVIDER_KEY"     # read the key from this environment variable
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cllm.config import ConfigError, load_config

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ModelTable",
    "RequestError",
    "Scrubber",
    "Settings",
    "is_loopback",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MAX_STREAMS = 8
DEFAULT_RESUME_TTL = 300.0
TOKEN_ENV = "CLLM_SERVER_TOKEN"

_SECRET_NAME = re.compile(r"(?:^|_)(?:KEY|TOKEN|SECRET|PASSWORD)(?:$|_)", re.IGNORECASE)
_SECRET_PARAM = re.compile(r"key|token|secret|password|authorization", re.IGNORECASE)
# Shorter values are too likely to occur in ordinary text to be worth hiding.
_MIN_SECRET = 6


class RequestError(Exception):
    """A request the server cannot serve, with the HTTP status to answer with."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Scrubber:
    """Replaces secret values (provider keys, the server token) in text meant for clients or logs."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET}
        # Longest first, so a secret containing another is replaced whole.
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub("***", text)

    @classmethod
    def from_environment(
        cls, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None
    ) -> Scrubber:
        """Every environment value whose name looks like a key, token, secret or password, plus ``extra``."""
        env = os.environ if environ is None else environ
        found = [value for name, value in env.items() if _SECRET_NAME.search(name)]
        return cls([*found, *extra])


@dataclass(frozen=True)
class ModelTable:
    """Model aliases from the config file; any other name goes to LiteLLM as it is."""

    aliases: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default: str | None = None

    def names(self) -> list[str]:
        """The model names to list on ``/v1/models``: the aliases, then the default if not one."""
        names = list(self.aliases)
        if self.default and self.default not in self.aliases:
            names.append(self.default)
        return names

    def choose(self, name: str | None) -> str:
        """``name``, else the config's default model, else cllm's; `RequestError` (400) when none."""
        if not name:
            name = self.default
        if not name:
            from cllm.config import default_model

            name = default_model()
        if not name:
            raise RequestError(
                400, "no model given and no default model configured", code="model_required", param="model"
            )
        return name

    def resolve(self, name: str | None) -> tuple[str, dict[str, Any]]:
        """The LiteLLM model and parameters for a requested model name (None: the default)."""
        name = self.choose(name)
        alias = self.aliases.get(name)
        if alias is None:
            return name, {}
        params = dict(alias)
        model = str(params.pop("model"))
        env_name = params.pop("api_key_env", None)
        if env_name:
            key = os.environ.get(str(env_name))
            if key:
                params["api_key"] = key
        return model, params

    def secrets(self) -> list[str]:
        """Every secret-looking parameter value in the aliases (and keys their ``api_key_env`` name)."""
        found = []
        for params in self.aliases.values():
            for name, value in params.items():
                if name == "api_key_env" and isinstance(value, str):
                    found.append(os.environ.get(value, ""))
                elif _SECRET_PARAM.search(name) and isinstance(value, str):
                    found.append(value)
        return found


@dataclass(frozen=True)
class Settings:
    """Everything `create_app` needs. Build it with `Settings.load` from options and a config file."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    db: Path | None = None
    cors_origins: tuple[str, ...] = ()
    max_body: int = DEFAULT_MAX_BODY
    max_streams_per_client: int = DEFAULT_MAX_STREAMS
    resume_ttl: float = DEFAULT_RESUME_TTL
    models: ModelTable = field(default_factory=ModelTable)
    log_level: str = "info"
    scrubber: Scrubber = field(default_factory=Scrubber)

    def check(self) -> None:
        """Raise `ConfigError` for settings the server must not start with."""
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"refusing to listen on {self.host} without a token: anyone who can reach it could use "
                f"your provider keys. Pass --token (or set {TOKEN_ENV}), or bind 127.0.0.1."
            )
        if self.max_body < 1024:
            raise ConfigError("max_body must be at least 1024 bytes")
        if self.max_streams_per_client < 1:
            raise ConfigError("max_streams_per_client must be at least 1")
        if self.resume_ttl <= 0:
            raise ConfigError("resume_ttl must be positive")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range")

    @classmethod
    def load(
        cls,
        options: Mapping[str, Any] | None = None,
        config_file: str | os.PathLike[str] | None = None,
    ) -> Settings:
        """Settings from command-line ``options`` (None values are unset) over the config file.

        Without ``config_file`` the user's cllm config file is read (for its aliases and
        ``default_model``). Raises `ConfigError` on a bad file or value.
        """
        opts = {k: v for k, v in (options or {}).items() if v is not None}
        if config_file is not None:
            path = Path(config_file).expanduser()
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            config = load_config(path)
        else:
            config = load_config()
        server = config.get("server", {})
        if not isinstance(server, dict):
            raise ConfigError("[server] must be a table")
        merged: dict[str, Any] = {**server, **opts}
        if "token" not in merged and os.environ.get(TOKEN_ENV):
            merged["token"] = os.environ[TOKEN_ENV]
        models = _model_table(config)
        token = _opt_str(merged, "token")
        db = merged.get("db")
        try:
            settings = cls(
                host=str(merged.get("host", DEFAULT_HOST)),
                port=int(merged.get("port", DEFAULT_PORT)),
                token=token,
                db=Path(db).expanduser() if db else None,
                cors_origins=tuple(_str_list(merged.get("cors_origins", ()))),
                max_body=int(merged.get("max_body", DEFAULT_MAX_BODY)),
                max_streams_per_client=int(merged.get("max_streams_per_client", DEFAULT_MAX_STREAMS)),
                resume_ttl=float(merged.get("resume_ttl", DEFAULT_RESUME_TTL)),
                models=models,
                log_level=str(merged.get("log_level", "info")),
                scrubber=Scrubber.from_environment([*models.secrets(), *([token] if token else [])]),
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad server setting: {e}") from e
        settings.check()
        return settings


def _opt_str(values: Mapping[str, Any], name: str) -> str | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string")
    return value


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError("cors_origins must be a list of strings")
    return list(value)


def _model_table(config: Mapping[str, Any]) -> ModelTable:
    raw = config.get("models", {})
    if not isinstance(raw, dict):
        raise ConfigError("[models] must be a table of aliases")
    aliases: dict[str, dict[str, Any]] = {}
    for alias, params in raw.items():
        if not isinstance(params, dict) or not isinstance(params.get("model"), str):
            raise ConfigError(f'[models.{alias}] needs model = "<provider>/<model>"')
        aliases[alias] = dict(params)
    default = config.get("default_model")
    if default is not None and not isinstance(default, str):
        raise ConfigError("default_model must be a string")
    return ModelTable(aliases, default or None)
