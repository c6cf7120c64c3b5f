"""The stream accumulator: provider-neutral chunks in, events and a `Response` out.

Pure: no I/O, no clock, no provider library. The provider adapter turns each provider chunk into a
`Chunk`; `StreamAccumulator.feed` turns it into events at once and keeps only strings and parser
state (never the chunk objects), so memory is proportional to the answer, not to the chunk count.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cllm.core.events import (
    Event,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from cllm.core.finish import FinishReason, normalize_finish_reason
from cllm.core.partial_json import PartialJsonParser
from cllm.core.response import Response, ToolCall, Usage

__all__ = ["Chunk", "StreamAccumulator", "ToolCallChunk"]

NO_FINISH_REASON = "the stream ended without a finish reason from the provider"


@dataclass(slots=True)
class ToolCallChunk:
    """One tool-call fragment as a provider sent it. Any field may be missing."""

    index: int | None = None
    id: str | None = None
    name: str | None = None
    arguments: str | None = None
    server: bool = False
    """A call the provider runs itself (Anthropic's ``server_tool_use``): kept in
    `Response.server_tool_calls`, never offered to the caller as a tool call to run."""


@dataclass(slots=True)
class Chunk:
    """One provider chunk, reduced to what cllm reads from it (choice 0 only)."""

    text: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: Sequence[ToolCallChunk] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None


class _Parts:
    """A growing string kept as parts, joined lazily and at most once per read."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[str] = []

    def append(self, text: str) -> None:
        self._parts.append(text)

    def __bool__(self) -> bool:
        return bool(self._parts)

    def value(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""


class _CallState:
    __slots__ = (
        "arguments",
        "ended",
        "error",
        "id",
        "index",
        "name",
        "parser",
        "provider_index",
        "started",
        "text",
    )

    def __init__(self, index: int, provider_index: int | None) -> None:
        self.index = index
        self.error: str | None = None  # why the parser gave up, when it did
        self.provider_index = provider_index
        self.id: str | None = None
        self.name: str | None = None
        self.text = _Parts()
        self.parser: PartialJsonParser | None = PartialJsonParser()
        self.arguments: Any = None
        self.started = False
        self.ended: ToolCallEnd | None = None

    def final_id(self) -> str:
        return self.id or f"call_{self.index}"


def _parse_arguments(text: str, name: str | None, error: str | None) -> tuple[Any, str, str | None]:
    """The final value of a call's argument text: (arguments, arguments_json, error)."""
    if not text.strip():
        # A call with no argument text is a call with no arguments.
        return {}, "{}", None
    if error is None:
        try:
            return json.loads(text), text, None
        except (ValueError, RecursionError) as exc:
            error = str(exc) if isinstance(exc, ValueError) else "nested too deep"
    return None, text, f"tool call {name or '?'}: arguments are not valid JSON ({error})"


class StreamAccumulator:
    """Turns `Chunk`s into events and keeps what a `Response` needs.

    Call `feed` for each chunk, then `end` when the provider's stream ended normally (it emits the
    remaining `ToolCallEnd`s and the `Finish`), or `interrupt` when it failed or was cancelled.
    `snapshot` and `result` build a `Response` at any time.
    """

    def __init__(self) -> None:
        self._text = _Parts()
        self._reasoning = _Parts()
        self._refusal = _Parts()
        self._calls: list[_CallState] = []
        self._by_provider_index: dict[int, _CallState] = {}
        self._server_calls: list[_CallState] = []
        self._server_by_key: dict[str, _CallState] = {}  # by id, and "#<index>" for later fragments
        self._raw_finish: str | None = None
        self._reason: FinishReason | None = None
        self._usage: Usage | None = None
        self._model: str | None = None
        self._error: str | None = None
        self._interrupted = False
        self._done = False
        self.received_output = False

    # -- feeding ---------------------------------------------------------------------------------

    def feed(self, chunk: Chunk) -> list[Event]:
        """Take one chunk; return the events it gives, in order."""
        events: list[Event] = []
        if chunk.model and not self._model:
            self._model = chunk.model
        if chunk.reasoning:
            self._reasoning.append(chunk.reasoning)
            events.append(ReasoningDelta(chunk.reasoning))
        if chunk.text:
            self._text.append(chunk.text)
            events.append(TextDelta(chunk.text))
        if chunk.refusal:
            self._refusal.append(chunk.refusal)
        if chunk.tool_calls:
            many = len(chunk.tool_calls) > 1
            for position, fragment in enumerate(chunk.tool_calls):
                if fragment.server:
                    self._feed_server_call(fragment)
                else:
                    self._feed_tool_call(fragment, position if many else None, events)
        if chunk.usage is not None:
            # Providers that repeat usage on every chunk report running totals: the last one wins.
            self._usage = chunk.usage
        if chunk.finish_reason:
            self._raw_finish = chunk.finish_reason
            for call in self._calls:
                if call.ended is None and call.started:
                    events.append(self._end_call(call))
        if events:
            self.received_output = True
        return events

    def _find_call(self, fragment: ToolCallChunk, position: int | None) -> _CallState | None:
        index = fragment.index
        if index is None and position is not None:
            # Several calls in one chunk with no index (Mistral): each entry is its own call.
            return None
        if index is not None:
            call = self._by_provider_index.get(index)
        else:
            call = self._calls[-1] if self._calls else None
            if call is not None and call.ended is not None and (fragment.id or fragment.name):
                return None
        if call is not None and fragment.id and call.id and fragment.id != call.id:
            return None  # a different id at the same place is a new call
        return call

    def _feed_tool_call(self, fragment: ToolCallChunk, position: int | None, events: list[Event]) -> None:
        call = self._find_call(fragment, position)
        if call is None:
            call = _CallState(len(self._calls), fragment.index)
            self._calls.append(call)
            if fragment.index is not None:
                self._by_provider_index[fragment.index] = call
        # Some providers repeat id and name on every delta: take the first, never concatenate.
        if fragment.id and not call.id:
            call.id = fragment.id
        if fragment.name and not call.name:
            call.name = fragment.name
        args = fragment.arguments
        if not call.started and (call.name or args):
            call.started = True
            events.append(ToolCallStart(call.index, call.id, call.name))
        if not args:
            return
        call.text.append(args)
        if call.ended is not None:
            return
        if call.parser is not None:
            try:
                call.arguments = call.parser.feed(args)
            except ValueError as exc:
                # Not JSON and never will be: keep the raw text; `_end_call` reports the error.
                call.parser = None
                call.error = str(exc)
        events.append(ToolCallDelta(call.index, call.id, call.name, args, call.arguments))
        if call.parser is not None and call.parser.done:
            events.append(self._end_call(call))

    def _feed_server_call(self, fragment: ToolCallChunk) -> None:
        # Whole, or in fragments of which only the first has the id. No events: nothing to run.
        call = self._server_by_key.get(fragment.id or f"#{fragment.index}")
        if call is None:
            call = _CallState(len(self._server_calls), fragment.index)
            call.parser = None
            self._server_calls.append(call)
            if fragment.id:
                self._server_by_key[fragment.id] = call
            if fragment.index is not None:
                self._server_by_key[f"#{fragment.index}"] = call
        call.id = call.id or fragment.id
        call.name = call.name or fragment.name
        if fragment.arguments:
            call.text.append(fragment.arguments)

    def _end_call(self, call: _CallState) -> ToolCallEnd:
        arguments, arguments_json, error = _parse_arguments(call.text.value(), call.name, call.error)
        call.parser = None
        call.ended = ToolCallEnd(call.index, call.final_id(), call.name, arguments, arguments_json, error)
        return call.ended

    def forget_model(self) -> None:
        """Another source carries on this answer: the model it reports is the one that finished."""
        self._model = None

    # -- ending ----------------------------------------------------------------------------------

    def end(self) -> list[Event]:
        """The provider's stream ended normally: close open tool calls and emit `Finish`."""
        if self._done:
            return []
        self._done = True
        events: list[Event] = [
            self._end_call(call) for call in self._calls if call.ended is None and call.started
        ]
        self._reason = self._final_reason()
        if self._raw_finish is None:
            self._error = NO_FINISH_REASON
        events.append(Finish(self._reason, self._raw_finish, self._usage))
        return events

    def interrupt(self, error: str, *, cancelled: bool = False) -> None:
        """The stream failed or was cancelled before it ended; keep what was received."""
        if self._done:
            return
        self._done = True
        if self._raw_finish is not None:
            # The provider had finished: nothing was lost.
            self._reason = self._final_reason()
        else:
            self._reason = FinishReason.CANCELLED if cancelled else FinishReason.ERROR
            self._interrupted = True
            self._error = error
        for call in self._calls:
            if call.ended is None:
                self._end_call(call)

    def _final_reason(self) -> FinishReason:
        reason = normalize_finish_reason(self._raw_finish)
        if reason is None:
            return FinishReason.ERROR
        if reason is FinishReason.STOP and any(call.started for call in self._calls):
            # Forced tool_choice (OpenAI) and several OpenAI-compatible servers say "stop" after a
            # tool call; the caller still has tools to run.
            return FinishReason.TOOL_CALLS
        return reason

    # -- reading ---------------------------------------------------------------------------------

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def model(self) -> str | None:
        return self._model

    def server_tool_calls(self) -> list[ToolCall]:
        """Calls the provider ran itself, whole."""
        return [
            ToolCall(
                call.id or f"srv_{call.index}",
                call.name or "",
                *_parse_arguments(call.text.value(), call.name, None),
            )
            for call in self._server_calls
        ]

    def tool_calls(self) -> list[ToolCall]:
        """The calls the caller is to run. A fragment that never named a call nor gave it
        arguments (an id alone) is not a call."""
        calls = []
        for call in self._calls:
            if not call.started:
                continue
            if call.ended is not None:
                end = call.ended
                calls.append(
                    ToolCall(
                        end.id or call.final_id(),
                        end.name or "",
                        end.arguments,
                        end.arguments_json,
                        end.error,
                    )
                )
            else:
                calls.append(ToolCall(call.final_id(), call.name or "", call.arguments, call.text.value()))
        return calls

    def snapshot(self, **meta: Any) -> Response:
        """The response so far (final once `end` or `interrupt` was called).

        Keyword arguments set the fields the core cannot know: ``cost``, ``model``, ``ttft``,
        ``duration``.
        """
        meta.setdefault("model", self._model)
        return Response(
            text=self._text.value(),
            reasoning=self._reasoning.value(),
            tool_calls=self.tool_calls(),
            server_tool_calls=self.server_tool_calls(),
            finish_reason=self._reason,
            raw_finish_reason=self._raw_finish,
            usage=self._usage,
            interrupted=self._interrupted,
            error=self._error,
            refusal=self._refusal.value() or None,
            **meta,
        )
