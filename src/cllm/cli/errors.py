"""One clear line for each way a call can fail, with a hint at the fix."""

from __future__ import annotations

import os
import sys
from typing import Any

from cllm.errors import CllmError, ProviderError, StreamInterrupted

__all__ = ["describe_error", "did_you_mean", "key_variable", "unknown_model"]

# The variable LiteLLM reads the key from, for providers whose name does not simply give
# <PROVIDER>_API_KEY.
_KEY_VARIABLES = {
    "azure": "AZURE_API_KEY",
    "azure_ai": "AZURE_AI_API_KEY",
    "bedrock": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "huggingface": "HF_TOKEN",
    "nvidia_nim": "NVIDIA_NIM_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "text-completion-openai": "OPENAI_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "vertex_ai": "GOOGLE_APPLICATION_CREDENTIALS",
    "watsonx": "WATSONX_APIKEY",
}

_SIMPLE_KEYS = {
    "openai",
    "anthropic",
    "groq",
    "mistral",
    "deepseek",
    "openrouter",
    "xai",
    "cohere",
    "cerebras",
}
_INTERACTIVE = {"github_copilot", "vertex_ai", "bedrock", "sagemaker"}

_MAX = 300


def provider_of(model: str) -> str | None:
    """The provider prefix of a model name (``openai/gpt-4o`` → ``openai``), when it has one."""
    if "/" in model:
        return model.split("/", 1)[0]
    if model.startswith(("gpt-", "o1", "o3", "o4", "chatgpt-")):
        return "openai"
    if model.startswith("claude"):
        return "anthropic"
    if model.startswith("gemini"):
        return "gemini"
    return None


def key_variable(provider: str | None, model: str) -> str | None:
    """The environment variable that holds the key for a model, when it can be told."""
    provider = provider or provider_of(model)
    if provider in _KEY_VARIABLES or provider in _SIMPLE_KEYS:
        return _KEY_VARIABLES.get(provider, f"{str(provider).upper()}_API_KEY")
    litellm = sys.modules.get("litellm")
    # Some providers' checks log in over the network (github_copilot): only ask LiteLLM about
    # providers that are named by a key.
    if litellm is not None and provider not in _INTERACTIVE:
        try:
            missing = litellm.validate_environment(model=model).get("missing_keys") or []
        except Exception:
            missing = []
        if missing:
            return " and ".join(str(k) for k in missing)
    if not provider:
        return None
    return _KEY_VARIABLES.get(provider, f"{provider.upper().replace('-', '_')}_API_KEY")


def did_you_mean(model: str) -> list[str]:
    """The known model names closest to ``model``, when LiteLLM is loaded (else none)."""
    litellm = sys.modules.get("litellm")
    if litellm is None or not model:
        return []
    from cllm.cli import catalog

    try:
        models = catalog.chat_models(litellm.model_cost)
        native = catalog.native_names(litellm.model_cost)
    except Exception:
        return []
    names = [name for names in models.values() for name in names]
    aliases = _alias_names()
    return catalog.suggest(model, [*aliases, *names], native | set(aliases))


def _alias_names() -> list[str]:
    from cllm import config

    try:
        return list(config.model_aliases())
    except config.ConfigError:
        return []


def unknown_model(model: str, message: str | None = None) -> str:
    """The line for a model name that names no model: the closest names, or where to look."""
    close = did_you_mean(model)
    hint = (
        f"did you mean {' or '.join(close[:2])}?" if close else "`cllm models` lists the models you can use"
    )
    # LiteLLM's own wording for a name it cannot route says no more than this line.
    detail = f": {message}" if message and "no provider known for model" not in message else ""
    return f"unknown model {model!r}{detail} ({hint})"


def _first_line(message: str) -> str:
    line = " ".join(message.strip().split("\n", 1)[0].split())
    return line if len(line) <= _MAX else line[: _MAX - 1] + "…"


def _is_auth(e: ProviderError) -> bool:
    text = e.message.lower()
    return (
        e.status_code in (401, 403)
        or (e.kind or "").startswith("Authentication")
        or "api key" in text
        or "api_key" in text
    )


def _is_unknown_model(e: ProviderError) -> bool:
    text = e.message.lower()
    return (
        "llm provider not provided" in text
        or "no provider known for model" in text
        or "provider list" in text
        or e.status_code == 404
        or (e.kind or "") == "NotFoundError"
        or ("model" in text and ("not found" in text or "does not exist" in text or "unknown" in text))
    )


def describe_error(e: BaseException, model: str, options: dict[str, Any] | None = None) -> str:
    """The line to show for a failed call (without the ``cllm: `` prefix)."""
    options = options or {}
    if isinstance(e, StreamInterrupted):
        return _first_line(e.message)
    if isinstance(e, ProviderError):
        message = _first_line(e.message)
        if _is_unknown_model(e):
            return unknown_model(model, message)
        if message.startswith("no API key for "):
            return message.replace("(or pass api_key)", "(or pass -o api_key KEY)")
        if _is_auth(e):
            variable = key_variable(e.provider, model)
            where = f"set {variable}" if variable else "set the provider's API key variable"
            if "api_key" in options:
                where = "check the key given with -o api_key"
            elif variable and all(os.environ.get(v) for v in variable.split(" and ")):
                where = f"check {variable}"
            return f"authentication failed for {model}: {message} ({where})"
        kind = (e.kind or "").lower()
        if "connection" in kind or "connect" in message.lower():
            base = options.get("api_base") or os.environ.get("OPENAI_BASE_URL")
            where = f" at {base}" if base else ""
            return f"cannot reach the provider of {model}{where}: {message}"
        # An HTTP status helps with a remote provider; the in-process local model has none to show.
        remote = e.provider != "local" and not model.startswith("local/")
        status = f" ({e.status_code})" if e.status_code and remote else ""
        return f"{model}{status}: {message}"
    if isinstance(e, CllmError):
        return _first_line(str(e))
    return f"{type(e).__name__}: {_first_line(str(e))}"
