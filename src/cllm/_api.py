"""The four entry points: `stream`, `astream`, `complete`, `acomplete`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cllm import _provider
from cllm._stream import AsyncStream, OneShot, Source, Upstream
from cllm._sync import Stream
from cllm.core.response import Response

__all__ = ["acomplete", "astream", "complete", "stream"]

Prompt = str | Sequence[Mapping[str, Any]]


def _source(request: _provider.Request) -> Source:
    """The upstream half for one request: where layers (retries, limits) wrap the plain source."""
    return Upstream(request) if request.kwargs.get("stream") else OneShot(request)


def _open(model: str, prompt_or_messages: Prompt, options: dict[str, Any], *, stream: bool) -> AsyncStream:
    request = _provider.prepare(model, prompt_or_messages, options, stream=stream)
    return AsyncStream(request, _source(request))


def astream(model: str, prompt_or_messages: Prompt, **options: Any) -> AsyncStream:
    """Stream a response asynchronously.

    Args:
        model: a LiteLLM model name (``"openai/gpt-4o"``, ``"anthropic/claude-sonnet-4-5"``...).
        prompt_or_messages: a string (one user message) or an OpenAI-format message list.
        **options: passed to LiteLLM (``tools``, ``temperature``, ``max_tokens``, ``api_base``...),
            plus cllm's ``first_token_timeout``, ``idle_timeout`` and ``total_timeout`` in seconds.

    Use as ``async with cllm.astream(...) as s: async for event in s: ...``; the request is
    sent when iteration starts.
    """
    return _open(model, prompt_or_messages, options, stream=True)


def stream(model: str, prompt_or_messages: Prompt, **options: Any) -> Stream:
    """Stream a response synchronously. Arguments as for `astream`.

    Use as ``with cllm.stream(...) as s: for event in s: ...``. Works inside a running event loop
    (Jupyter, a thread of an async app): the stream runs on cllm's own background loop.
    """
    return Stream(astream(model, prompt_or_messages, **options))


async def acomplete(
    model: str, prompt_or_messages: Prompt, *, stream: bool = True, **options: Any
) -> Response:
    """The whole response. ``stream=True`` streams it under the hood (timeouts apply per chunk);
    ``stream=False`` makes one non-streaming call. Both give the same `Response`."""
    async with _open(model, prompt_or_messages, options, stream=stream) as s:
        return await s.until_done()


def complete(model: str, prompt_or_messages: Prompt, *, stream: bool = True, **options: Any) -> Response:
    """The whole response, synchronously. Arguments as for `acomplete`."""
    with Stream(_open(model, prompt_or_messages, options, stream=stream)) as s:
        return s.until_done()
