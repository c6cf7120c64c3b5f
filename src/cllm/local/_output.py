"""Generated text as it arrives, split into what the stream reports. Pure: no llama.cpp, no I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["CallOutput", "Piece", "TextOutput"]


class TextOutput:
    """A text reply: the transcript format makes the model start with a space, which is dropped,
    unless the reply goes on from an assistant prefix (``keep_space``), where the space is the text's."""

    def __init__(self, keep_space: bool = False) -> None:
        self._started = keep_space

    def feed(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        return text


@dataclass(frozen=True, slots=True)
class Piece:
    """The function's name (once), or a fragment of the arguments' JSON text."""

    kind: Literal["name", "arguments"]
    value: str


# The start of a call, up to where the arguments' value begins. The grammar fixes the key order.
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*')
_SPACE = frozenset(" \t\r\n")


@dataclass(slots=True)
class CallOutput:
    """Splits a grammar-constrained ``{"name": "...", "arguments": {...}}`` as it is generated.

    The name is reported as soon as it is complete, then the arguments' text fragment by fragment,
    without the wrapper's closing brace or the whitespace around the value.
    """

    name: str | None = None
    complete: bool = False
    _head: str = ""
    _depth: int = 0
    _in_string: bool = False
    _escape: bool = False

    def feed(self, text: str) -> list[Piece]:
        pieces: list[Piece] = []
        if self.complete:
            return pieces
        if self.name is None:
            self._head += text
            match = _HEAD.match(self._head)
            if match is None or match.end() == len(self._head):
                return pieces  # the arguments have not begun yet
            self.name = str(json.loads(match.group(1)))
            pieces.append(Piece("name", self.name))
            text, self._head = self._head[match.end() :], ""
        if fragment := self._scan(text):
            pieces.append(Piece("arguments", fragment))
        return pieces

    def _scan(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            if self._in_string:
                out.append(ch)
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
                continue
            if self._depth == 0 and ch in _SPACE:
                continue  # around the value (a bare value holds no whitespace outside strings)
            if ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                if self._depth == 0:
                    self.complete = True  # the wrapper's closing brace
                    break
                self._depth -= 1
            out.append(ch)
        return "".join(out)
