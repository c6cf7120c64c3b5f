"""Splitting a long text into sections that each fit a token budget. Pure: the caller says how to count.

Boundaries are chosen in order of preference: between paragraphs, then lines, then sentences, then
words. A section is cut inside a word only when that one word is bigger than the whole budget.
Each section after the first may start with an overlap: the end of the section before it, from a
word boundary, so that the model sees the context it continues from.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Section", "chars_over_four", "split_sections"]

Counter = Callable[[str], int]

# Each pattern ends a piece; the separator stays with the piece before it.
_LEVELS = (
    re.compile(r"\n[ \t\r\f\v]*\n\s*"),  # paragraphs: a blank line (and any more whitespace)
    re.compile(r"\n\s*"),  # lines
    re.compile(r"[.!?\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]]*\s+"),  # sentences
    re.compile(r"\s+"),  # words
)


@dataclass(frozen=True, slots=True)
class Section:
    """One section of a text.

    ``text`` is what to send: ``overlap`` characters repeated from the end of the section before,
    then the section's own part, ``source[start:end]``. Joining ``text[overlap:]`` of every section
    gives the source back. ``tokens`` is the size of ``text`` as counted when splitting.
    """

    index: int
    text: str
    start: int
    end: int
    overlap: int
    tokens: int

    @property
    def own_text(self) -> str:
        """The section's own part, without the overlap."""
        return self.text[self.overlap :]

    def __str__(self) -> str:
        return self.text


def chars_over_four(text: str) -> int:
    """The usual estimate of tokens where the model's tokenizer is not at hand: characters / 4."""
    return -(-len(text) // 4)


def _pieces(text: str, start: int, end: int, level: int) -> list[tuple[int, int]]:
    if level >= len(_LEVELS):
        return [(start, end)]
    pieces, at = [], start
    for match in _LEVELS[level].finditer(text, start, end):
        if match.end() > at and match.end() < end:
            pieces.append((at, match.end()))
            at = match.end()
    pieces.append((at, end))
    return pieces


class _Splitter:
    def __init__(self, text: str, budget: int, count: Counter) -> None:
        self.text = text
        self.budget = budget
        self.count = count

    def size(self, start: int, end: int) -> int:
        return self.count(self.text[start:end])

    def split(self, start: int, end: int, level: int = 0) -> list[tuple[int, int]]:
        """Spans covering ``[start, end)``, each within the budget, cut at the highest level possible."""
        spans: list[tuple[int, int]] = []
        current: list[tuple[int, int, int]] = []  # pieces of the section being filled, with sizes
        total = 0

        def flush() -> None:
            nonlocal total
            # Sizes are added up per piece; the exact count of the joined text is checked once here.
            while len(current) > 1 and self.size(current[0][0], current[-1][1]) > self.budget:
                a, b, _ = current.pop()
                rest.appendleft((a, b))
            if current:
                spans.append((current[0][0], current[-1][1]))
            current.clear()
            total = 0

        rest = deque(_pieces(self.text, start, end, level))
        while rest:
            a, b = rest.popleft()
            n = self.size(a, b)
            if n > self.budget:
                flush()
                inner = self.split(a, b, level + 1) if level + 1 < len(_LEVELS) else self._cut_word(a, b)
                spans.extend(inner[:-1])
                last = inner[-1]
                current.append((last[0], last[1], self.size(*last)))
                total = current[-1][2]
                continue
            if current and total + n > self.budget:
                flush()
            current.append((a, b, n))
            total += n
        flush()
        return spans

    def _cut_word(self, start: int, end: int) -> list[tuple[int, int]]:
        """A single word bigger than the budget: the longest prefixes that fit, by binary search."""
        spans = []
        while start < end:
            low, high = start + 1, end
            while low < high:
                middle = (low + high + 1) // 2
                if self.size(start, middle) <= self.budget:
                    low = middle
                else:
                    high = middle - 1
            spans.append((start, low))
            start = low
        return spans

    def word_starts(self, start: int, end: int) -> list[int]:
        """Where words begin inside ``(start, end)``."""
        return [m.end() for m in _LEVELS[-1].finditer(self.text, start, end) if start < m.end() < end]

    def tail(self, starts: list[int], end: int, limit: int) -> int:
        """Of the word starts given, the first whose tail up to ``end`` is within ``limit`` tokens
        (``end`` when none is). Tails shrink as they start later: a binary search."""
        low, high = 0, len(starts)
        while low < high:
            middle = (low + high) // 2
            if self.size(starts[middle], end) <= limit:
                high = middle
            else:
                low = middle + 1
        return starts[low] if low < len(starts) else end


def split_sections(
    text: str, max_tokens: int, overlap: int = 0, count: Counter = chars_over_four
) -> list[Section]:
    """Split ``text`` into sections of at most ``max_tokens`` tokens, overlap included.

    Args:
        text: the text to split.
        max_tokens: the budget of each section (its overlap counts against it).
        overlap: at most this many tokens from the end of the previous section start each section
            after the first; less than half of ``max_tokens``.
        count: how to count tokens in a string.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap must be a non-negative integer, got {overlap!r}")
    if overlap * 2 >= max_tokens and overlap:
        raise ValueError(f"overlap ({overlap}) must be less than half of max_tokens ({max_tokens})")
    if not text:
        return []
    splitter = _Splitter(text, max_tokens - overlap, count)
    spans = splitter.split(0, len(text))
    sections: list[Section] = []
    previous: tuple[int, int] | None = None
    for index, (start, end) in enumerate(spans):
        lead = start
        if previous is not None and overlap:
            starts = splitter.word_starts(*previous)
            lead = splitter.tail(starts, start, overlap)
            # The exact count of overlap plus own part must fit too (tokens may merge across them).
            while lead < start and splitter.size(lead, end) > max_tokens:
                lead = next((at for at in starts if at > lead), start)
        body = text[lead:end]
        sections.append(Section(index, body, start, end, start - lead, count(body)))
        previous = (start, end)
    return sections
