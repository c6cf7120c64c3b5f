"""The retrying source: attempts one after another until one finishes, spliced into one stream.

`Resilient` wraps a factory of per-attempt sources (whatever the plain or limited source is) and
never sees LiteLLM itself: it reads the failures as cllm's own errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from cllm import _provider
from cllm._stream import Source, StreamTruncated, UpstreamTimeout
from cllm.core.accumulator import Chunk
from cllm.core.events import Attempt, Event
from cllm.core.response import AttemptRecord, Usage, add_usage
from cllm.core.splice import PrefixSplicer
from cllm.errors import CllmError, ProviderError
from cllm.retry.policy import Policy, failure_category, short_connection_error

__all__ = ["Resilient", "fallback_request"]

OpenAttempt = Callable[[_provider.Request], Source]

# Options that name one provider's endpoint or account: a fallback on another provider does not
# inherit them (it gives its own, or LiteLLM reads the environment).
_CONNECTION_OPTIONS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "organization",
        "custom_llm_provider",
        "extra_headers",
        "headers",
        "deployment_id",
    }
)
_CONNECTION_PREFIXES = ("aws_", "vertex_", "azure_", "watsonx_")
_NOT_OPTIONS = frozenset({"model", "messages", "stream"})


def _provider_prefix(model: str) -> str | None:
    return model.split("/", 1)[0] if "/" in model else None


def fallback_request(
    primary: _provider.Request, model: str, overrides: Mapping[str, Any]
) -> _provider.Request:
    """The request for a fallback model: the primary's messages and options, its own overrides on top."""
    same_provider = _provider_prefix(model) == _provider_prefix(primary.model)
    options = {
        key: value
        for key, value in primary.kwargs.items()
        if key not in _NOT_OPTIONS
        and (same_provider or (key not in _CONNECTION_OPTIONS and not key.startswith(_CONNECTION_PREFIXES)))
    }
    for name in _provider.CLLM_OPTIONS:
        if getattr(primary, name) is not None:
            options[name] = getattr(primary, name)
    options["fast_path"] = primary.fast_path
    options.update(overrides)
    return _provider.prepare(
        model, primary.kwargs["messages"], options, stream=bool(primary.kwargs.get("stream"))
    )


def _why_no_prefix(request: _provider.Request, reasoning: bool, tools: bool) -> str | None:
    """Why the answer cannot go on from its text on ``request``'s model, or None when it can."""
    kwargs = request.kwargs
    if tools:
        return "the failure cut a tool call"
    if reasoning:
        return "reasoning cannot be sent back as a prefix"
    n = kwargs.get("n")
    if isinstance(n, int) and n > 1:
        return "n > 1"
    response_format = kwargs.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        return "a forced response format (JSON schema)"
    choice = kwargs.get("tool_choice")
    if choice == "required" or isinstance(choice, Mapping):
        return "a forced tool choice"
    if not _provider.accepts_prefix(_provider.resolve(request)):
        return f"{request.model} accepts no assistant prefix"
    return None


def _continuation(request: _provider.Request, prefix: str) -> _provider.Request:
    messages = [*request.kwargs["messages"], {"role": "assistant", "content": prefix, "prefix": True}]
    return dataclasses.replace(request, kwargs={**request.kwargs, "messages": messages})


