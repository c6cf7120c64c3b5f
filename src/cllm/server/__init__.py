"""``cllm serve``: SSE and WebSocket streaming, an OpenAI-compatible endpoint and a web chat page.

Needs the ``server`` extra (Starlette and uvicorn). `create_app` builds the ASGI app from
`Settings`; `cllm.server.command` is the command line. This package's ``__init__`` imports only
the standard library, so ``cllm serve --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cllm.server.app import create_app
    from cllm.server.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from cllm.server.app import create_app

        return create_app
    if name == "Settings":
        from cllm.server.settings import Settings

        return Settings
    raise AttributeError(f"module 'cllm.server' has no attribute {name!r}")
