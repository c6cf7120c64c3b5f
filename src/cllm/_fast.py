"""The fast path: LiteLLM makes the request, cllm reads the stream.

For providers whose wire is OpenAI's chat-completions SSE, LiteLLM's per-chunk work (a pydantic
model per chunk in the openai SDK, the chunk rebuilt as a ``ModelResponseStream``, the checks on
the text so far, and a copy of every chunk kept for a rebuild at the end) is most of what a stream
costs. `FastUpstream` lets LiteLLM do everything about the request, exactly as on its normal path
(provider, URL, auth, parameter mapping, body, its HTTP client and connection pool, and the mapping
of an error status to its exceptions), and then reads the response body itself: a sans-I/O SSE
decoder and one ``json.loads`` per event, straight into core `Chunk`s, keeping nothing per chunk.

It falls back to LiteLLM's own stream, for the whole request, whenever it could not promise the
same result (`cllm._wire.fast_stream_of` says when).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from cllm import _provider, _wire
from cllm._stream import Upstream
from cllm.core.accumulator import Chunk
from cllm.core.openai_chunks import parse_chunk, stream_error
from cllm.core.response import Usage
from cllm.core.sse import SSEDecoder

__all__ = ["FastUpstream"]


class FastUpstream(Upstream):
    """An `Upstream` that reads OpenAI-format streams itself once LiteLLM has opened them."""

    def __init__(self, request: _provider.Request) -> None:
        super().__init__(request)
        self._fast = False
        self._response: Any = None  # the httpx response being read, on the fast path
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._reasoning_tokens: int | None = None
        self._cached_tokens: int | None = None
        self._reported = False
        self._model: str | None = None
        self._model_from_chunks = False

    @property
    def fast(self) -> bool:
        """Whether this stream is read by cllm (True) or by LiteLLM's stream wrapper."""
        return self._fast

    async def _open(self) -> None:
        await super()._open()
        response = _wire.fast_stream_of(self._wrapper, self.request)
        if response is not None:
            self._fast, self._response = True, response
            wrapper = self._wrapper
            # LiteLLM names every chunk with the requested model, except Azure's, which it names
            # from the chunks themselves (the latest that says).
            self._model = getattr(wrapper, "model", None)
            self._model_from_chunks = getattr(wrapper, "custom_llm_provider", None) in ("azure", "azure_ai")
            self._chunks = self._read(response)

    def _convert(self, raw: Any) -> Chunk:
        if not self._fast:
            return super()._convert(raw)
        chunk: Chunk = raw
        return chunk

    def _delivered(self) -> bool:
        return not self._fast and super()._delivered()

    def _reported_usage(self) -> Usage | None:
        if not self._fast:
            return super()._reported_usage()
        if not self._reported:
            return None
        # As LiteLLM totals a stream's usage: the latest report of each count wins, and the total
        # is their sum.
        prompt, completion = self._prompt_tokens, self._completion_tokens
        if not prompt and not completion:
            return None
        return Usage(prompt, completion, prompt + completion, self._reasoning_tokens, self._cached_tokens)

    def _keep(self, usage: Usage) -> None:
        self._reported = True
        if usage.prompt_tokens is not None:
            self._prompt_tokens = usage.prompt_tokens
        if usage.completion_tokens is not None:
            self._completion_tokens = usage.completion_tokens
        if usage.reasoning_tokens is not None:
            self._reasoning_tokens = usage.reasoning_tokens
        if usage.cached_tokens is not None:
            self._cached_tokens = usage.cached_tokens

    async def _read(self, response: Any) -> AsyncIterator[Chunk]:
        decoder = SSEDecoder()
        loads = json.loads
        try:
            async for data in response.aiter_raw():
                for event in decoder.feed(data):
                    payload = event.data
                    if payload.startswith("[DONE]"):
                        return
                    obj = loads(payload)
                    if not isinstance(obj, dict):
                        continue
                    if "error" in obj and (error := stream_error(obj)) is not None:
                        raise _wire.stream_error(error, response)  # mapped below, as LiteLLM maps it
                    chunk = parse_chunk(obj)
                    if self._model_from_chunks and "model" in obj:
                        self._model = obj["model"]
                    chunk.model = self._model
                    if chunk.usage is not None:
                        # LiteLLM hands usage over at the end, never on the chunks: the same here.
                        self._keep(chunk.usage)
                        chunk.usage = None
                    yield chunk
            # A body that ends inside an event loses that event, as the openai SDK drops it too.
        except Exception as exc:
            raise _wire.mapped(exc, self._wrapper, response) from exc

    async def aclose(self) -> None:
        response, self._response = self._response, None
        chunks = self._chunks
        if response is not None:
            self.exhausted = True
            with contextlib.suppress(Exception):
                await response.aclose()
            if chunks is not None and hasattr(chunks, "aclose"):
                with contextlib.suppress(Exception):
                    await chunks.aclose()
        await super().aclose()
