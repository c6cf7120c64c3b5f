"""Where the fast path meets LiteLLM: when a stream LiteLLM opened may be read by cllm, and how
errors met while reading it are mapped, exactly as LiteLLM's stream wrapper maps them.

Like `cllm._provider`, this only touches litellm once it is loaded (`_provider.aload`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cllm import _provider

__all__ = ["FAST_PROVIDERS", "enabled", "fast_stream_of", "mapped", "stream_error"]

# Providers whose LiteLLM route streams OpenAI's chat-completions SSE through the openai SDK (so
# LiteLLM reads their chunks as OpenAI's), each checked by tests/test_fast_path.py on real captures,
# on both ends of the supported LiteLLM range: the same request, the same events and the same
# `Response` as LiteLLM's own stream. groq/, deepseek/, mistral/, openrouter/, hosted_vllm/,
# together_ai/, fireworks_ai/ and xai/ are not here: LiteLLM streams them through its own HTTP
# handler with provider-specific chunk transformations, which cllm would have to redo.
FAST_PROVIDERS = frozenset(
    {
        "openai",  # also any OpenAI-compatible server given as api_base (Ollama, vLLM, llama.cpp...)
        "azure",
        "baseten",
        "cerebras",
        "custom_openai",
        "dashscope",
        "deepinfra",
        "featherless_ai",
        "github",
        "hyperbolic",
        "lambda_ai",
        "litellm_proxy",
        "llamafile",
        "lm_studio",
        "moonshot",
        "nebius",
        "novita",
        "nscale",
        "nvidia_nim",
        "perplexity",
        "sambanova",
        "volcengine",
    }
)

# Per-call options that ask LiteLLM for work at the end of a stream (logging, a cache entry):
# only its own stream wrapper does that work.
_END_OF_STREAM_OPTIONS = ("callbacks", "success_callback", "caching", "litellm_logging_obj")


def enabled(request: _provider.Request) -> bool:
    """Whether the request may take the fast path at all: not turned off by ``fast_path=False`` or
    ``CLLM_FAST_PATH=0``, and not asking LiteLLM for work at the end of the stream."""
    if not request.fast_path or os.environ.get("CLLM_FAST_PATH", "1") == "0":
        return False
    kwargs = request.kwargs
    return not any(kwargs.get(name) for name in _END_OF_STREAM_OPTIONS)


def fast_stream_of(wrapper: Any, request: _provider.Request) -> Any:
    """The httpx response under a LiteLLM stream that cllm can read itself, or None.

    None unless the provider is verified, nothing in the process consumes what LiteLLM does at the
    end of a stream (callbacks, a cache, a budget), and the stream is the openai SDK's own, not yet
    read: then its body is untouched SSE and reading it is all that is left.
    """
    if not enabled(request) or (request.provider or "") not in FAST_PROVIDERS:
        return None
    if _provider.end_of_stream_consumers(wrapper):
        return None
    lib = _provider.litellm()
    if not isinstance(wrapper, lib.CustomStreamWrapper) or getattr(wrapper, "chunks", None):
        return None
    import openai

    stream = getattr(wrapper, "completion_stream", None)
    if type(stream) is not openai.AsyncStream:
        return None
    response = getattr(stream, "response", None)
    import httpx

    if not isinstance(response, httpx.Response) or response.is_stream_consumed or response.is_closed:
        return None
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        return None
    return response


def stream_error(error: Mapping[str, Any], response: Any) -> Exception:
    """An error the provider put in the stream, as the openai SDK raises it."""
    import openai

    message = error.get("message")
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message=message, request=response.request, body=dict(error))


def _sdk_wraps_transport_errors() -> bool:
    import openai

    # From openai 3.14 the SDK's stream turns a transport error met while reading (a reset, a read
    # timeout) into its own APIConnectionError / APITimeoutError, and LiteLLM maps those.
    try:
        return tuple(int(part) for part in openai.__version__.split(".")[:2]) >= (3, 14)
    except ValueError:
        return True


def _as_the_sdk_raises(exc: Exception, response: Any) -> Exception:
    import ssl

    import httpx
    import openai

    if not _sdk_wraps_transport_errors():
        return exc
    wrapped: Exception
    if isinstance(exc, httpx.TimeoutException):
        wrapped = openai.APITimeoutError(request=response.request)
    elif isinstance(exc, httpx.RequestError | ssl.SSLError):
        wrapped = openai.APIConnectionError(request=response.request)
    else:
        return exc
    wrapped.__cause__ = exc
    return wrapped


def mapped(exc: Exception, wrapper: Any, response: Any) -> Exception:
    """An exception met while reading a stream, mapped to LiteLLM's as its stream wrapper maps it
    (after the openai SDK's own mapping, which LiteLLM reads through)."""
    if type(exc).__module__.startswith("litellm."):
        return exc
    exc = _as_the_sdk_raises(exc, response)
    lib = _provider.litellm()
    try:
        lib.exception_type(
            model=getattr(wrapper, "model", None) or "",
            custom_llm_provider=getattr(wrapper, "custom_llm_provider", None),
            original_exception=exc,
            completion_kwargs={},
            extra_kwargs={},
        )
    except Exception as mapped_exc:
        return mapped_exc
    return exc
