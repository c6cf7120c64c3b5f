"""A batch's progress bar on stderr (rich), redrawn at a fixed rate from the latest figures."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

if TYPE_CHECKING:
    from cllm._batch import BatchProgress

__all__ = ["ProgressBar", "describe"]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe(progress: BatchProgress) -> str:
    """The figures in one line of plain text."""
    parts = [
        f"{progress.finished}/{progress.total}",
        f"{progress.done} done",
        f"{progress.failed} failed",
        f"{progress.running} running",
    ]
    if progress.waiting:
        parts.append(f"{progress.waiting} waiting")
    parts.append(f"{progress.tokens:,} tokens")
    if progress.cost:
        parts.append(f"${progress.cost:.4f}")
    parts.append(f"{progress.rate:.1f}/s")
    parts.append(f"ETA {_duration(progress.eta)}")
    return " · ".join(parts)


class ProgressBar:
    """done / failed / running, tokens, cost, rate and ETA under a bar; safe to update from any thread."""

    def __init__(self, total: int, console: Console | None = None) -> None:
        self._lock = threading.Lock()
        self._progress = Progress(
            BarColumn(),
            TextColumn("{task.fields[figures]}"),
            console=console or Console(stderr=True),
            refresh_per_second=8,
            transient=False,
        )
        self._task = self._progress.add_task("batch", total=total or 1, figures="")
        self._progress.start()

    def update(self, progress: BatchProgress) -> None:
        with self._lock:
            self._progress.update(self._task, completed=progress.finished, figures=describe(progress))

    def close(self, progress: BatchProgress) -> None:
        self.update(progress)
        self._progress.stop()
