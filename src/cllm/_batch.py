"""`batch` and `abatch`: many prompts to one model, each with its own result or error."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cllm import _sync
from cllm._api import astream
from cllm.core.events import Queued
from cllm.core.response import Response
from cllm.errors import CllmError, StreamInterrupted
from cllm.limits import Limits

__all__ = ["BatchInterrupted", "BatchItem", "BatchProgress", "abatch", "batch"]

BatchInput = str | Sequence[Mapping[str, Any]] | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BatchItem:
    """The outcome of one item: ``response`` when it succeeded, ``error`` when it failed (with the
    partial ``response`` when the failure came after some output). ``id`` is the item's own id, if
    it gave one."""

    index: int
    id: Any
    response: Response | None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a batch stands: what `progress=True` draws and what ``on_progress`` receives."""

    total: int
    done: int
    failed: int
    running: int
    waiting: int
    tokens: int
    cost: float
    elapsed: float

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def rate(self) -> float:
        """Items finished per second so far."""
        return self.finished / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds until the last item finishes, at the rate so far (None before the first)."""
        if not self.finished:
            return None
        return (self.total - self.finished) / self.rate if self.rate > 0 else None


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a `batch`: running streams were closed; ``results`` keeps, in input order,
    every item that had finished (None for the others)."""

    def __init__(self, results: list[BatchItem | None]) -> None:
        super().__init__("the batch was interrupted")
        self.results = results


@dataclass(frozen=True, slots=True)
class _Job:
    id: Any
    model: str
    prompt: str | list[dict[str, Any]]
    options: dict[str, Any]


def _job(raw: Any, model: str, options: Mapping[str, Any]) -> _Job:
    if isinstance(raw, str):
        return _Job(None, model, raw, dict(options))
    if isinstance(raw, Mapping):
        item = dict(raw)
        item_id = item.pop("id", None)
        prompt, messages = item.pop("prompt", None), item.pop("messages", None)
        if (prompt is None) == (messages is None):
            raise ValueError("a batch item needs exactly one of 'prompt' and 'messages'")
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"'prompt' must be a string, got {type(prompt).__name__}")
        if messages is not None and not isinstance(messages, list):
            raise ValueError(f"'messages' must be a list, got {type(messages).__name__}")
        item_model = item.pop("model", None) or model
        if not isinstance(item_model, str):
            raise ValueError("'model' must be a string")
        text_or_messages: str | list[dict[str, Any]] = (
            prompt if isinstance(prompt, str) else list(messages or ())
        )
        return _Job(item_id, item_model, text_or_messages, {**options, **item})
    if isinstance(raw, Sequence) and not isinstance(raw, bytes | bytearray):
        return _Job(None, model, [dict(m) for m in raw], dict(options))
    raise ValueError(f"a batch item is a prompt, a message list or a dict, not {type(raw).__name__}")


class _Tracker:
    """Counts what happens and tells the callback and the bar."""

    def __init__(self, total: int, callback: Callable[[BatchProgress], Any] | None, bar: Any) -> None:
        self.total = total
        self.callback = callback
        self.bar = bar
        self.started = time.perf_counter()
        self.done = self.failed = self.tokens = 0
        self.cost = 0.0
        self.running: set[int] = set()
        self.waiting: set[int] = set()
        self.told: set[int] = set()

    def snapshot(self) -> BatchProgress:
        return BatchProgress(
            self.total,
            self.done,
            self.failed,
            len(self.running),
            len(self.waiting),
            self.tokens,
            self.cost,
            time.perf_counter() - self.started,
        )

    def _changed(self) -> None:
        progress = self.snapshot()
        if self.bar is not None:
            self.bar.update(progress)
        if self.callback is not None:
            self.callback(progress)

    def start(self, index: int) -> None:
        # Told when it is known whether the item waits (`queued`) or not (`admitted`).
        self.running.add(index)

    def queued(self, index: int) -> None:
        self.running.discard(index)
        self.waiting.add(index)
        self._changed()

    def admitted(self, index: int) -> None:
        if index in self.waiting:
            self.waiting.discard(index)
            self.running.add(index)
            self._changed()
        elif index not in self.told:
            self._changed()
        self.told.add(index)

    def finish(self, index: int, response: Response | None, ok: bool) -> None:
        self.running.discard(index)
        self.waiting.discard(index)
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if response is not None:
            usage = response.usage
            if usage is not None:
                self.tokens += usage.total_tokens or (usage.prompt_tokens or 0) + (
                    usage.completion_tokens or 0
                )
            self.cost += response.cost or 0.0
        self._changed()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close(self.snapshot())


