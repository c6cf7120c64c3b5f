"""The events a stream yields: small frozen values, one per thing that happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cllm.core.finish import FinishReason
from cllm.core.response import Usage

__all__ = [
    "Attempt",
    "Event",
    "Finish",
    "Queued",
    "ReasoningDelta",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str
    type: Literal["text-delta"] = "text-delta"


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning ("thinking") text."""

    text: str
    type: Literal["reasoning-delta"] = "reasoning-delta"


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """The model began a tool call. ``name`` is None only if the provider has not sent it yet."""

    index: int
    id: str | None
    name: str | None
    type: Literal["tool-call-start"] = "tool-call-start"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """More argument text for a tool call.

    ``arguments`` is the value parsed from all argument text received so far (open strings, arrays
    and objects taken as they stand). It is the parser's live value: later deltas of the same call
    update it in place, so ``copy.deepcopy`` it to keep a snapshot.
    """

    index: int
    id: str | None
    name: str | None
    arguments_delta: str
    arguments: Any
    type: Literal["tool-call-delta"] = "tool-call-delta"


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    """A tool call is complete.

    ``arguments`` is the parsed JSON value, or None with ``error`` set when the text is not valid
    JSON; ``arguments_json`` is always the raw text received.
    """

    index: int
    id: str | None
    name: str | None
    arguments: Any
    arguments_json: str
    error: str | None = None
    type: Literal["tool-call-end"] = "tool-call-end"


@dataclass(frozen=True, slots=True)
class Finish:
    """The provider ended the stream. Always the last event of a stream that was not cut off."""

    reason: FinishReason
    raw_reason: str | None
    usage: Usage | None
    type: Literal["finish"] = "finish"


@dataclass(frozen=True, slots=True)
class Queued:
    """The request is waiting for capacity under its `cllm.Limits` (given once, before it is sent)."""

    model: str
    type: Literal["queued"] = "queued"


@dataclass(frozen=True, slots=True)
class Attempt:
    """A new attempt at the answer starts, after the previous one failed.

    ``number`` counts attempts from 1 (this one is at least 2); ``model`` is the model it asks;
    ``error`` is why the previous attempt failed; ``delay`` the seconds waited before it.
    ``discard=False``: the answer goes on where it broke off (nothing shown so far is repeated).
    ``discard=True``: drop everything shown so far, the answer starts over; ``reason`` says why it
    could not go on where it broke off, when that was asked for.
    """

    number: int
    model: str
    error: str
    delay: float = 0.0
    discard: bool = False
    reason: str | None = None
    type: Literal["attempt"] = "attempt"


Event = TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta | ToolCallEnd | Finish | Queued | Attempt
