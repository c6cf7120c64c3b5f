"""`ConversationStore`: conversations and logged responses in one SQLite file.

One connection per store, made with ``check_same_thread=False`` and used only while holding the
store's lock, so one instance can be shared by threads (calls are serialized). Several processes
(the CLI and the server) can use the same file at once: the database is in WAL mode, so readers
never wait for the writer, every write is one ``BEGIN IMMEDIATE`` transaction, and a writer that
finds the file locked waits up to `BUSY_TIMEOUT` seconds before giving up with a `StoreError`.
Calls block for well under a millisecond on a local disk; async code that cannot afford even
that, or the wait for another process's lock, runs them in a thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from cllm.core.response import Response
from cllm.store import records
from cllm.store.ids import new_id, utc_after
from cllm.store.migrations import check_schema, migrate
from cllm.store.records import Conversation, LoggedResponse, StoreError

__all__ = ["BUSY_TIMEOUT", "ConversationStore"]

BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another connection's write lock before failing."""


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _explain(error: sqlite3.Error) -> str:
    """SQLite's message, with what it means for the user when that is not obvious."""
    message = str(error)
    code = getattr(error, "sqlite_errorname", "") or ""
    if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "file is not a database" in message:
        return f"the file is corrupt or not a cllm database ({message})"
    if code == "SQLITE_FULL" or "disk is full" in message:
        return f"no space left to write ({message}); nothing saved before was lost"
    if code == "SQLITE_IOERR_WRITE":
        return f"the system refused the write: disk full, quota or file-size limit ({message})"
    if code.startswith("SQLITE_READONLY"):
        return f"the database cannot be written ({message})"
    if code.startswith("SQLITE_CANTOPEN"):
        return f"the file cannot be opened or created ({message})"
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return f"another process kept the database locked for over {BUSY_TIMEOUT:g} s ({message})"
    return message