async def _run(
    index: int, raw: Any, model: str, limits: Limits | None, options: Mapping[str, Any], tracker: _Tracker
) -> BatchItem:
    item_id = raw.get("id") if isinstance(raw, Mapping) else None
    try:
        job = _job(raw, model, options)
    except (ValueError, TypeError) as exc:
        tracker.finish(index, None, ok=False)
        return BatchItem(index, item_id, None, exc)
    tracker.start(index)
    try:
        async with astream(job.model, job.prompt, limits=limits, **job.options) as stream:
            async for event in stream:
                if isinstance(event, Queued):
                    tracker.queued(index)
                else:
                    tracker.admitted(index)
            response = stream.response
    except (CllmError, ValueError, TypeError) as exc:
        partial = exc.response if isinstance(exc, StreamInterrupted) else None
        tracker.finish(index, partial, ok=False)
        return BatchItem(index, job.id, partial, exc)
    tracker.finish(index, response, ok=True)
    return BatchItem(index, job.id, response)


def _width(concurrency: int | None, limits: Limits | None) -> int:
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        return concurrency
    if limits is None:
        return 8
    if limits.concurrency is not None:
        # A few more than the limit, waiting in its queue, so a freed slot is taken at once.
        return max(limits.concurrency * 2, 8)
    return 64


def _bar(progress: bool, total: int) -> Any:
    if not progress or sys.stderr is None or not sys.stderr.isatty():
        return None
    from cllm._progress import ProgressBar

    return ProgressBar(total)


async def abatch(
    model: str,
    items: Iterable[BatchInput],
    *,
    limits: Limits | None = None,
    concurrency: int | None = None,
    progress: bool = False,
    on_progress: Callable[[BatchProgress], Any] | None = None,
    **options: Any,
) -> AsyncIterator[BatchItem]:
    """Run every item, yielding each `BatchItem` as it finishes.

    Args:
        model: the model for items that name none.
        items: prompts, message lists, or dicts with ``prompt`` or ``messages``, an optional ``id``,
            ``model`` and any per-item options.
        limits: a `cllm.Limits` every item waits under.
        concurrency: items running (or waiting under ``limits``) at once; by default 8 without
            ``limits``, twice its concurrency (at least 8) with one, 64 when it has only rates.
        progress: draw a progress bar on stderr when stderr is a terminal.
        on_progress: called with a `BatchProgress` whenever an item starts, waits or finishes.
        **options: for every item's `cllm.astream` call (``retries``, ``max_tokens``...).

    An item's failure is its ``error``: it never stops the others. Leaving the loop early (or
    cancelling) closes the running streams.
    """
    jobs = list(items)
    width = _width(concurrency, limits)
    tracker = _Tracker(len(jobs), on_progress, _bar(progress, len(jobs)))
    finished: asyncio.Queue[BatchItem] = asyncio.Queue()
    order = iter(range(len(jobs)))

    async def worker() -> None:
        for index in order:
            finished.put_nowait(await _run(index, jobs[index], model, limits, options, tracker))

    workers = [asyncio.create_task(worker()) for _ in range(min(width, len(jobs)))]
    try:
        for _ in jobs:
            yield await finished.get()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        tracker.close()


def batch(
    model: str,
    items: Iterable[BatchInput],
    *,
    limits: Limits | None = None,
    concurrency: int | None = None,
    progress: bool = False,
    on_progress: Callable[[BatchProgress], Any] | None = None,
    **options: Any,
) -> list[BatchItem]:
    """Run every item and return the `BatchItem`s in input order. Arguments as for `abatch`.

    Runs on cllm's background loop (``on_progress`` is called there). Ctrl-C closes the running
    streams and raises `BatchInterrupted`, which keeps the items that had finished.
    """
    jobs = list(items)
    results: list[BatchItem | None] = [None] * len(jobs)

    async def collect() -> None:
        async for item in abatch(
            model,
            jobs,
            limits=limits,
            concurrency=concurrency,
            progress=progress,
            on_progress=on_progress,
            **options,
        ):
            results[item.index] = item

    try:
        _sync.run(collect())
    except KeyboardInterrupt as exc:
        raise BatchInterrupted(results) from exc
    return [item for item in results if item is not None]
