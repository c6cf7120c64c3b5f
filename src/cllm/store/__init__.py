"""Conversations and logged responses in SQLite, shared by the CLI and the server.

``ConversationStore(path)`` opens (creating and migrating as needed) one database file; the
default is ``cllm.db`` in `cllm.config.cllm_home()`. Only the standard library's ``sqlite3`` is
used, and importing this package does not import LiteLLM.
"""

from cllm.store.records import Conversation, LoggedResponse, StoreError
from cllm.store.sqlite import ConversationStore

__all__ = ["Conversation", "ConversationStore", "LoggedResponse", "StoreError"]