class ConversationStore:
    """Conversations and the responses logged in them, in a SQLite database.

    Args:
        path: the database file; None for `cllm.config.default_db_path()`. Missing parent
            directories are created, and the schema is created or upgraded on open.

    Raises:
        StoreError: from every method, when the database cannot be opened, read or written; the
            message names the file and what went wrong. A failed write changes nothing.
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            from cllm.config import default_db_path

            path = default_db_path()
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise StoreError(f"cannot open the database {self.path}: it is a directory")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocker = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
            reason = f"{blocker} is a file, not a directory" if blocker else e.strerror or str(e)
            raise StoreError(f"cannot create the directory for the database {self.path}: {reason}") from e
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the database {self.path}: {_explain(e)}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            # Before anything writes (switching to WAL rewrites the header): leave a file that is
            # not ours exactly as it was.
            check_schema(conn, self.path)
            conn.execute("PRAGMA journal_mode = WAL")
            # With WAL, NORMAL cannot corrupt the database or lose a commit when a process dies;
            # only a power cut can undo the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn, self.path)
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"cannot open the database {self.path}: {_explain(e)}") from e
        except BaseException:
            conn.close()
            raise
        return conn

    # -- plumbing --------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the database {self.path} is closed")
        return self._conn

    @contextmanager
    def _transaction(self, action: str, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection inside one transaction, committed at the end or rolled back on error.

        Reads take one too, so that a read of several queries sees one snapshot. A write begins
        ``IMMEDIATE``: it waits for the write lock up front rather than failing halfway through.
        """
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    self._rollback(conn)
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback(conn)
                raise StoreError(f"cannot {action} in {self.path}: {_explain(e)}") from e

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            # When this fails SQLite has already rolled back; the transaction is over either way.
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    @staticmethod
    def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = conn.cursor()
        cursor.row_factory = _dict_row
        return list(cursor.execute(sql, params))

    def _next_updated(self, conn: sqlite3.Connection) -> str:
        latest = conn.execute("SELECT MAX(updated) FROM conversations").fetchone()[0]
        return utc_after(latest)

    def _get_conversation(self, conn: sqlite3.Connection, conversation_id: str) -> Conversation | None:
        rows = self._rows(conn, "SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        return records.conversation(rows[0]) if rows else None

    def _missing(self, conversation_id: str) -> StoreError:
        return StoreError(f"there is no conversation {conversation_id!r} in {self.path}")

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database. Closing twice is harmless; using a closed store raises `StoreError`."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ConversationStore({str(self.path)!r})"

    # -- conversations ---------------------------------------------------------------------

    def create_conversation(
        self, *, model: str | None = None, system: str | None = None, title: str | None = None
    ) -> Conversation:
        """Start a new, empty conversation. A ``title`` is shortened to its first line, as one
        made from the first prompt is."""
        title = records.title_from_prompt(title)
        with self._transaction("create a conversation", write=True) as conn:
            now = self._next_updated(conn)
            conv = Conversation(
                id=new_id(), title=title, model=model, system=system, created=now, updated=now
            )
            conn.execute(
                "INSERT INTO conversations (id, title, model, system, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (conv.id, conv.title, conv.model, conv.system, conv.created, conv.updated),
            )
        return conv

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation with this id, or None."""
        with self._transaction("read a conversation") as conn:
            return self._get_conversation(conn, conversation_id)

    def latest_conversation(self) -> Conversation | None:
        """The conversation most recently created or added to, or None when there is none."""
        found = self.list_conversations(limit=1)
        return found[0] if found else None

    def list_conversations(self, limit: int = 50, offset: int = 0) -> list[Conversation]:
        """Conversations, the most recently updated first."""
        with self._transaction("list conversations") as conn:
            rows = self._rows(
                conn,
                "SELECT * FROM conversations ORDER BY updated DESC, id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            )
        return [records.conversation(row) for row in rows]

    def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation and its responses; False when there was no such conversation."""
        with self._transaction("delete a conversation", write=True) as conn:
            cursor = conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            return cursor.rowcount > 0

    def rename_conversation(self, conversation_id: str, title: str) -> Conversation | None:
        """Give a conversation a new title (runs of whitespace become one space); None when there is
        no such conversation. Its ``updated`` time is kept, so renaming does not reorder the list.

        Raises:
            ValueError: the title is empty or longer than 200 characters.
        """
        title = records.clean_title(title)
        with self._transaction("rename a conversation", write=True) as conn:
            cursor = conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            if cursor.rowcount == 0:
                return None
            return self._get_conversation(conn, conversation_id)

    def history(self, conversation_id: str) -> list[dict[str, Any]]:
        """The whole conversation as OpenAI messages, ready to send with the next prompt.

        The conversation's system message (if any) first, then for each logged response in order
        its ``messages_in`` and its assistant message (text and tool calls, interrupted partial
        answers included). Tool calls that were never answered by a tool result and never can be
        (a later turn moved on, or the response was interrupted) are left out, since providers
        reject them.

        Raises:
            StoreError: there is no such conversation, or the database cannot be read.
        """
        with self._transaction("read a conversation") as conn:
            conv = self._get_conversation(conn, conversation_id)
            if conv is None:
                raise self._missing(conversation_id)
            rows = self._rows(
                conn, "SELECT * FROM responses WHERE conversation_id = ? ORDER BY rowid", (conversation_id,)
            )
        return records.history_messages(conv.system, [records.logged_response(row) for row in rows])

    # -- responses -------------------------------------------------------------------------

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
    ) -> LoggedResponse:
        """Add a response to a conversation, in one transaction.

        Bumps the conversation's ``updated`` time and records ``model`` (and ``system``, when
        given) as the conversation's current ones; a conversation with no title takes one from the
        first prompt. Credentials are never stored: option keys naming a key, token, secret,
        password, authorization or headers are dropped, at any depth.

        Raises:
            StoreError: there is no such conversation, or the database cannot be written (nothing
                is then changed).
        """
        values = records.response_values(
            response, model=model, messages_in=messages_in, prompt=prompt, system=system, options=options
        )
        with self._transaction("log a response", write=True) as conn:
            conv = self._get_conversation(conn, conversation_id)
            if conv is None:
                raise self._missing(conversation_id)
            now = self._next_updated(conn)
            values.update(id=new_id(), conversation_id=conversation_id, created=now)
            columns = ", ".join(values)
            marks = ", ".join("?" * len(values))
            conn.execute(f"INSERT INTO responses ({columns}) VALUES ({marks})", tuple(values.values()))
            conn.execute(
                "UPDATE conversations SET updated = ?, model = ?, system = COALESCE(?, system),"
                " title = COALESCE(title, ?) WHERE id = ?",
                (now, model, system, records.title_from_prompt(prompt), conversation_id),
            )
            rows = self._rows(conn, "SELECT * FROM responses WHERE id = ?", (values["id"],))
        return records.logged_response(rows[0])

    def get_response(self, response_id: str) -> LoggedResponse | None:
        """The logged response with this id, or None."""
        with self._transaction("read a response") as conn:
            rows = self._rows(conn, "SELECT * FROM responses WHERE id = ?", (response_id,))
        return records.logged_response(rows[0]) if rows else None

    def responses(
        self, *, limit: int | None = 20, conversation_id: str | None = None, query: str | None = None
    ) -> list[LoggedResponse]:
        """Logged responses, newest first.

        Args:
            limit: at most this many; None for all.
            conversation_id: only this conversation's.
            query: only those whose prompt, text or reasoning contain every word of it (each word
                also matching as a prefix, accents ignored). Any text is safe: quotes, ``AND``,
                ``*``, ``-x`` and ``a:b`` are searched for as words, never read as query syntax.
        """
        where: list[str] = []
        params: list[Any] = []
        if conversation_id is not None:
            where.append("conversation_id = ?")
            params.append(conversation_id)
        match = records.fts_query(query) if query is not None else None
        if match is not None:
            where.append("rowid IN (SELECT rowid FROM responses_fts WHERE responses_fts MATCH ?)")
            params.append(match)
        sql = "SELECT * FROM responses"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid DESC LIMIT ?"
        params.append(-1 if limit is None else max(limit, 0))
        with self._transaction("read responses") as conn:
            rows = self._rows(conn, sql, params)
        return [records.logged_response(row) for row in rows]
