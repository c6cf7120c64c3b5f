"""``cllm serve``: the command line of the server.

Only the standard library is imported at module level: ``cllm --help`` must not pay for Starlette,
uvicorn or LiteLLM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from typing import Any

__all__ = ["configure_parser", "run"]

EPILOG = """\
Model names go to LiteLLM as they are (provider keys come from the environment: OPENAI_API_KEY...);
a config file can map aliases to LiteLLM parameters. Binding anything but a loopback address
requires --token. Endpoints: POST /v1/chat/completions, GET /v1/models, POST /api/chat,
GET|DELETE /api/streams/{id}, GET /api/conversations[/{id}], WS /ws, GET / (web chat), GET /healthz.
Several processes or machines serve as one with --redis (streams) and --db postgresql://... (conversations).
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``cllm serve``'s options to ``parser``."""
    parser.description = "Serve cllm over HTTP: SSE, WebSocket, an OpenAI-compatible API and a web chat page."
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--token",
        help="require 'Authorization: Bearer TOKEN' on every endpoint but /healthz "
        "(or set CLLM_SERVER_TOKEN)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file with [models.<alias>] and [server] settings"
    )
    parser.add_argument(
        "--db",
        metavar="PATH|URL",
        help="conversation database: a SQLite file, or postgresql://... (default: $CLLM_DATABASE_URL, "
        "else cllm's own file)",
    )
    parser.add_argument(
        "--redis",
        dest="redis_url",
        metavar="URL",
        help="keep resumable streams in Redis (redis://host:6379/0, or $CLLM_REDIS_URL), so that every "
        "server process can resume or stop any stream",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N server processes on this machine (default 1; more than 1 needs --redis)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        metavar="ORIGIN",
        help="allow cross-origin requests from ORIGIN (repeatable; CORS is off by default)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="also answer to this Host name, e.g. behind a proxy (repeatable; '*': any). "
        "localhost, 127.0.0.1, ::1 and the bound address always work",
    )
    parser.add_argument("--max-body", type=int, metavar="BYTES", help="largest request body (default 1 MiB)")
    parser.add_argument(
        "--max-streams-per-client",
        type=int,
        metavar="N",
        help="concurrent streams per client address (default 8)",
    )
    parser.add_argument(
        "--max-streams", type=int, metavar="N", help="concurrent streams in all; more get 503 (default 1000)"
    )
    parser.add_argument(
        "--max-websockets-per-client",
        type=int,
        metavar="N",
        help="open WebSockets per client address (default 8)",
    )
    parser.add_argument(
        "--ws-idle-timeout",
        type=float,
        metavar="SECONDS",
        help="close a WebSocket that has received nothing and streamed nothing for this long (default 300)",
    )
    parser.add_argument(
        "--first-token-timeout",
        type=float,
        metavar="SECONDS",
        help="fail a reply with no output after this long (default 300; 0: never)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="fail a reply whose provider sends nothing for this long (default 120; 0: never)",
    )
    parser.add_argument(
        "--only-configured-models",
        action="store_true",
        default=None,
        help="serve only the config's aliases and default model",
    )
    parser.add_argument(
        "--resume-ttl",
        type=float,
        metavar="SECONDS",
        help="how long a stream stays resumable after it ends, and runs on without a reader (default 300)",
    )
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])


class _ScrubFilter(logging.Filter):
    """Keeps secrets (the token in a WebSocket URL, keys in messages) out of the logs."""

    def __init__(self, scrub: object) -> None:
        super().__init__()
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = re.sub(r"([?&]token=)[^&\s\"]+", r"\1***", self.scrub(message))  # type: ignore[operator]
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def _filter_logs(settings: Any) -> None:
    scrub_filter = _ScrubFilter(settings.scrubber)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "cllm.server"):
        logging.getLogger(name).addFilter(scrub_filter)


# How a worker process learns the options `cllm serve` was given (it is started afresh by uvicorn).
_WORKER_ENV = "CLLM_SERVE_WORKER"


def _run_workers(settings: Any, options: dict[str, Any], config_file: str | None) -> int:
    """Run ``settings.workers`` processes sharing one listening socket (uvicorn's supervisor)."""
    import uvicorn

    os.environ[_WORKER_ENV] = json.dumps({"options": options, "config": config_file})
    _filter_logs(settings)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(
            "cllm.server.command:worker_app",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            ws_max_size=settings.max_body,
            timeout_graceful_shutdown=3,
        )
    return 0


def worker_app() -> Any:
    """The app of one ``--workers`` process, built from the options its supervisor was given."""
    from cllm.server.app import create_app
    from cllm.server.settings import Settings

    given = json.loads(os.environ[_WORKER_ENV])
    settings = Settings.load(given["options"], given["config"])
    _filter_logs(settings)
    return create_app(settings, tune_gc=True)


def run(args: argparse.Namespace) -> int:
    """Start the server; return the exit status."""
    from cllm.config import ConfigError
    from cllm.server.settings import Settings

    options = {
        name: getattr(args, name, None)
        for name in (
            "host",
            "port",
            "token",
            "db",
            "redis_url",
            "workers",
            "cors_origins",
            "allowed_hosts",
            "max_body",
            "max_streams_per_client",
            "max_streams",
            "max_websockets_per_client",
            "ws_idle_timeout",
            "first_token_timeout",
            "idle_timeout",
            "only_configured_models",
            "resume_ttl",
            "log_level",
        )
    }
    try:
        settings = Settings.load(options, getattr(args, "config", None))
    except ConfigError as e:
        print(f"cllm serve: {e}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from cllm.server.app import create_app
    except ImportError as e:
        print(
            f"cllm serve: {e.name or e} is missing; install the server extra: pip install 'cllm[server]'",
            file=sys.stderr,
        )
        return 1
    from cllm.store import StoreError

    if settings.workers > 1:
        return _run_workers(settings, options, getattr(args, "config", None))
    try:
        app = create_app(settings, tune_gc=True)
    except StoreError as e:
        print(f"cllm serve: {e}", file=sys.stderr)
        return 1
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=settings.max_body,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    _filter_logs(settings)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started or server.should_exit else 1
