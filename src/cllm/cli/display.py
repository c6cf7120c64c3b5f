"""What the user sees while a model answers.

stdout carries the answer only: raw text written and flushed per chunk when piped (or with
``--raw``), markdown rendered live on a terminal. stderr carries everything else: a spinner until
the first token, the reasoning (dimmed), live progress while a tool call's arguments are written,
notes and errors. Spinner and tool progress are one redrawn status line on a terminal; on a pipe,
stderr gets whole lines only.

The markdown view redraws at a fixed frame rate from a snapshot of the text, prints each finished
block once into the scrollback and redraws only the unfinished tail, so a long or fast answer
neither flickers nor duplicates lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from cllm.cli.blocks import MarkdownSplitter
from cllm.core.events import (
    Attempt,
    Event,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["CallView", "MarkdownOutput", "OutputClosed", "PlainOutput", "StatusLine", "Ui"]

DIM, RESET = "\x1b[2m", "\x1b[0m"
CLEAR_LINE = "\r\x1b[2K"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# A local prompt this long takes seconds to read: worth a line on stderr even when it is a pipe.
LONG_PROMPT = 2048


class OutputClosed(Exception):
    """stdout was closed by its reader (``cllm ... | head``)."""


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def silence(stream: TextIO) -> None:
    """Send what is still buffered for a stream whose reader went away (``cllm ... | head``) to
    /dev/null, so the final flush at exit does not fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


# -- stderr ---------------------------------------------------------------------------------------


