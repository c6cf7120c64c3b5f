"""Big inputs in sections: `sections` (the splitter, counting in the model's tokens) and
`aprocess_file` (one answer per section, streamed in order, the first live)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cllm import _provider
from cllm._api import astream
from cllm.core.events import Event
from cllm.core.response import Response
from cllm.core.sections import Counter, Section, chars_over_four, split_sections
from cllm.errors import StreamInterrupted
from cllm.limits import Limits

__all__ = ["FilePart", "aprocess_file", "combine_prompt", "section_prompt", "sections"]


def _counter(model: str | None) -> Counter:
    if model is None:
        return chars_over_four
    return _provider.text_counter(model) or chars_over_four


def sections(
    text: str, max_tokens: int = 3000, overlap: int = 200, *, model: str | None = None
) -> list[Section]:
    """Split ``text`` into sections of at most ``max_tokens`` tokens, each after the first starting
    with up to ``overlap`` tokens from the end of the one before.

    Boundaries fall between paragraphs where possible, else lines, else sentences, and never
    inside a word (unless one word alone is over the budget). With ``model``, tokens are counted
    by the tokenizer LiteLLM uses for it (this imports LiteLLM); without, as characters / 4.
    Joining ``section.own_text`` of every section gives ``text`` back.
    """
    return split_sections(text, max_tokens, overlap, _counter(model))


@dataclass(frozen=True, slots=True)
class FilePart:
    """One step of `aprocess_file`'s output.

    Each section gives its answer's events (``event`` set), then one closing part (``event`` None)
    with the section's final ``response`` and, if it failed, its ``error``. ``index`` counts
    sections from 0; the combined answer, when asked for, comes last with ``combined`` True and
    ``section`` None.
    """

    index: int
    total: int
    section: Section | None
    event: Event | None = None
    response: Response | None = None
    error: Exception | None = None
    combined: bool = False

    @property
    def heading(self) -> str:
        """``Section i/n`` (or ``Combined``) for display."""
        return "Combined" if self.combined else f"Section {self.index + 1}/{self.total}"


def section_prompt(instruction: str, section: Section, total: int, name: str) -> str:
    """What the model is asked for one section."""
    where = f"section {section.index + 1} of {total} of {name}" if total > 1 else name
    return f"{instruction}\n\nThe text ({where}):\n\n{section.text}"


def combine_prompt(instruction: str, answers: list[str], name: str) -> str:
    parts = [f"## Section {i + 1}/{len(answers)}\n\n{text.strip()}" for i, text in enumerate(answers)]
    joined = "\n\n".join(parts)
    return f"{instruction}\n\nThe answers for each section of {name}:\n\n{joined}"


async def _read(path: str | os.PathLike[str]) -> tuple[str, str]:
    file = Path(path)

    def read() -> str:
        try:
            return file.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{file} is not UTF-8 text ({e.reason} at byte {e.start})") from e

    return await asyncio.to_thread(read), file.name


async def _answer(
    queue: asyncio.Queue[Any], model: str, prompt: str, limits: Limits | None, options: dict[str, Any]
) -> None:
    """One section's answer into ``queue``: its events, then its final response or the error."""
    try:
        async with astream(model, prompt, limits=limits, **options) as stream:
            async for event in stream:
                queue.put_nowait(event)
            queue.put_nowait((stream.response, None))
    except Exception as exc:  # the section's error, handed to the reader in its turn
        partial = exc.response if isinstance(exc, StreamInterrupted) else None
        queue.put_nowait((partial, exc))


async def aprocess_file(
    path: str | os.PathLike[str],
    instruction: str,
    *,
    model: str,
    limits: Limits | None = None,
    section_tokens: int = 3000,
    overlap: int = 200,
    concurrency: int = 4,
    combine: str | None = None,
    **options: Any,
) -> AsyncIterator[FilePart]:
    """Ask ``instruction`` of each section of a text file, and give the answers in order.

    The first section's answer streams live; later sections run meanwhile (up to ``concurrency``
    at once, under ``limits``) and their events are kept until it is their turn. With
    ``combine``, one more answer follows: that instruction applied to all the section answers.
    Other options go to each `cllm.astream` call. Leaving the loop early closes every stream.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
    text, name = await _read(path)
    await _provider.aload()
    parts = sections(text, section_tokens, overlap, model=model)
    total = len(parts)
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in parts]
    order = iter(range(total))

    async def worker() -> None:
        for index in order:
            prompt = section_prompt(instruction, parts[index], total, name)
            await _answer(queues[index], model, prompt, limits, options)

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, total))]
    answers: list[str] = []
    try:
        for index, section in enumerate(parts):
            async for part in _drain(queues[index], index, total, section):
                if part.event is None:
                    answers.append(part.response.text if part.response is not None else "")
                yield part
        if combine is not None and total:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            task = asyncio.create_task(
                _answer(queue, model, combine_prompt(combine, answers, name), limits, options)
            )
            workers.append(task)
            async for part in _drain(queue, total, total, None):
                yield part
    finally:
        for running in workers:
            running.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*workers, return_exceptions=True)


async def _drain(
    queue: asyncio.Queue[Any], index: int, total: int, section: Section | None
) -> AsyncIterator[FilePart]:
    combined = section is None
    while True:
        item = await queue.get()
        if isinstance(item, tuple):
            response, error = item
            yield FilePart(index, total, section, None, response, error, combined)
            return
        yield FilePart(index, total, section, item, combined=combined)