class Resilient:
    """Attempts at one answer: retries of each model, then its fallbacks, spliced into one stream.

    Before any output a failure that another try can cure is retried after a backoff; after output,
    the policy's ``mid_stream`` decides: ``continue`` (the text so far as an assistant prefix, the
    seam cleaned by `PrefixSplicer`), ``restart`` (an `Attempt` with ``discard=True``) or ``raise``.
    ``total_timeout`` bounds all attempts together.
    """

    def __init__(self, request: _provider.Request, policy: Policy, open_attempt: OpenAttempt) -> None:
        self.request = request
        self.started: float | None = None
        self.ttft: float | None = None
        self.usage: Usage | None = None
        self.cost: float | None = None
        self.exhausted = False
        self.attempts: list[AttemptRecord] = []
        self._policy = policy
        self._open_attempt = open_attempt
        self._targets = [request, *(fallback_request(request, m, o) for m, o in policy.fallbacks)]
        self._target = 0
        self._tries = 0  # on the current target
        self._total = request.total_timeout
        self._deadline: float | None = None
        self._current: Source | None = None
        self._attempt_started = (0.0, 0.0)  # perf_counter, time.time()
        self._attempt_output = False
        self._attempt_mode: str | None = None
        self._wait = 0.0
        self._pending: deque[Chunk] = deque()
        self._splicer: PrefixSplicer | None = None
        # What was shown since the answer last started over.
        self._text: list[str] = []
        self._shown = False
        self._reasoning = False
        self._tools = False

    # -- the Source interface --------------------------------------------------------------------

    async def next(self) -> Chunk | Event | None:
        if self._pending:
            return self._pending.popleft()
        if self.exhausted:
            return None
        if self._current is None:
            await self._start()
        source = self._current
        assert source is not None
        try:
            chunk = await source.next()
        except Exception as exc:
            return await self._recover(source, exc)
        if chunk is None:
            tail = self._splicer.flush() if self._splicer is not None else ""
            self._record(source, "finished")
            self.exhausted = True
            if tail:
                self._note(Chunk(text=tail))
                self._pending.append(Chunk(text=tail))
                return self._pending.popleft()
            return None
        if not isinstance(chunk, Chunk):
            return chunk  # an inner layer's own event (`Queued`): passed on
        if self._splicer is not None and chunk.text:
            chunk.text = self._splicer.feed(chunk.text)
        self._note(chunk)
        return chunk

    async def aclose(self) -> None:
        current, self._current = self._current, None
        self.exhausted = True
        self._pending.clear()
        if current is not None:
            await current.aclose()
            self._current = current
            self._record(current, "cancelled", "the stream was closed")

    # -- attempts --------------------------------------------------------------------------------

    async def _start(self) -> None:
        now = time.perf_counter()
        if self.started is None:
            self.started = now
            if self._total is not None:
                self._deadline = now + self._total
        if self._wait > 0:
            await asyncio.sleep(self._wait)
            now = time.perf_counter()
        request = self.request
        if self._deadline is not None:
            # Each attempt gets what is left of the total.
            request = self.request = dataclasses.replace(
                request, total_timeout=max(1e-3, self._deadline - now)
            )
        self._attempt_started = (now, time.time())
        self._attempt_output = False
        self._current = self._open_attempt(request)

    def _note(self, chunk: Chunk) -> None:
        if chunk.text:
            self._text.append(chunk.text)
        if chunk.reasoning:
            self._reasoning = True
        if chunk.tool_calls:
            self._tools = True
        if chunk.text or chunk.reasoning or chunk.tool_calls or chunk.refusal:
            self._attempt_output = self._shown = True
            if self.ttft is None and self.started is not None:
                self.ttft = time.perf_counter() - self.started

    def _record(self, source: Source, outcome: str, error: str | None = None) -> None:
        request = source.request
        usage = source.usage
        cost = _provider.cost(request.model, request.provider, usage)
        self.usage = add_usage(self.usage, usage)
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost
        started, wall = self._attempt_started
        if source.started is not None and source.started > started:
            # Waiting for LiteLLM's first import is not the attempt's time.
            wall += source.started - started
            started = source.started
        self.attempts.append(
            AttemptRecord(
                number=len(self.attempts) + 1,
                model=request.model,
                started=wall,
                duration=time.perf_counter() - started,
                outcome=outcome,
                error=error,
                output=self._attempt_output,
                usage=usage,
                cost=cost,
                delay=self._wait,
                mode=self._attempt_mode,
            )
        )
        self._current = None

    async def _recover(self, source: Source, exc: Exception) -> Attempt:
        """Record the failure and set up the next attempt, or raise ``exc`` when there is none."""
        error, category, status, retry_after = self._describe(source, exc)
        self._current = source
        self._record(source, "failed", error)
        await source.aclose()
        if isinstance(exc, UpstreamTimeout) and exc.kind == "total":
            self.exhausted = True
            raise UpstreamTimeout("total", self._total or 0.0) from exc
        policy = self._policy
        after_output = self._shown
        if (
            not policy.retries.retries(category, status)
            or (after_output and policy.mid_stream == "raise")
            or self._next_target(retry_after) is None
        ):
            self.exhausted = True
            raise exc
        delay = self._wait
        if self._deadline is not None and time.perf_counter() + delay >= self._deadline:
            self.exhausted = True
            raise UpstreamTimeout("total", self._total or 0.0) from exc
        target = self._targets[self._target]
        discard, reason = False, None
        if not after_output:
            mode, request = "retry", target
        elif policy.mid_stream == "restart":
            mode, request, discard = "restart", target, True
        else:
            reason = _why_no_prefix(target, self._reasoning, self._tools)
            if reason is None:
                mode, request = "continue", _continuation(target, "".join(self._text))
            elif policy.mid_stream == "continue-or-raise":
                self.exhausted = True
                raise exc
            else:
                mode, request, discard = "restart", target, True
        self.request = request
        self._attempt_mode = mode
        if discard:
            self._text, self._shown, self._reasoning, self._tools = [], False, False, False
        self._splicer = PrefixSplicer("".join(self._text)) if mode == "continue" else None
        return Attempt(len(self.attempts) + 1, target.model, error, delay, discard, reason)

    def _next_target(self, retry_after: float | None) -> int | None:
        """Move to the next attempt's target (same model while it has tries left); sets the delay."""
        retries = self._policy.retries
        self._tries += 1
        if self._tries < retries.attempts:
            delay = retries.delay(self._tries, retry_after, random.random())
            if delay is not None:
                self._wait = delay
                return self._target
        if self._target + 1 < len(self._targets):
            self._target += 1
            self._tries = 0
            self._wait = 0.0
            return self._target
        return None

    def _describe(self, source: Source, exc: Exception) -> tuple[str, str | None, int | None, float | None]:
        """A failure as (message, category, status, retry_after). The message is short for an HTTP
        error (``429 rate limit``), the provider's own words otherwise."""
        if isinstance(exc, UpstreamTimeout):
            return str(exc), (None if exc.kind == "total" else "timeout"), None, None
        if isinstance(exc, StreamTruncated):
            return str(exc), "connection", None, None
        if isinstance(exc, ProviderError):
            error: CllmError = exc
        elif isinstance(exc, CllmError):
            return str(exc), None, None, None
        else:
            error = _provider.provider_error(exc, source.request.model)
        if not isinstance(error, ProviderError):
            return str(error), None, None, None
        status = error.status_code
        category = failure_category(status, error.kind, error.message)
        message = error.message
        if category == "connection":
            message = short_connection_error(_chain_text(exc) or message)
        elif status is not None and category is not None:
            message = f"{status} {_LABELS[category]}"
        elif status is not None and not message.startswith(str(status)):
            message = f"{status} {message}"
        return message, category, status, error.retry_after


def _chain_text(exc: BaseException) -> str:
    """The messages of an exception and its causes (the openai SDK says only "Connection error.";
    the httpx or aiohttp error under it says what happened)."""
    parts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 8:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        original = getattr(current, "original_exception", None)
        todo += [
            current.__cause__,
            current.__context__,
            original if isinstance(original, BaseException) else None,
        ]
    return " | ".join(parts)


_LABELS = {
    "rate_limit": "rate limit",
    "overloaded": "overloaded",
    "server": "server error",
    "timeout": "timeout",
}
