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
    allowed_hosts = ["chat.example.org"]
    max_body = 1048576
    max_streams_per_client = 8
    max_streams = 1000
    max_websockets_per_client = 8
    ws_idle_timeout = 300
    first_token_timeout = 300
    idle_timeout = 120
    only_configured_models = false
    resume_ttl = 300
    db = "/path/to/cllm.db"             # or database_url = "postgresql://..." ($CLLM_DATABASE_URL)
    redis_url = "redis://localhost:6379/0"  # streams shared by every process ($CLLM_REDIS_URL)
    workers = 1                         # processes on this machine (more than 1 needs redis_url)
    stream_lease = 10                   # seconds before readers hear a dead producer is gone

    [models.fast]                       # an alias (`cllm.config`: the CLI reads the same table)
    model = "openai/gpt-4o-mini"
    api_base = "http://localhost:4000/v1"
    api_key_env = "MY_PROVIDER_KEY"     # read the key from this environment variable
    first_token_timeout = 900           # cllm's timeouts, per alias (0: none)
    concurrency = 8                     # limits for all clients together (`cllm.Limits`; with
                                        # redis_url, of every process sharing it)
    rpm = 500
    tpm = 200000
    retries = 2                         # retries per model, then each fallback (`cllm.Retries`)
    fallbacks = ["backup", "openai/gpt-4o"]  # aliases or models
    mid_stream = "continue"             # continue | restart | raise (on /v1: continue or raise)
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cllm.config import ALIAS_TIMEOUTS, ConfigError, alias_call, load_config, model_aliases

if TYPE_CHECKING:
    from cllm.limits import LimiterStore, Limits

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
DEFAULT_MAX_TOTAL_STREAMS = 1000
DEFAULT_MAX_WEBSOCKETS = 8
DEFAULT_WS_IDLE_TIMEOUT = 300.0
# Reasoning models may think for minutes before their first token; a provider that has sent
# nothing for that long, or stalls for two minutes mid-answer, is not coming back.
DEFAULT_FIRST_TOKEN_TIMEOUT = 300.0
DEFAULT_IDLE_TIMEOUT = 120.0
TIMEOUTS = ALIAS_TIMEOUTS
"""cllm's timeouts the server bounds by default (``total_timeout`` has no default)."""
TOKEN_ENV = "CLLM_SERVER_TOKEN"
REDIS_URL_ENV = "CLLM_REDIS_URL"
DEFAULT_STREAM_LEASE = 10.0
_DB_URL_SCHEMES = ("postgresql://", "postgres://")

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


_NOT_AVAILABLE = "model {!r} is not available on this server"


