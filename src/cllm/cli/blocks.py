"""Split streaming markdown into finished blocks and the unfinished tail.

The terminal view prints a finished block once, into the scrollback, and redraws only the tail.
A block is finished when nothing that can still arrive would change how it renders:

- outside a fenced code block, at a blank line (the paragraph, list or table before it is over);
- at a complete ATX heading line (``# Title``);
- at the complete closing line of a fenced code block (a fence of the same character, at least as
  long as the opening one).

Pure functions on strings: no terminal, no rich.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MarkdownSplitter", "split_blocks"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")


def _fence(line: str) -> tuple[str, int, str] | None:
    """(fence character, length, info string) when ``line`` is a code fence."""
    match = _FENCE.match(line)
    if match is None:
        return None
    marks, info = match.group(1), match.group(2)
    if marks[0] == "`" and "`" in info:
        return None  # a backtick fence's info string cannot contain backticks
    return marks[0], len(marks), info.strip()


@dataclass(slots=True)
class MarkdownSplitter:
    """Incremental `split_blocks`: feed the whole text so far, get the blocks that newly finished.

    Each line is examined once, when its newline arrives, so a call costs only what was added.
    """

    _done: int = 0  # offset in the text where the unfinished part starts
    _scanned: int = 0  # offset of the first line not examined yet
    _fence_char: str = ""
    _fence_len: int = 0

    def feed(self, text: str) -> list[str]:
        """The blocks finished in ``text`` since the previous call (``text`` only ever grows)."""
        blocks: list[str] = []
        start, pos = self._done, self._scanned
        while True:
            end = text.find("\n", pos)
            if end < 0:
                break
            line = text[pos:end]
            pos = end + 1
            if self._fence_char:
                fence = _fence(line)
                if (
                    fence is not None
                    and fence[0] == self._fence_char
                    and fence[1] >= self._fence_len
                    and not fence[2]
                ):
                    self._fence_char, self._fence_len = "", 0
                    blocks.append(text[start:pos])
                    start = pos
                continue
            if not line.strip():
                if text[start:pos].strip():
                    blocks.append(text[start:pos])
                start = pos  # blank lines between blocks belong to no block
                continue
            fence = _fence(line)
            if fence is not None:
                self._fence_char, self._fence_len = fence[0], fence[1]
            elif _HEADING.match(line):
                blocks.append(text[start:pos])
                start = pos
        self._done, self._scanned = start, pos
        return [block.strip("\n") for block in blocks]

    def tail(self, text: str) -> str:
        """The unfinished rest of ``text`` (after the last finished block), without leading newlines."""
        return text[self._done :].lstrip("\n")


def split_blocks(text: str) -> tuple[list[str], str]:
    """Split markdown into its finished blocks and the unfinished tail."""
    splitter = MarkdownSplitter()
    blocks = splitter.feed(text)
    return blocks, splitter.tail(text)
