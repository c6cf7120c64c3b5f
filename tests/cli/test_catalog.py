"""The model catalog's pure parts: matching, ordering, suggestions, which providers are set up."""

from __future__ import annotations

from typing import Any

from cllm._provider import drop_boilerplate
from cllm.cli import catalog

TABLE: dict[str, dict[str, Any]] = {
    "gpt-4o": {"mode": "chat", "litellm_provider": "openai"},
    "gpt-4o-mini": {"mode": "chat", "litellm_provider": "openai"},
    "azure/gpt-4o": {"mode": "chat", "litellm_provider": "azure"},
    "azure/eu/gpt-4o": {"mode": "chat", "litellm_provider": "azure"},
    "text-embedding-3-small": {"mode": "embedding", "litellm_provider": "openai"},
    "claude-haiku-4-5": {"mode": "chat", "litellm_provider": "anthropic"},
    "gemini-2.5-flash": {"mode": "chat", "litellm_provider": "vertex_ai-language-models"},
    "gemini/gemini-2.5-flash": {"mode": "chat", "litellm_provider": "gemini"},
}


def test_chat_models_by_provider_with_callable_names() -> None:
    models = catalog.chat_models(TABLE)
    assert models["openai"] == ["openai/gpt-4o", "openai/gpt-4o-mini"]  # no embedding model
    assert models["azure"] == ["azure/eu/gpt-4o", "azure/gpt-4o"]
    assert models["vertex_ai"] == ["vertex_ai/gemini-2.5-flash"]  # not vertex_ai-language-models/...


def test_the_exact_match_of_the_models_maker_comes_first() -> None:
    native = catalog.native_names(TABLE)
    names = [n for names in catalog.chat_models(TABLE).values() for n in names]
    ranked = sorted(
        (n for n in names if catalog.match_rank(n, "gpt-4o") is not None),
        key=lambda n: (catalog.match_rank(n, "gpt-4o"), catalog.preference(n, native)),
    )
    assert ranked == ["openai/gpt-4o", "azure/gpt-4o", "azure/eu/gpt-4o", "openai/gpt-4o-mini"]
    assert catalog.match_rank("anthropic/claude-haiku-4-5", "gpt") is None


def test_suggestions_for_a_typo_name_the_maker() -> None:
    native = catalog.native_names(TABLE)
    names = [n for names in catalog.chat_models(TABLE).values() for n in names]
    assert catalog.suggest("gpt4o", names, native)[0] == "openai/gpt-4o"
    assert catalog.suggest("gemini-2.5-flsh", names, native)[0] == "gemini/gemini-2.5-flash"
    assert catalog.suggest("anthropic/claude-haiku-45", names, native) == ["anthropic/claude-haiku-4-5"]
    assert catalog.suggest("nonsense/xyz", names, native) == []


class _LiteLLM:
    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        self.asked: list[str] = []

    def validate_environment(self, model: str) -> dict[str, Any]:
        self.asked.append(model)
        return {"keys_in_environment": not self.missing, "missing_keys": self.missing}


def test_a_provider_is_ready_when_its_variables_are_set_and_litellm_misses_no_key() -> None:
    ok, missing = _LiteLLM([]), _LiteLLM(["AZURE_API_BASE"])
    env = {"OPENAI_API_KEY": "sk", "TOGETHERAI_API_KEY": "t", "AZURE_API_KEY": "a", "HF_TOKEN": "h"}
    assert catalog.provider_ready("openai", "openai/gpt-4o", ok, env)
    assert catalog.provider_ready("together_ai", "together_ai/x", ok, env)  # TOGETHERAI_, no underscore
    assert catalog.provider_ready("huggingface", "huggingface/x", ok, env)
    assert not catalog.provider_ready("azure", "azure/gpt-4o", missing, env)  # LiteLLM needs more
    assert not catalog.provider_ready("anthropic", "anthropic/claude", ok, env)
    # A provider that needs no key (LiteLLM finds nothing missing) still needs a variable of its own.
    assert not catalog.provider_ready("ollama", "ollama/llama3", ok, env)
    assert catalog.provider_ready("ollama", "ollama/llama3", ok, {"OLLAMA_API_BASE": "http://h:11434"})
    # Providers whose check may go over the network are never asked.
    vertex = _LiteLLM([])
    assert catalog.provider_ready("vertex_ai", "vertex_ai/g", vertex, {"VERTEXAI_PROJECT": "p"})
    assert vertex.asked == []


def test_litellms_boilerplate_is_dropped_and_the_providers_words_kept() -> None:
    assert (
        drop_boilerplate(
            "Connection error.. All fallback attempts failed. Enable verbose logging with "
            "`litellm.set_verbose=True` for details."
        )
        == "Connection error."
    )
    assert drop_boilerplate(
        "LLM Provider NOT provided. Pass in the LLM provider you are trying to call. You passed "
        "model=gpt4o\n Pass model as E.g. For 'Huggingface' inference endpoints pass in "
        "`completion(model='huggingface/starcoder',..)` Learn more: https://docs.litellm.ai/docs/providers"
    ) == ("no provider known for model 'gpt4o': name it as provider/model (openai/gpt-4o)")
    assert (
        drop_boilerplate(
            "The model `gpt-5x` does not exist. Received Model Group=gpt-5x\n"
            "Available Model Group Fallbacks=None LiteLLM Retried: 2 times, LiteLLM Max Retries: 3"
        )
        == "The model `gpt-5x` does not exist."
    )
    assert drop_boilerplate("Rate limit reached for gpt-4o. Try again in 20s.") == (
        "Rate limit reached for gpt-4o. Try again in 20s."
    )
