"""The four entry points: `stream`, `astream`, `complete`, `acomplete`."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from cllm import _provider, retry
from cllm._stream import AsyncStream, OneShot, Source, Upstream
from cllm._sync import Stream
from cllm.core.response import Response
from cllm.limits import Limited, Limits

__all__ = ["acomplete", "astream", "complete", "stream"]

Prompt = str | Sequence[Mapping[str, Any]]


def _plain(request: _provider.Request) -> Source:
    """The plain source: one non-streaming call, or one stream, read by cllm itself where the fast
    path can promise the same result (`cllm._fast`), else by LiteLLM's stream wrapper."""
    if not request.kwargs.get("stream"):
        return OneShot(request)
    if request.fast_path:
        from cllm._fast import FastUpstream

        return FastUpstream(request)
    return Upstream(request)


def _attempt(request: _provider.Request, limits: Limits | None) -> Source:
    """One attempt's source: the plain call, waiting for its place under ``limits`` first."""
    plain = _plain(request)
    return plain if limits is None else Limited(plain, limits)


def _source(
    request: _provider.Request, limits: Limits | None = None, policy: retry.Policy | None = None
) -> Source:
    """The upstream half for one request: where layers (retries, limits) wrap the plain source.

    Retries wrap the attempts, each of which takes its own place under the limits.
    """
    if policy is None:
        return _attempt(request, limits)
    return retry.Resilient(request, policy, functools.partial(_attempt, limits=limits))


def _limits_option(options: dict[str, Any]) -> Limits | None:
    limits = options.pop("limits", None)
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be a cllm.Limits, got {type(limits).__name__}")
    return limits


def _open(model: str, prompt_or_messages: Prompt, options: dict[str, Any], *, stream: bool) -> AsyncStream:
    options = dict(options)
    limits = _limits_option(options)
    policy = retry.take_options(options)
    request = _provider.prepare(model, prompt_or_messages, options, stream=stream)
    return AsyncStream(request, _source(request, limits, policy))


def astream(model: str, prompt_or_messages: Prompt, **options: Any) -> AsyncStream:
    """Stream a response asynchronously.

    Args:
        model: a LiteLLM model name (``"openai/gpt-4o"``, ``"anthropic/claude-sonnet-4-5"``...).
        prompt_or_messages: a string (one user message) or an OpenAI-format message list.
        **options: passed to LiteLLM (``tools``, ``temperature``, ``max_tokens``, ``api_base``...),
            plus cllm's ``first_token_timeout``, ``idle_timeout`` and ``total_timeout`` in seconds
            (``total_timeout`` bounds all attempts together), ``limits`` (a `cllm.Limits`: each
            attempt waits for its place before it is sent), and ``retries`` (a count or
            `cllm.Retries`), ``fallbacks`` (models, or ``{"model": ..., **options}``, each with its
            own retries) and ``mid_stream`` (``"continue"``, ``"restart"`` or ``"raise"``: what to do
            when a stream fails after output began). A new attempt shows as a `cllm.Attempt` event.
            ``fast_path=False`` has LiteLLM's stream wrapper read an OpenAI-format stream rather
            than cllm itself (the request is LiteLLM's either way; ``CLLM_FAST_PATH=0`` does the
            same for the whole process).

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
