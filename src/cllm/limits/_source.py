"""`Limited`: one attempt's source, sent only once its `Limits` has room for it."""

from __future__ import annotations

import time

from cllm import _provider
from cllm._stream import Source
from cllm.core.accumulator import Chunk
from cllm.core.events import Event, Queued
from cllm.core.response import Usage
from cllm.limits._limits import Limits, Permit

__all__ = ["Limited", "estimate_tokens"]


def _has_output(chunk: Chunk | Event | None) -> bool:
    return isinstance(chunk, Chunk) and bool(
        chunk.text or chunk.reasoning or chunk.tool_calls or chunk.refusal
    )


def _used(usage: Usage | None) -> int | None:
    if usage is None:
        return None
    if usage.total_tokens:
        return usage.total_tokens
    if usage.prompt_tokens is None and usage.completion_tokens is None:
        return None
    return (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)


def estimate_tokens(request: _provider.Request, reserve_tokens: int) -> int:
    """What a request may spend: its prompt plus ``max_tokens`` (``reserve_tokens`` when unset)."""
    kwargs = request.kwargs
    prompt = _provider.count_tokens(request.model, kwargs.get("messages") or [], kwargs.get("tools"))
    answer = kwargs.get("max_completion_tokens") or kwargs.get("max_tokens")
    if not isinstance(answer, int) or isinstance(answer, bool) or answer <= 0:
        answer = reserve_tokens
    return prompt + answer


class Limited:
    """Waits for a place under `Limits`, then reads the wrapped source; gives the place back when
    the stream ends, fails, is closed or is cancelled.

    ``started`` is when the wait began, so ``ttft`` and the duration include it. When it has to
    wait, the first thing `next` gives is a `Queued` event.
    """

    def __init__(self, inner: Source, limits: Limits) -> None:
        self._inner = inner
        self._limits = limits
        self.request = inner.request
        self._started: float | None = None
        self._permit: Permit | None = None
        self._queued = False
        self._output = False
        self._closed = False

    @property
    def started(self) -> float | None:
        return self._started if self._started is not None else self._inner.started

    @property
    def ttft(self) -> float | None:
        inner = self._inner
        if inner.ttft is None or self._started is None or inner.started is None:
            return inner.ttft
        return inner.ttft + (inner.started - self._started)

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    @property
    def exhausted(self) -> bool:
        return self._closed or (self._inner.exhausted and (self._permit is None or self._permit_done))

    @property
    def _permit_done(self) -> bool:
        return self._permit is not None and self._permit._done

    async def next(self) -> Chunk | Event | None:
        if self._closed:
            return None
        if self._permit is None:
            if self._started is None:
                self._started = time.perf_counter()
            permit = await self._admit()
            if permit is None:
                return Queued(self.request.model)
            self._permit = permit
        try:
            item = await self._inner.next()
        except Exception as exc:
            await self._failed(exc)
            raise
        except BaseException:
            await self._permit.finish(_used(self._inner.usage))
            raise
        if _has_output(item):
            self._output = True
        if item is None or self._inner.exhausted:
            await self._permit.finish(_used(self._inner.usage))
        return item

    async def aclose(self) -> None:
        self._closed = True
        try:
            await self._inner.aclose()
        finally:
            if self._permit is not None:
                await self._permit.finish(_used(self._inner.usage))

    async def _admit(self) -> Permit | None:
        limits = self._limits
        tokens = 0
        if limits.tpm is not None:
            await _provider.aload()
            tokens = estimate_tokens(self.request, limits.reserve_tokens)
        model = self.request.model
        if not self._queued:
            permit = await limits.acquire(model, tokens, wait=False)
            if permit is not None:
                return permit
            self._queued = True
            return None
        return await limits.acquire(model, tokens)

    async def _failed(self, exc: BaseException) -> None:
        assert self._permit is not None
        seconds = _provider.retry_after(exc)
        if seconds:
            await self._limits.pause(self.request.model, seconds)
        used = _used(self._inner.usage)
        # Nothing came back: the provider refused or never answered, and the tokens were not spent.
        await self._permit.finish(used, refund=used is None and not self._output)