class StatusLine:
    """stderr: persistent text, plus (on a terminal) one status line redrawn in place."""

    def __init__(self, stream: TextIO, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self._lock = threading.RLock()
        self._shown = False
        self._at_line_start = True

    def set(self, text: str) -> None:
        """Show ``text`` as the status line (terminal only), replacing the previous one."""
        if not self.tty:
            return
        width = max(10, shutil.get_terminal_size().columns - 1)
        if len(text) > width:
            text = text[: width - 1] + "…"
        with self._lock:
            prefix = "" if self._at_line_start else "\n"
            self._at_line_start = True
            self._write(prefix + CLEAR_LINE + text)
            self._shown = True

    def clear(self) -> None:
        """Erase the status line."""
        with self._lock:
            if self._shown:
                self._write(CLEAR_LINE)
                self._shown = False

    def write(self, text: str, *, dim: bool = False) -> None:
        """Write text that stays (the status line, if any, is erased first)."""
        if not text:
            return
        with self._lock:
            self.clear()
            self._write(f"{DIM}{text}{RESET}" if dim and self.tty else text)
            self._at_line_start = text.endswith("\n")

    def line(self, text: str, *, dim: bool = False) -> None:
        """Write one whole line, starting a new line first if needed."""
        with self._lock:
            if not self._at_line_start:
                self.write("\n")
            self.write(text + "\n", dim=dim)

    def end_line(self) -> None:
        """Make sure what comes next starts on a new line."""
        with self._lock:
            if not self._at_line_start:
                self.write("\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not stop the answer


class Spinner:
    """A spinner on the status line until stopped; nothing when stderr is not a terminal."""

    def __init__(self, status: StatusLine, label: str) -> None:
        self.status = status
        self.label = label
        self.detail = ""  # what is happening while waiting (the local model reading the prompt)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.status.tty and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cllm-spinner", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.status.clear()

    def _run(self) -> None:
        started = time.monotonic()
        frame = 0
        while True:
            elapsed = time.monotonic() - started
            detail = f" · {self.detail}" if self.detail else ""
            self.status.set(f"{SPINNER[frame % len(SPINNER)]} {self.label}{detail} {elapsed:.1f}s")
            frame += 1
            if self._stop.wait(0.08):
                return


# -- stdout ---------------------------------------------------------------------------------------


class TextOutput(Protocol):
    def write(self, text: str) -> None: ...
    def end(self) -> None: ...


class PlainOutput:
    """Raw text, flushed per chunk so a pipe reader gets each piece as it arrives."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._last = "\n"

    def write(self, text: str) -> None:
        if not text:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError as e:
            silence(self.stream)
            raise OutputClosed from e
        self._last = text[-1]

    def end(self) -> None:
        """End the answer with a newline (for the shell prompt that follows)."""
        if self._last != "\n":
            self._last = "\n"
            with contextlib.suppress(OutputClosed):
                self.write("\n")


class NoOutput:
    """Nothing on stdout (``--json`` prints the response at the end instead)."""

    def write(self, text: str) -> None:
        pass

    def end(self) -> None:
        pass


class MarkdownOutput:
    """Markdown rendered live on a terminal: finished blocks printed once, the tail redrawn."""

    def __init__(self, console: Console, fps: float = 12.0) -> None:
        self.console = console
        self.interval = 1.0 / fps
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._splitter = MarkdownSplitter()
        self._printed = 0
        self._live: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._text = ""

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._parts.append(text)
        if self._thread is None:
            self._start()

    def end(self) -> None:
        """Print everything still unprinted and stop redrawing (the next write starts again)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._frame(final=True)
        live, self._live = self._live, None
        live.update("", refresh=True)
        live.stop()
        self._reset()

    def _reset(self) -> None:
        self._parts.clear()
        self._text = ""
        self._splitter = MarkdownSplitter()
        self._stop = threading.Event()

    def _start(self) -> None:
        from rich.live import Live

        self._live = Live(
            console=self.console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        )
        self._live.start()
        self._frame(final=False)
        self._thread = threading.Thread(target=self._run, name="cllm-render", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._frame(final=False)

    def _frame(self, *, final: bool) -> None:
        with self._lock:
            if len(self._parts) > 1:
                self._parts[:] = ["".join(self._parts)]
            text = self._parts[0] if self._parts else ""
        blocks = self._splitter.feed(text)
        tail = self._splitter.tail(text)
        if final and tail.strip():
            blocks.append(tail.strip("\n"))
            tail = ""
        from cllm.cli.render import Tail, block_renderable

        for block in blocks:
            self.console.print(block_renderable(block, gap=self._printed > 0))
            self._printed += 1
        if not final:
            self._live.update(Tail(tail, gap=self._printed > 0 and bool(tail.strip())), refresh=True)


@contextlib.contextmanager
def quiet_terminal(stream: TextIO) -> Iterator[None]:
    """While an answer streams to a terminal: no echo of typed keys or ``^C`` into the live area,
    and no flush of pending output when Ctrl-C is pressed (it would leave the view half-drawn)."""
    try:
        import termios

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError, AttributeError):
        yield
        return
    changed = list(saved)
    changed[3] = (changed[3] | termios.NOFLSH) & ~(termios.ECHO | termios.ECHOCTL)
    try:
        termios.tcsetattr(fd, termios.TCSANOW, changed)
    except termios.error:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(termios.error, OSError, ValueError):
            termios.tcsetattr(fd, termios.TCSANOW, saved)


# -- one model call -------------------------------------------------------------------------------


class Ui:
    """The process's streams and display settings."""

    def __init__(
        self,
        *,
        raw: bool = False,
        quiet_stdout: bool = False,
        show_reasoning: bool = True,
        debug: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.stdout_tty = _isatty(self.stdout)
        self.status = StatusLine(self.stderr, _isatty(self.stderr))
        self.show_reasoning = show_reasoning
        self.debug = debug
        self._console: Console | None = None
        self.output: TextOutput
        if quiet_stdout:
            self.output = NoOutput()
        elif raw or not self.stdout_tty:
            self.output = PlainOutput(self.stdout)
        else:
            self.output = MarkdownOutput(self.console())

    def console(self) -> Console:
        """A rich console on stdout (rich is imported only when the answer is rendered)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stdout, highlight=False)
        return self._console

    def note(self, text: str, *, dim: bool = True) -> None:
        """A line on stderr, after any answer text still pending on stdout."""
        self.output.end()
        self.status.line(text, dim=dim)

    def call(self, label: str) -> CallView:
        return CallView(self, label)


class CallView:
    """Shows one model call's events as they come."""

    def __init__(self, ui: Ui, label: str) -> None:
        self.ui = ui
        self.spinner = Spinner(ui.status, label)
        self._waiting = True
        self._in_reasoning = False
        self._in_text = False
        self._tool: dict[int, _ToolProgress] = {}
        self._model = label
        self._unlisten: Callable[[], None] | None = None
        self._said = ""

    def start(self) -> None:
        self.spinner.start()
        if self.spinner.label.startswith("local/"):
            from cllm import local

            self._unlisten = local.add_progress_listener(self._progress)

    def _progress(self, what: str, done: int, total: int) -> None:
        if not self._waiting:
            return
        if total:
            self.spinner.detail = f"{what}: {done:,} of {total:,} tokens"
        else:
            self.spinner.detail = what
        slow = "first use" in what or total >= LONG_PROMPT
        if not self.ui.status.tty and slow and what != self._said:
            # On a pipe, one line for each step that takes long (not one per batch of tokens).
            self._said = what
            self.ui.status.line(f"cllm: {what}" + (f" ({total:,} tokens)" if total else "") + "…")

    def event(self, event: Event) -> None:
        if self._waiting and isinstance(event, TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta):
            self._waiting = False
            self.spinner.stop()
        ui = self.ui
        if isinstance(event, TextDelta):
            if self._in_reasoning:
                self._end_reasoning()
            self._in_text = True
            ui.output.write(event.text)
        elif isinstance(event, ReasoningDelta):
            if ui.show_reasoning:
                self._pause_text()
                self._in_reasoning = True
                ui.status.write(event.text, dim=True)
        elif isinstance(event, ToolCallStart | ToolCallDelta | ToolCallEnd):
            self._pause_text()
            if self._in_reasoning:
                self._end_reasoning()
            self._tool_event(event)
        elif isinstance(event, Attempt):
            self._attempt(event)

    def _attempt(self, event: Attempt) -> None:
        """A new attempt, on stderr: ``retrying in 2.0 s (429 rate limit)``, ``continuing on MODEL
        after "connection reset"``; a partial answer that starts over is marked as abandoned."""
        ui = self.ui
        shown = not self._waiting
        if self._in_reasoning:
            self._end_reasoning()
        ui.status.clear()
        after = f'after "{event.error}"'
        if event.discard and shown:
            self._pause_text()
            if ui.stdout_tty:
                ui.note("✗ the answer above was abandoned: it starts over below")
            why = f" ({event.reason})" if event.reason else ""
            line = f"restarting on {event.model} {after}{why}"
            self._tool.clear()
        elif shown:
            line = f"continuing on {event.model} {after}"
        elif event.model != self._model:
            line = f"falling back to {event.model} ({event.error})"
        else:
            line = f"retrying in {event.delay:.1f} s ({event.error})"
        self._model = event.model
        if ui.stdout_tty:
            self._pause_text()
            ui.note(line)
        else:
            # Piped, the answer's text goes on as one: only stderr hears of the seam.
            ui.status.line(line, dim=True)

    def finish(self) -> None:
        """Stop the spinner and print everything still pending."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        self.spinner.stop()
        if self._in_reasoning:
            self._end_reasoning()
        self.ui.output.end()
        self.ui.status.clear()

    def _pause_text(self) -> None:
        if self._in_text:
            self.ui.output.end()
            self._in_text = False

    def _end_reasoning(self) -> None:
        self._in_reasoning = False
        self.ui.status.end_line()

    def _tool_event(self, event: ToolCallStart | ToolCallDelta | ToolCallEnd) -> None:
        status = self.ui.status
        progress = self._tool.get(event.index)
        if progress is None:
            progress = self._tool[event.index] = _ToolProgress(event.name)
            if not status.tty:
                status.line(f"tool call {event.name or '?'}: writing arguments…")
        if event.name and not progress.name:
            progress.name = event.name
        if isinstance(event, ToolCallDelta):
            progress.add(event.arguments_delta)
            now = time.monotonic()
            if status.tty and now - progress.shown >= 0.05:
                progress.shown = now
                status.set(progress.line())
        elif isinstance(event, ToolCallStart):
            status.set(progress.line())
        else:
            status.clear()
            size = len(event.arguments_json.encode())
            note = f" (invalid JSON: {event.error})" if event.error else ""
            status.line(
                f"tool call {event.name or '?'}{_args_preview(event.arguments_json)} · {size} bytes{note}"
            )


class _ToolProgress:
    # Only the end of the arguments is ever shown: keeping just that makes each delta cost the
    # same however long the arguments grow.
    KEEP = 4096

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.size = 0
        self.text = ""
        self.shown = 0.0

    def add(self, delta: str) -> None:
        self.size += len(delta.encode())
        self.text = (self.text + delta)[-self.KEEP :]

    def line(self) -> str:
        tail = " ".join(self.text.split())
        width = max(20, shutil.get_terminal_size().columns - 40)
        if len(tail) > width:
            tail = "…" + tail[-width:]
        return f"⚙ {self.name or '?'} · {self.size} bytes · {tail}"


def _args_preview(arguments_json: str, limit: int = 120) -> str:
    text = arguments_json
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(arguments_json), ensure_ascii=False)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"({text})"
