"""``cllm models``: the chat models LiteLLM knows, by provider, the local model, and the default."""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from typing import Any

from cllm import config, local
from cllm.cli.session import CliError

__all__ = ["chat_models", "run"]

CHAT_MODES = ("chat", "responses")


def chat_models(model_cost: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """LiteLLM's price table as provider → sorted full model names (``provider/name``), chat models only."""
    grouped: dict[str, set[str]] = defaultdict(set)
    for key, info in model_cost.items():
        if not isinstance(info, dict) or info.get("mode") not in CHAT_MODES:
            continue
        provider = info.get("litellm_provider")
        if not isinstance(provider, str) or not provider:
            continue
        name = key if key.startswith(f"{provider}/") else f"{provider}/{key}"
        grouped[provider].add(name)
    return {provider: sorted(names) for provider, names in sorted(grouped.items())}


def _default(args: argparse.Namespace) -> int:
    try:
        if args.unset:
            config.set_config_value("default_model", None)
            print("default model unset", file=sys.stderr)
        elif args.name:
            config.set_config_value("default_model", args.name)
            print(args.name)
            if os.environ.get("CLLM_MODEL"):
                print(
                    f"cllm: note: CLLM_MODEL={os.environ['CLLM_MODEL']} still takes precedence",
                    file=sys.stderr,
                )
            return 0
        model, source = config.default_model_source()
    except config.ConfigError as e:
        raise CliError(str(e)) from e
    if model is None:
        print("no default model: set one with `cllm models default NAME` or CLLM_MODEL", file=sys.stderr)
        return 1
    print(model)
    print(f"({source})", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """List models (``-q`` filters by name), or show/set the default."""
    if args.action == "default":
        return _default(args)
    from cllm import _provider

    lib = _provider.litellm()
    query = (args.query or "").lower()
    try:
        default = config.default_model()
    except config.ConfigError:
        default = None
    lines: list[str] = []
    mark = "  (default)"
    if not query or query in local.DEFAULT_MODEL:
        state = "available" if local.is_available() else "not installed: pip install 'cllm[local]'"
        lines += [
            "local",
            f"  {local.DEFAULT_MODEL}  ({state}){mark if default == local.DEFAULT_MODEL else ''}",
            "",
        ]
    for provider, names in chat_models(lib.model_cost).items():
        shown = [n for n in names if query in n.lower()] if query else names
        if not shown:
            continue
        lines.append(f"{provider} ({len(shown)})")
        lines += [f"  {name}{mark if name == default else ''}" for name in shown]
        lines.append("")
    if not lines:
        print(f"no model matches {args.query!r}", file=sys.stderr)
        return 1
    sys.stdout.write("\n".join(lines))
    if default is None:
        print("no default model: choose one with `cllm models default NAME`", file=sys.stderr)
    return 0
