"""The database schema, built by numbered migrations recorded in the ``_migrations`` table.

Each migration is a function ``mNNN_what(conn)`` listed in `MIGRATIONS`. `migrate` applies the
ones a database has not had yet, each in its own ``BEGIN IMMEDIATE`` transaction together with the
row recording it, so a crash leaves it either fully applied or not at all and two processes
opening a new database at once apply it once. Migrations are never edited once released: a schema
change is a new function at the end of the list.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from cllm.store.ids import utc_now
from cllm.store.records import StoreError

__all__ = ["MIGRATIONS", "applied_migrations", "check_schema", "migrate"]

Migration = Callable[[sqlite3.Connection], None]


def m001_initial(conn: sqlite3.Connection) -> None:
    """Conversations, responses, and the full-text index over responses."""
    conn.execute(
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            title TEXT,
            model TEXT,
            system TEXT,
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX conversations_updated ON conversations (updated)")
    # An explicit INTEGER PRIMARY KEY gives the FTS index a stable rowid to point at; it also
    # orders responses as they were written, whichever process wrote them.
    conn.execute(
        """
        CREATE TABLE responses (
            rowid INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            response_model TEXT,
            prompt TEXT,
            system TEXT,
            messages_in TEXT NOT NULL,
            text TEXT NOT NULL,
            reasoning TEXT NOT NULL,
            refusal TEXT,
            tool_calls TEXT NOT NULL,
            finish_reason TEXT,
            raw_finish_reason TEXT,
            usage TEXT,
            cost REAL,
            interrupted INTEGER NOT NULL,
            error TEXT,
            options TEXT NOT NULL,
            ttft REAL,
            duration REAL,
            created TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX responses_conversation ON responses (conversation_id, rowid)")
    conn.execute(
        """
        CREATE VIRTUAL TABLE responses_fts USING fts5 (
            prompt, text, reasoning,
            content = 'responses', content_rowid = 'rowid',
            tokenize = 'unicode61 remove_diacritics 2'
        )
        """
    )
    # External-content FTS: the triggers keep the index in step with the table.
    conn.execute(
        """
        CREATE TRIGGER responses_fts_insert AFTER INSERT ON responses BEGIN
            INSERT INTO responses_fts (rowid, prompt, text, reasoning)
            VALUES (new.rowid, new.prompt, new.text, new.reasoning);
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER responses_fts_delete AFTER DELETE ON responses BEGIN
            INSERT INTO responses_fts (responses_fts, rowid, prompt, text, reasoning)
            VALUES ('delete', old.rowid, old.prompt, old.text, old.reasoning);
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER responses_fts_update AFTER UPDATE ON responses BEGIN
            INSERT INTO responses_fts (responses_fts, rowid, prompt, text, reasoning)
            VALUES ('delete', old.rowid, old.prompt, old.text, old.reasoning);
            INSERT INTO responses_fts (rowid, prompt, text, reasoning)
            VALUES (new.rowid, new.prompt, new.text, new.reasoning);
        END
        """
    )


def m002_attempts(conn: sqlite3.Connection) -> None:
    """Each response's attempts (retries, fallbacks), as JSON; NULL for a single attempt."""
    conn.execute("ALTER TABLE responses ADD COLUMN attempts TEXT")


MIGRATIONS: list[Migration] = [m001_initial, m002_attempts]


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations recorded in the database, in the order they were applied."""
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]


def check_schema(
    conn: sqlite3.Connection, path: Path, migrations: list[Migration] | None = None
) -> list[str] | None:
    """Refuse a database this code cannot use, without writing to it.

    Returns the migrations the database has had, or None when it has no schema yet (a new file).

    Raises:
        StoreError: it is some other program's SQLite database, or it records a migration this code
            does not know (it was written by a newer cllm).
        sqlite3.DatabaseError: the file is not a SQLite database at all.
    """
    known = [m.__name__ for m in (MIGRATIONS if migrations is None else migrations)]
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if "_migrations" not in tables:
        foreign = [name for name in tables if not name.startswith("sqlite_")]
        if foreign:
            raise StoreError(
                f"{path} is a SQLite database but not cllm's (it has a table {foreign[0]!r} and no "
                "_migrations table); give cllm a file of its own"
            )
        return None
    done = applied_migrations(conn)
    unknown = [name for name in done if name not in known]
    if unknown:
        raise StoreError(
            f"{path} was written by a newer version of cllm (it has schema migration {unknown[0]}, "
            "which this version does not know); upgrade cllm to use it"
        )
    return done


def migrate(conn: sqlite3.Connection, path: Path, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the migrations `conn`'s database lacks; return the names of those applied now.

    `conn` must be in autocommit mode (``isolation_level=None``): transactions are explicit here.

    Raises:
        StoreError: as `check_schema`.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    done = check_schema(conn, path, migrations)
    if done is None:
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
        done = []
    applied = []
    for migration in migrations:
        name = migration.__name__
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while this one waited for the write lock.
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                migration(conn)
                conn.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, utc_now()))
                applied.append(name)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return applied
