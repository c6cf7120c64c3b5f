"""The models one can name: LiteLLM's price table by provider, which providers are set up on this
machine (from the environment only, no network), how well a name matches a query, and the closest
names to a mistyped one."""

from __future__ import annotations

import difflib
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "CHAT_MODES",
    "chat_models",
    "match_rank",
    "native_names",
    "preference",
    "provider_ready",
    "ready_providers",
    "suggest",
]

CHAT_MODES = ("chat", "responses")

# Providers configured by something other than <PROVIDER>_...: the variables that show they are.
_PROVIDER_VARIABLES = {
    "azure": ("AZURE_API_KEY", "AZURE_AD_TOKEN"),
    "azure_ai": ("AZURE_AI_API_KEY",),
    "bedrock": ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"),
    "bedrock_converse": ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "huggingface": ("HF_TOKEN", "HUGGINGFACE_API_KEY"),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHER_API_KEY"),
    "perplexity": ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    "vertex_ai": ("VERTEXAI_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"),
    "watsonx": ("WATSONX_APIKEY", "WATSONX_API_KEY", "WATSONX_TOKEN"),
}
# Their checks may log in over the network: decided by the variables above only.
_NO_LITELLM_CHECK = ("github_copilot", "vertex_ai", "bedrock", "sagemaker")


def chat_models(model_cost: Mapping[str, Any]) -> dict[str, list[str]]:
    """LiteLLM's price table as provider → sorted full model names (``provider/name``), chat models only."""
    grouped: dict[str, set[str]] = defaultdict(set)
    for key, info in model_cost.items():
        if not isinstance(info, dict) or info.get("mode") not in CHAT_MODES:
            continue
        provider = info.get("litellm_provider")
        if not isinstance(provider, str) or not provider:
            continue
        provider = _callable_provider(provider)
        name = key if key.startswith(f"{provider}/") else f"{provider}/{key}"
        grouped[provider].add(name)
    return {provider: sorted(names) for provider, names in sorted(grouped.items())}


def _callable_provider(provider: str) -> str:
    # The price table files Vertex AI's partner models under vertex_ai-anthropic_models and the
    # like; they are called as vertex_ai/<model>.
    return "vertex_ai" if provider.startswith("vertex_ai-") else provider


# Providers that serve other makers' models: a model's maker is suggested before them.
_RESELLERS = frozenset(
    {
        "azure",
        "azure_ai",
        "bedrock",
        "bedrock_converse",
        "vertex_ai",
        "openrouter",
        "together_ai",
        "deepinfra",
        "fireworks_ai",
        "github",
        "github_copilot",
        "snowflake",
        "oci",
        "sagemaker",
        "watsonx",
    }
)


def preference(
    name: str, native: set[str] | frozenset[str] = frozenset()
) -> tuple[bool, bool, int, int, str]:
    """A sort key that puts a model's maker first among the names of one model."""
    provider = name.split("/", 1)[0]
    return (provider in _RESELLERS, name not in native, name.count("/"), len(name), name)


def native_names(model_cost: Mapping[str, Any]) -> set[str]:
    """The full names of models the price table lists under their bare name (``gpt-4o`` for
    openai): the provider's own models, where resellers list theirs as ``azure/gpt-4o``."""
    out = set()
    for key, info in model_cost.items():
        if isinstance(info, dict) and "/" not in key and isinstance(info.get("litellm_provider"), str):
            out.add(f"{_callable_provider(info['litellm_provider'])}/{key}")
    return out


def _family(provider: str) -> str:
    # vertex_ai-anthropic_models and the like are set up like vertex_ai itself.
    return provider.split("-", 1)[0]


def _prefixes(provider: str) -> set[str]:
    upper = provider.upper().replace("-", "_")
    return {upper + "_", upper.replace("_", "") + "_"}


def provider_ready(
    provider: str,
    example_model: str,
    litellm: Any = None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Whether the environment sets this provider up: a variable of its own is set (a key, a
    base URL) and, when LiteLLM can tell without a network call, no key it needs is missing."""
    env = os.environ if environ is None else environ
    family = _family(provider)
    known = _PROVIDER_VARIABLES.get(family)
    if known is not None:
        configured = any(env.get(name) for name in known)
    else:
        prefixes = _prefixes(family)
        configured = any(value and name.startswith(tuple(prefixes)) for name, value in env.items())
    if not configured:
        return False
    if litellm is None or family in _NO_LITELLM_CHECK:
        return True
    try:
        missing = litellm.validate_environment(model=example_model).get("missing_keys") or []
    except Exception:
        return True  # LiteLLM cannot tell: the variables say it is set up
    return not missing


def ready_providers(models: Mapping[str, list[str]], litellm: Any = None) -> list[str]:
    """The providers of ``models`` that the environment sets up (see `provider_ready`)."""
    return [
        provider
        for provider, names in models.items()
        if names and provider_ready(provider, names[0], litellm)
    ]


def _bare(name: str) -> str:
    return name.split("/", 1)[1] if "/" in name else name


def match_rank(name: str, query: str) -> int | None:
    """How well a full model name matches a query (lower is better; None: no match).

    0: the name or its model part is the query (``openai/gpt-4o`` for ``gpt-4o``); 1: its last
    part is (``azure/eu/gpt-4o``); 2: it starts with the query; 3: it contains it.
    """
    query = query.lower()
    lowered = name.lower()
    if query not in lowered:
        return None
    if lowered == query or _bare(lowered) == query:
        return 0
    if lowered.rsplit("/", 1)[-1] == query:
        return 1
    if _bare(lowered).startswith(query) or lowered.startswith(query):
        return 2
    return 3


def suggest(
    name: str, names: Iterable[str], native: set[str] | frozenset[str] = frozenset(), n: int = 3
) -> list[str]:
    """The known model names closest to a mistyped one (``gpt4o`` → ``openai/gpt-4o``), the
    provider's own name (in ``native``) before resellers of the same model."""
    by_bare: dict[str, list[str]] = defaultdict(list)
    full: dict[str, str] = {}
    for candidate in names:
        full[candidate.lower()] = candidate
        by_bare[_bare(candidate).lower()].append(candidate)
    wanted = name.lower()
    pool = list(full) if "/" in wanted else list(by_bare)
    close = difflib.get_close_matches(wanted, pool, n=n, cutoff=0.75)
    out: list[str] = []
    for match in close:
        if "/" in wanted:
            out.append(full[match])
        else:
            # One suggestion per model: the provider's own name, else the shortest (not a region's).
            out.append(min(by_bare[match], key=lambda c: preference(c, native)))
    return list(dict.fromkeys(out))[:n]
