"""The ``cllm`` command: stream a prompt's answer, chat, read the logs, list models, serve.

Start-up matters: only the standard library is imported here. The commands that call a model
start importing LiteLLM in a background thread as soon as the arguments are parsed, so the import
overlaps reading stdin and opening the log database; ``cllm --help`` and ``cllm logs`` never
import it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import traceback
from collections.abc import Sequence

from cllm.cli.args import build_parser, split_command

__all__ = ["main", "quiet_litellm_logs"]


def _import_litellm_early() -> None:
    def work() -> None:
        from cllm import _provider

        with contextlib.suppress(Exception):  # the call that needs it reports the problem
            _provider.litellm()

    threading.Thread(target=work, name="cllm-import", daemon=True).start()


# LiteLLM logs each failed attempt (fallbacks, retries) with its traceback, through handlers of its
# own on stderr; its modules' loggers would reach Python's last-resort handler. The failure that
# matters is reported once, in one line; --debug shows the rest.
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "LiteLLM Proxy Stdout")


def quiet_litellm_logs() -> None:
    """Keep LiteLLM's log records (and their tracebacks) off stderr, before or after its import."""
    for name in _LITELLM_LOGGERS:
        logging.getLogger(name).disabled = True
    package = logging.getLogger("litellm")
    package.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in package.handlers):
        package.addHandler(logging.NullHandler())


def _dispatch(command: str | None, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if command is None:
        if args.version:
            from cllm import __version__

            print(f"cllm {__version__}")
            return 0
        if not args.prompt and sys.stdin is not None and sys.stdin.isatty():
            parser.print_help()
            return 0
        from cllm.cli import prompt

        return prompt.run(args)
    if command == "chat":
        from cllm.cli import chat

        return chat.run(args)
    if command == "logs":
        from cllm.cli import logs

        return logs.run(args)
    if command == "models":
        from cllm.cli import models

        return models.run(args)
    if command == "batch":
        from cllm.cli import batch

        return batch.run(args)
    if command == "file":
        from cllm.cli import file

        return file.run(args)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        from cllm.server.command import run
    except ImportError as e:
        print(f"cllm: `cllm serve` needs the server extra: pip install 'cllm[server]' ({e})", file=sys.stderr)
        return 1
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from cllm.cli.display import OutputClosed, silence
    from cllm.cli.session import CliError

    command, rest = split_command(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command)
    args = parser.parse_args(rest)
    debug = bool(getattr(args, "debug", False))
    if command in (None, "chat", "models", "batch", "file") and not debug:
        quiet_litellm_logs()
    if command in (None, "chat", "batch", "file") and not getattr(args, "version", False):
        _import_litellm_early()
    try:
        return _dispatch(command, args, parser)
    except CliError as e:
        print(f"cllm: {e.message}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("\ncllm: interrupted", file=sys.stderr)
        return 130
    except (OutputClosed, BrokenPipeError):
        silence(sys.stdout)
        return 0
    except Exception as e:
        if debug:
            traceback.print_exc()
        else:
            print(f"cllm: error: {type(e).__name__}: {e} (run with --debug for details)", file=sys.stderr)
        return 1
