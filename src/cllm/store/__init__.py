"""Conversations and logged responses, shared by the CLI and the server.

``ConversationStore(path)`` opens (creating and migrating as needed) one SQLite file; the default
is ``cllm.db`` in `cllm.config.cllm_home()`. ``open_store(target)`` opens the store a target names:
a ``postgresql://`` URL opens a `cllm.store.postgres.PostgresStore` (the ``postgres`` extra), for
several server processes sharing one database; without a target, ``$CLLM_DATABASE_URL`` when set.
Both are a `Store`. Importing this package imports neither LiteLLM nor the PostgreSQL driver.
"""

from cllm.store.interface import DATABASE_URL_ENV, Store, is_database_url, open_store
from cllm.store.records import Conversation, LoggedResponse, StoreError
from cllm.store.sqlite import ConversationStore

__all__ = [
    "DATABASE_URL_ENV",
    "Conversation",
    "ConversationStore",
    "LoggedResponse",
    "Store",
    "StoreError",
    "is_database_url",
    "open_store",
]
