"""rich renderables for the live markdown view (imported only when stdout is a terminal)."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.markdown import Markdown
from rich.segment import Segment

__all__ = ["Tail", "block_renderable"]

Lines = list[list[Segment]]


def _blank(line: list[Segment]) -> bool:
    # Code blocks pad with lines of background colour: those are part of the block, not spacing.
    return all(not seg.text.strip() and not (seg.style and seg.style.bgcolor) for seg in line)


def _trim(lines: Lines) -> Lines:
    """Without the blank lines rich puts before and after some elements (lists, tables)."""
    start, end = 0, len(lines)
    while start < end and _blank(lines[start]):
        start += 1
    while end > start and _blank(lines[end - 1]):
        end -= 1
    return lines[start:end]


def _render(console: Console, options: ConsoleOptions, markdown: str) -> Lines:
    return _trim(console.render_lines(Markdown(markdown), options, pad=False))


def _emit(lines: Lines, gap: bool) -> RenderResult:
    if gap:
        yield Segment.line()
    for line in lines:
        yield from line
        yield Segment.line()


class Block:
    """A finished markdown block, with one blank line before it when it follows another."""

    def __init__(self, markdown: str, gap: bool) -> None:
        self.markdown = markdown
        self.gap = gap

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from _emit(_render(console, options, self.markdown), self.gap)


class Tail(Block):
    """The unfinished block, cut to its last lines so the live area always fits the terminal."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.markdown.strip():
            return
        lines = _render(console, options, self.markdown)
        room = max(1, console.size.height - 2 - int(self.gap))
        yield from _emit(lines[-room:], self.gap)


def block_renderable(markdown: str, gap: bool) -> Block:
    """The renderable that prints a finished block into the scrollback."""
    return Block(markdown, gap)
