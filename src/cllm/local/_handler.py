"""The ``local`` provider for LiteLLM: ``local/gemma-3-270m`` and ``local/<path-to.gguf>``.

`register` adds it to ``litellm.custom_provider_map`` when cllm loads LiteLLM. Importing this
module loads neither llama.cpp nor a model; the first request does.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

from cllm.local._generate import Chunk, Collected, Generation, astream, collect
from cllm.local._model import load

__all__ = ["PROVIDER", "LocalHandler", "register"]

PROVIDER = "local"


class LocalHandler:
    """LiteLLM's four chat entry points for local models; mixed into ``litellm.CustomLLM`` by `register`.

    LiteLLM calls `acompletion` and `astreaming` in a worker thread, so the model is loaded and the
    prompt checked there, and bad input fails the call itself rather than the first chunk.
    """

    _litellm: ModuleType

    def streaming(
        self, model: str, messages: Sequence[Mapping[str, Any]], optional_params: Mapping[str, Any], **_: Any
    ) -> Iterator[Chunk]:
        return _prepare(model, messages, optional_params).chunks()

    def astreaming(
        self, model: str, messages: Sequence[Mapping[str, Any]], optional_params: Mapping[str, Any], **_: Any
    ) -> Any:
        return astream(_prepare(model, messages, optional_params))

    def completion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        optional_params: Mapping[str, Any],
        model_response: Any,
        **_: Any,
    ) -> Any:
        collected = collect(_prepare(model, messages, optional_params).chunks())
        return self._fill(model_response, collected)

    def acompletion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        optional_params: Mapping[str, Any],
        model_response: Any,
        **_: Any,
    ) -> Coroutine[Any, Any, Any]:
        return self._acollect(_prepare(model, messages, optional_params), model_response)

    async def _acollect(self, generation: Generation, model_response: Any) -> Any:
        collected = Collected()
        async for chunk in astream(generation):
            collected.add(chunk)
        return self._fill(model_response, collected)

    def _fill(self, model_response: Any, collected: Collected) -> Any:
        lib = self._litellm
        tool_calls = None
        if collected.tool_name is not None:
            function = {"name": collected.tool_name, "arguments": collected.arguments}
            tool_calls = [{"id": collected.tool_id, "type": "function", "function": function}]
        choice = model_response.choices[0]
        choice.message = lib.Message(content=collected.text or None, tool_calls=tool_calls)
        choice.finish_reason = collected.finish_reason
        model_response.usage = lib.Usage(**collected.usage)
        return model_response


def _prepare(model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> Generation:
    return Generation(load(model), messages, params)


def register(litellm: ModuleType) -> None:
    """Serve ``local/...`` models through LiteLLM, unless a ``local`` provider is registered already."""
    if any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        return
    handler_class = type("LocalLLM", (LocalHandler, litellm.CustomLLM), {"_litellm": litellm})
    litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": handler_class()})
