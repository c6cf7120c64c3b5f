"""What every conversation store offers: `Store`, and `open_store` to pick one from a target.

SQLite (`cllm.store.ConversationStore`) is the default; PostgreSQL (`cllm.store.postgres.PostgresStore`)
is chosen by a ``postgresql://`` URL, given directly or in ``$CLLM_DATABASE_URL``. Both behave the
same, down to the order of listings and what a search finds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from cllm.core.response import Response
from cllm.store.records import Conversation, LoggedResponse

__all__ = ["DATABASE_URL_ENV", "Store", "is_database_url", "open_store"]

DATABASE_URL_ENV = "CLLM_DATABASE_URL"
"""The environment variable naming a database server to use instead of the SQLite file."""

_URL_SCHEMES = ("postgresql://", "postgres://")


@runtime_checkable
class Store(Protocol):
    """Conversations and their logged responses. Every method raises `StoreError` when the
    database cannot be read or written; a failed write changes nothing."""

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def create_conversation(
        self, *, model: str | None = None, system: str | None = None, title: str | None = None
    ) -> Conversation: ...

    def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    def latest_conversation(self) -> Conversation | None: ...

    def list_conversations(self, limit: int = 50, offset: int = 0) -> list[Conversation]: ...

    def delete_conversation(self, conversation_id: str) -> bool: ...

    def rename_conversation(self, conversation_id: str, title: str) -> Conversation | None: ...

    def history(self, conversation_id: str) -> list[dict[str, Any]]: ...

    def log_response(
        self,
        conversation_id: str,
        response: Response,
        *,
        model: str,
        messages_in: list[dict[str, Any]],
        prompt: str | None = None,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> LoggedResponse: ...

    def get_response(self, response_id: str) -> LoggedResponse | None: ...

    def responses(
        self, *, limit: int | None = 20, conversation_id: str | None = None, query: str | None = None
    ) -> list[LoggedResponse]: ...


def is_database_url(target: str | os.PathLike[str] | None) -> bool:
    """Whether ``target`` names a PostgreSQL server rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(_URL_SCHEMES)


def open_store(target: str | os.PathLike[str] | None = None, *, pool_size: int = 2) -> Store:
    """The store ``target`` names: a ``postgresql://`` URL, or a SQLite file path.

    Without a target, ``$CLLM_DATABASE_URL`` when it is set, else cllm's own SQLite file.
    ``pool_size`` is the most connections a PostgreSQL store opens (a server wants more).

    Raises:
        StoreError: the database cannot be opened (the message names it), or the PostgreSQL
            driver is not installed.
    """
    if target is None:
        target = os.environ.get(DATABASE_URL_ENV) or None
    if is_database_url(target):
        from cllm.store.postgres import PostgresStore

        return PostgresStore(str(target), max_size=pool_size)
    from cllm.store.sqlite import ConversationStore

    return ConversationStore(Path(target) if target is not None else None)