@dataclass(frozen=True)
class ModelTable:
    """Model aliases from the config file, which models clients may ask for, and the timeouts
    every call gets. Any other name goes to LiteLLM as it is, unless ``only_configured``.

    ``local/...`` models name files on the server's disk, so a client may use one only when the
    config names it (an alias's model, or the default model).
    """

    aliases: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default: str | None = None
    only_configured: bool = False
    timeouts: Mapping[str, float] = field(
        default_factory=lambda: {
            "first_token_timeout": DEFAULT_FIRST_TOKEN_TIMEOUT,
            "idle_timeout": DEFAULT_IDLE_TIMEOUT,
        }
    )
    #: Each alias's `cllm.Limits` (from its ``concurrency``, ``rpm``, ``tpm``), shared by every
    #: request to that alias in this process.
    limits: Mapping[str, Any] = field(default_factory=dict)

    def with_limits(self, store: LimiterStore, *, every_model: bool = False) -> ModelTable:
        """This table with a `cllm.Limits` on ``store`` for the aliases that set limits.

        An alias with ``concurrency``, ``rpm`` or ``tpm`` gets those. With ``every_model``, every
        other model gets a `Limits` of no limits, so that a provider's 429 with ``Retry-After``
        still holds back the calls to that model in every process sharing ``store``. Names are
        fixed, so processes share budgets.
        """
        from dataclasses import replace

        from cllm.limits import Limits

        built: dict[str, Limits] = {"": Limits(name="serve", store=store)} if every_model else {}
        for alias, limits in self.limits.items():
            if alias:
                built[alias] = Limits(
                    limits.concurrency, limits.rpm, limits.tpm, name=limits.name, store=store
                )
        return replace(self, limits=built)

    def default_name(self) -> str | None:
        """The config's default model, else cllm's (``$CLLM_MODEL``, its config, the local model)."""
        if self.default:
            return self.default
        from cllm.config import default_model

        return default_model()

    def names(self) -> list[str]:
        """The model names to list on ``/v1/models``: the aliases, then the default if not one."""
        names = list(self.aliases)
        default = self.default_name()
        if default and default not in self.aliases:
            names.append(default)
        return names

    def choose(self, name: str | None) -> str:
        """``name``, else the default model; `RequestError` when there is none (400) or a client
        may not use it (404, the same answer whether or not such a file or model exists)."""
        default = self.default_name()
        if not name:
            name = default
        if not name:
            raise RequestError(
                400, "no model given and no default model configured", code="model_required", param="model"
            )
        if not self._available(name, default):
            raise RequestError(404, _NOT_AVAILABLE.format(name), code="model_not_found", param="model")
        return name

    def _available(self, name: str, default: str | None) -> bool:
        if name in self.aliases or name == default:
            return True
        if self.only_configured:
            return False
        if _is_local(name):
            return any(str(alias.get("model")) == name for alias in self.aliases.values())
        return True

    def resolve(self, name: str | None) -> tuple[str, dict[str, Any]]:
        """The LiteLLM model and the alias's parameters for a requested model name (None: the default)."""
        name = self.choose(name)
        alias = self.aliases.get(name)
        if alias is None:
            return name, {}
        return alias_call(alias)

    def call(self, name: str | None, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The LiteLLM model and every keyword for one call: the alias's parameters, then the
        client's ``options``, with cllm's timeouts bounded.

        Each timeout is the alias's value, else the server's; a client may ask for a shorter one,
        never a longer one. A value of 0 (server or alias) means no bound.
        """
        chosen = self.choose(name)
        model, params = self.resolve(chosen)
        for key in LIMIT_KEYS:
            params.pop(key, None)
        kwargs = {**params, **client_retry_options(options)}
        if kwargs.get("fallbacks"):
            kwargs["fallbacks"] = [self._fallback(f) for f in _as_list(kwargs["fallbacks"])]
        limits = self.limits.get(chosen) or self.limits.get("")
        if limits is not None:
            kwargs["limits"] = limits
        for option in TIMEOUTS:
            limit = float(params.get(option, self.timeouts.get(option, 0)))
            asked = _seconds(options, option)
            # A client may shorten the bound, not lengthen it.
            bound = asked if limit <= 0 else limit if asked is None else min(asked, limit)
            if bound is None:
                kwargs.pop(option, None)
            else:
                kwargs[option] = bound
        return model, kwargs

    def _fallback(self, fallback: Any) -> Any:
        """A fallback named by an alias becomes the alias's model and parameters; any other name
        must be one a client may use (`choose`)."""
        if not isinstance(fallback, str):
            return fallback  # {"model": ..., options} from the config file
        self.choose(fallback)
        if fallback not in self.aliases:
            return fallback
        model, params = self.resolve(fallback)
        for key in (*LIMIT_KEYS, *RETRY_KEYS):
            params.pop(key, None)
        return {"model": model, **params}

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


def _is_local(model: str) -> bool:
    provider, slash, _ = model.partition("/")
    return bool(slash) and provider.strip().lower() == "local"


def _seconds(options: Mapping[str, Any], name: str) -> float | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise RequestError(400, f"{name!r} must be a positive number of seconds", param=name)
    return float(value)


@dataclass(frozen=True)
class Settings:
    """Everything `create_app` needs. Build it with `Settings.load` from options and a config file."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    db: Path | None = None
    database_url: str | None = None
    redis_url: str | None = None
    workers: int = 1
    stream_lease: float = DEFAULT_STREAM_LEASE
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_body: int = DEFAULT_MAX_BODY
    max_streams_per_client: int = DEFAULT_MAX_STREAMS
    max_streams: int = DEFAULT_MAX_TOTAL_STREAMS
    max_websockets_per_client: int = DEFAULT_MAX_WEBSOCKETS
    ws_idle_timeout: float = DEFAULT_WS_IDLE_TIMEOUT
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
        for name in ("max_streams_per_client", "max_streams", "max_websockets_per_client"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if self.workers > 1 and not self.redis_url:
            raise ConfigError(
                f"--workers {self.workers} needs --redis URL (or [server] redis_url, or {REDIS_URL_ENV}): "
                "without Redis each process would keep its own streams, and a client sent to another "
                "process could not resume or stop them"
            )
        if self.database_url is not None and not self.database_url.startswith(_DB_URL_SCHEMES):
            raise ConfigError("database_url must be a postgresql:// URL")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("redis_url must be a redis://, rediss:// or unix:// URL")
        for name in ("resume_ttl", "ws_idle_timeout", "stream_lease"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        for name, value in self.models.timeouts.items():
            if value < 0:
                raise ConfigError(f"{name} must be positive (or 0: no timeout)")
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
        token = _opt_str(merged, "token")
        db = merged.get("db")
        database_url = _opt_str(merged, "database_url")
        if isinstance(db, str) and db.startswith(_DB_URL_SCHEMES):
            database_url, db = db, None  # --db takes a URL too
        elif db:
            database_url = None  # an explicit file wins over the environment
        if database_url is None and not db:
            database_url = os.environ.get("CLLM_DATABASE_URL") or None
        redis_url = _opt_str(merged, "redis_url") or os.environ.get(REDIS_URL_ENV) or None
        try:
            models = _model_table(
                config,
                only_configured=_bool(merged.get("only_configured_models", False), "only_configured_models"),
                timeouts={
                    "first_token_timeout": float(
                        merged.get("first_token_timeout", DEFAULT_FIRST_TOKEN_TIMEOUT)
                    ),
                    "idle_timeout": float(merged.get("idle_timeout", DEFAULT_IDLE_TIMEOUT)),
                },
            )
            settings = cls(
                host=str(merged.get("host", DEFAULT_HOST)),
                port=int(merged.get("port", DEFAULT_PORT)),
                token=token,
                db=Path(db).expanduser() if db else None,
                database_url=database_url,
                redis_url=redis_url,
                workers=int(merged.get("workers", 1)),
                stream_lease=float(merged.get("stream_lease", DEFAULT_STREAM_LEASE)),
                cors_origins=tuple(_str_list(merged.get("cors_origins", ()), "cors_origins")),
                allowed_hosts=tuple(_str_list(merged.get("allowed_hosts", ()), "allowed_hosts")),
                max_body=int(merged.get("max_body", DEFAULT_MAX_BODY)),
                max_streams_per_client=int(merged.get("max_streams_per_client", DEFAULT_MAX_STREAMS)),
                max_streams=int(merged.get("max_streams", DEFAULT_MAX_TOTAL_STREAMS)),
                max_websockets_per_client=int(
                    merged.get("max_websockets_per_client", DEFAULT_MAX_WEBSOCKETS)
                ),
                ws_idle_timeout=float(merged.get("ws_idle_timeout", DEFAULT_WS_IDLE_TIMEOUT)),
                resume_ttl=float(merged.get("resume_ttl", DEFAULT_RESUME_TTL)),
                models=models,
                log_level=str(merged.get("log_level", "info")),
                scrubber=Scrubber.from_environment(
                    [*models.secrets(), *([token] if token else []), *_url_passwords(database_url, redis_url)]
                ),
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad server setting: {e}") from e
        settings.check()
        return settings


def _url_passwords(*urls: str | None) -> list[str]:
    """The passwords in service URLs, so that no message or log repeats them."""
    from urllib.parse import urlsplit

    found = []
    for url in urls:
        if url:
            try:
                password = urlsplit(url).password
            except ValueError:
                password = None
            if password:
                found.append(password)
    return found


def _opt_str(values: Mapping[str, Any], name: str) -> str | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string")
    return value


def _str_list(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings")
    return list(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false")
    return value


def _model_table(
    config: Mapping[str, Any], *, only_configured: bool, timeouts: Mapping[str, float]
) -> ModelTable:
    aliases = model_aliases(config)
    for alias, params in aliases.items():
        _check_retry_options(alias, params)
    default = config.get("default_model")
    if default is not None and not isinstance(default, str):
        raise ConfigError("default_model must be a string")
    limits = {alias: found for alias, params in aliases.items() if (found := alias_limits(alias, params))}
    return ModelTable(aliases, default or None, only_configured, dict(timeouts), limits)


RETRY_KEYS = ("retries", "fallbacks", "mid_stream")
"""Per alias, or per request: `cllm.retry`'s options."""
MAX_CLIENT_RETRIES = 5


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def client_retry_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A client's options with its ``retries``, ``fallbacks`` and ``mid_stream`` checked: a count
    of at most `MAX_CLIENT_RETRIES`, model names, one of the modes; `RequestError` (400) otherwise."""
    out = dict(options)
    retries = out.get("retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_CLIENT_RETRIES
    ):
        raise RequestError(
            400, f"retries must be a whole number from 0 to {MAX_CLIENT_RETRIES}", param="retries"
        )
    fallbacks = out.get("fallbacks")
    if fallbacks is not None and not (
        isinstance(fallbacks, list) and all(isinstance(f, str) and f for f in fallbacks)
    ):
        raise RequestError(400, "fallbacks must be a list of model names", param="fallbacks")
    mode = out.get("mid_stream")
    if mode is not None and mode not in ("continue", "restart", "raise"):
        raise RequestError(400, "mid_stream must be continue, restart or raise", param="mid_stream")
    return out


def _check_retry_options(alias: str, params: Mapping[str, Any]) -> None:
    from cllm.retry import take_options

    try:
        take_options({key: params[key] for key in RETRY_KEYS if key in params})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[models.{alias}] {e}") from e


LIMIT_KEYS = ("concurrency", "rpm", "tpm")
"""An alias's limits, applied to all clients together (never passed on to LiteLLM)."""


def alias_limits(alias: str, params: Mapping[str, Any]) -> Any:
    """The `cllm.Limits` an alias's ``concurrency``, ``rpm`` and ``tpm`` give (None without any)."""
    values = {key: params[key] for key in LIMIT_KEYS if params.get(key) is not None}
    if not values:
        return None
    from cllm.limits import Limits

    try:
        return Limits(**values, name=f"alias:{alias}")
    except ValueError as e:
        raise ConfigError(f"[models.{alias}] {e}") from e
