"""`CllmLlm`: an ADK model that streams through `cllm.astream`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from pydantic import PrivateAttr

from cllm import _provider
from cllm._api import astream
from cllm.adk._request import build_messages, build_options, ensure_user_turn
from cllm.adk._response import ArgsProgress, final_response, function_call_fragment, text_fragment
from cllm.core.events import ReasoningDelta, TextDelta, ToolCallDelta, ToolCallStart
from cllm.errors import CllmError, ProviderError, StreamInterrupted, StreamTimeout

try:  # google-adk 2.x
    from google.adk.models._capabilities import LlmCapabilities
except ImportError:  # pragma: no cover - google-adk 1.x
    LlmCapabilities = None  # type: ignore[assignment,misc]

__all__ = ["PREFIX", "CllmLlm"]

PREFIX = "cllm/"
"""Model names starting with this resolve to `CllmLlm` once `cllm.adk.register()` has run."""

# Keyword arguments ADK's `LiteLlm` also refuses: the adapter sets them per request.
_MANAGED = ("messages", "tools", "stream", "llm_client")

# A partial function call is a display hint, and its snapshot of the arguments costs more as they
# grow. At most one per call every _SNAPSHOT_INTERVAL, and never more than 1/_SNAPSHOT_SHARE of the
# time: fragments that arrive faster are folded into the next snapshot, shown when the interval
# ends even if the stream goes quiet. A fast stream then costs no more to show than a slow one.
_SNAPSHOT_INTERVAL = 0.02
_SNAPSHOT_SHARE = 20


class CllmLlm(BaseLlm):
    """An ADK model for every provider LiteLLM supports, streamed by cllm.

    Same constructor as ADK's ``LiteLlm``: ``CllmLlm(model="openai/gpt-4o-mini", api_base=...,
    api_key=..., **litellm_kwargs)``, plus cllm's options (``first_token_timeout``, ``idle_timeout``,
    ``total_timeout`` and any other `cllm.astream` option), passed to `cllm.astream` unchanged.
    A ``cllm/`` prefix on the model name is dropped.

    With ``stream=True`` it yields a ``partial=True`` response for every text or reasoning delta and,
    while a tool call's arguments stream, partial function calls with the arguments parsed so far;
    then one ``partial=False`` response equal to what ``stream=False`` gives.

    Errors: a failure before any output raises `cllm.ProviderError` (with ``status_code``), so ADK's
    on-model-error callbacks and fallbacks see it; a failure, timeout or cut-off after output has
    started gives a final error response (``error_code``, ``error_message``, ``interrupted=True``) that
    keeps what arrived. One instance serves concurrent calls: it keeps no per-call state.
    """

    _options: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model=model)
        self._options = {key: value for key, value in kwargs.items() if key not in _MANAGED}

    @classmethod
    def supported_models(cls) -> list[str]:
        """``cllm/<provider>/<model>``: never the plain provider names ADK maps to ``LiteLlm``."""
        return [r"cllm/.+"]

    if LlmCapabilities is not None:

        @property
        def capabilities(self) -> Any:
            """Output schema together with tools is left to ADK's own way of doing it, on every
            provider: asking LiteLLM here would import it on the event loop."""
            return LlmCapabilities(output_schema_and_tools=False)

    @property
    def litellm_model(self) -> str:
        """The model name as LiteLLM knows it."""
        return _litellm_name(self.model)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        """One model turn. See `CllmLlm`; ``stream=False`` yields the final response only."""
        # cllm imports LiteLLM off the loop; the request mapping asks it about thinking settings.
        await _provider.aload()
        await _warm_up()
        self._maybe_append_user_content(llm_request)
        ensure_user_turn(llm_request)
        model = _litellm_name(llm_request.model or self.model)
        messages = build_messages(llm_request)
        options = build_options(llm_request, model, self._options)
        async with astream(model, messages, **options) as s:
            try:
                async for response in _fragments(s, stream, model):
                    yield response
            except StreamTimeout as exc:
                code = f"{exc.kind.upper()}_TIMEOUT"
                yield final_response(exc.response, model=model, error_code=code, error_message=str(exc))
                return
            except StreamInterrupted as exc:
                message = exc.response.error or str(exc)
                yield final_response(
                    exc.response, model=model, error_code="STREAM_INTERRUPTED", error_message=message
                )
                return
            except ProviderError:
                raise
            except CllmError as exc:  # pragma: no cover - every cllm error is one of the above
                raise ProviderError(str(exc), model=model) from exc
        yield final_response(s.response, model=model)


_warm = asyncio.Lock()
_warmed = False


async def _warm_up() -> None:
    """Pydantic builds the validators of ADK's and google-genai's types on first use, tens of
    milliseconds holding the GIL: done once on a worker thread, so the loop keeps turning."""
    global _warmed
    if _warmed:
        return
    async with _warm:
        if not _warmed:
            await asyncio.to_thread(_build_samples)
            _warmed = True


def _build_samples() -> None:
    from google.genai import types

    from cllm.core.response import Response, ToolCall

    request = LlmRequest(
        model="openai/x",
        contents=[types.Content(role="user", parts=[types.Part(text="x")])],
        config=types.GenerateContentConfig(temperature=0.0),
    )
    build_messages(request)
    build_options(request, "openai/x", {})
    call = ToolCall("c", "f", {"a": 1}, '{"a": 1}')
    final_response(Response(text="x", reasoning="y", tool_calls=[call]), model="x").model_dump()
    text_fragment("x", thought=True, model="x")
    function_call_fragment("c", "f", {"a": "b"}, ArgsProgress().advance({"a": "b"}), "x")


def _litellm_name(model: str) -> str:
    return model[len(PREFIX) :] if model.startswith(PREFIX) else model


async def _fragments(s: Any, stream: bool, model: str) -> AsyncGenerator[LlmResponse, None]:
    """The partial responses for a stream's events (none unless ``stream``)."""
    if not stream:
        await s.until_done()
        return
    events = s.__aiter__()
    progress: dict[int, ArgsProgress] = {}
    pending: dict[int, ToolCallDelta] = {}
    next_snapshot = 0.0
    waiting: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending:
                # Folded fragments are shown when the window ends, even if the stream goes quiet.
                waiting = waiting or asyncio.ensure_future(events.__anext__())
                timeout = max(next_snapshot - time.perf_counter(), 0.0)
                done, _ = await asyncio.wait((waiting,), timeout=timeout)
                if not done:
                    event = None
                else:
                    finished, waiting = waiting, None
                    try:
                        event = finished.result()
                    except StopAsyncIteration:
                        return
            else:
                try:
                    if waiting is not None:
                        finished, waiting = waiting, None
                        event = await finished
                    else:
                        event = await events.__anext__()
                except StopAsyncIteration:
                    return
            if isinstance(event, TextDelta | ReasoningDelta):
                yield text_fragment(event.text, thought=isinstance(event, ReasoningDelta), model=model)
            elif isinstance(event, ToolCallStart):
                progress[event.index] = ArgsProgress()
                yield function_call_fragment(_call_id(event), event.name, {}, [], model)
            elif isinstance(event, ToolCallDelta):
                pending[event.index] = event
            if not pending:
                continue
            now = time.perf_counter()
            if now < next_snapshot:
                continue
            snapshots = [
                function_call_fragment(
                    _call_id(delta),
                    delta.name,
                    delta.arguments,
                    progress.setdefault(index, ArgsProgress()).advance(delta.arguments),
                    model,
                )
                for index, delta in pending.items()
            ]
            pending.clear()
            spent = time.perf_counter() - now
            next_snapshot = now + max(_SNAPSHOT_INTERVAL, spent * _SNAPSHOT_SHARE)
            for snapshot in snapshots:
                yield snapshot
    finally:
        if waiting is not None and not waiting.done():
            # The stream's generator must not be running when it is closed.
            waiting.cancel()
            await asyncio.wait((waiting,))


def _call_id(event: ToolCallStart | ToolCallDelta) -> str:
    # The id the final response gives a call the provider sent without one.
    return event.id or f"call_{event.index}"
