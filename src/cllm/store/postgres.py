"""`PostgresStore`: the conversation store on a PostgreSQL server, for several server processes.

The same interface and behaviour as the SQLite `ConversationStore`, through psycopg 3 and a
connection pool, so one store can be shared by threads and any number of processes on any number
of machines can use the same database:

- the schema is built by numbered migrations recorded in ``_migrations``, applied under an
  advisory lock, so replicas starting together migrate once;
- structured fields are ``jsonb``, times ``timestamptz``;
- search uses a ``tsvector`` column with a GIN index, built from the same words SQLite's FTS5
  index sees (letters and digits, lower-cased, accents removed), each query word matching as a
  prefix;
- every write that moves a conversation's ``updated`` time takes one transaction-scoped advisory
  lock, so those times stay strictly increasing across writers, as in SQLite.

PostgreSQL's text cannot hold the NUL character. Text that contains one (or this module's escape
character, U+F8FF) is stored escaped and comes back exactly as it went in.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cllm.core.response import Response
from cllm.store import records
from cllm.store.ids import new_id, utc_after, utc_now
from cllm.store.records import Conversation, LoggedResponse, StoreError

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["MIGRATIONS", "PostgresStore", "redact", "search_text", "ts_query"]

# Keys of the advisory locks this store takes (any 64-bit numbers, fixed for cllm).
MIGRATION_LOCK = 0x636C6C6D_0001
WRITE_LOCK = 0x636C6C6D_0002

CONNECT_TIMEOUT = 5
"""Seconds to wait for the server when connecting, and for a free connection from the pool."""

Migration = Callable[["psycopg.Connection[Any]"], None]


def m001_initial(conn: psycopg.Connection[Any]) -> None:
    """Conversations, responses, and the search index over responses."""
    conn.execute(
        """
        CREATE TABLE conversations (
            id text PRIMARY KEY,
            title text,
            model text,
            system text,
            created timestamptz NOT NULL,
            updated timestamptz NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX conversations_updated ON conversations (updated)")
    conn.execute(
        """
        CREATE TABLE responses (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            model text NOT NULL,
            response_model text,
            prompt text,
            system text,
            messages_in jsonb NOT NULL,
            text text NOT NULL,
            reasoning text NOT NULL,
            refusal text,
            tool_calls jsonb NOT NULL,
            finish_reason text,
            raw_finish_reason text,
            usage jsonb,
            cost double precision,
            interrupted boolean NOT NULL,
            error text,
            options jsonb NOT NULL,
            ttft double precision,
            duration double precision,
            created timestamptz NOT NULL,
            search tsvector NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX responses_conversation ON responses (conversation_id, seq)")
    conn.execute("CREATE INDEX responses_search ON responses USING gin (search)")


def m002_attempts(conn: psycopg.Connection[Any]) -> None:
    """Each response's attempts (retries, fallbacks); NULL for a single attempt."""
    conn.execute("ALTER TABLE responses ADD COLUMN attempts jsonb")


MIGRATIONS: list[Migration] = [m001_initial, m002_attempts]

_TABLES = ("conversations", "responses")


# -- pure helpers --------------------------------------------------------------------------------

_ESCAPE = "\uf8ff"
_ESCAPED = re.compile(_ESCAPE + "(.)", re.DOTALL)


def _encode_text(value: str) -> str:
    if "\x00" not in value and _ESCAPE not in value:
        return value
    return value.replace(_ESCAPE, _ESCAPE + _ESCAPE).replace("\x00", _ESCAPE + "0")


def _decode_text(value: str) -> str:
    if _ESCAPE not in value:
        return value
    return _ESCAPED.sub(lambda m: "\x00" if m.group(1) == "0" else m.group(1), value)


def _encode_json(value: Any) -> Any:
    """A JSON value whose strings (keys too) PostgreSQL's jsonb can hold."""
    if isinstance(value, str):
        return _encode_text(value)
    if isinstance(value, dict):
        return {_encode_text(str(k)): _encode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode_json(v) for v in value]
    return value


def _decode_json(value: Any) -> Any:
    if isinstance(value, str):
        return _decode_text(value)
    if isinstance(value, dict):
        return {_decode_text(k): _decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


# A JSON string, or a number written with an exponent.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?[eE][+-]?\d+')


def _fixed(match: re.Match[str]) -> str:
    token = match.group()
    if token.startswith('"'):
        return token
    value = float(token)
    return f"{int(value)}.0" if value.is_integer() else token


def dumps_jsonb(value: Any) -> str:
    """JSON text for a ``jsonb`` column that gives back the same Python value.

    jsonb keeps numbers as ``numeric`` and writes them without an exponent, so a float such as
    ``1e16`` would come back as an int: those are written ``10000000000000000.0`` instead.
    """
    text = json.dumps(value, ensure_ascii=False)
    return _JSON_TOKEN.sub(_fixed, text) if "e" in text or "E" in text else text


_WORD = re.compile(r"[^\W_]+")


def _fold(text: str) -> str:
    """Lower case without accents: what the search index compares."""
    decomposed = unicodedata.normalize("NFKD", text.replace("\x00", " "))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _words(text: str) -> list[str]:
    return _WORD.findall(_fold(text))


SEARCH_MAX = 150_000
"""Characters of words indexed per response: PostgreSQL refuses a ``tsvector`` over 1 MB."""


def search_text(*parts: str | None) -> str:
    """The text the search vector is built from: the words of ``parts``, folded, space-separated
    (at most `SEARCH_MAX` characters of them).

    Splitting into words here, as SQLite's ``unicode61`` tokenizer does, leaves PostgreSQL's
    parser nothing to interpret (URLs, e-mail addresses, hyphenated words stay plain words).
    """
    text = " ".join(word for part in parts if part for word in _words(part))
    return text if len(text) <= SEARCH_MAX else text[:SEARCH_MAX].rpartition(" ")[0]


def ts_query(text: str) -> str | None:
    """A ``to_tsquery('simple', ...)`` expression for rows containing every word of ``text``.

    Each whitespace-separated word matches as a prefix; one that holds several words (``a:b``)
    matches them as a phrase. Everything is quoted, so nothing in ``text`` is query syntax. None
    when ``text`` has no words at all; ``""`` when it has some but none with letters or digits
    (such a query finds nothing, as in SQLite).
    """
    words = text.split()
    if not words:
        return None
    groups = []
    for word in words:
        quoted = [f"'{part}'" for part in _words(word)]
        if quoted:
            quoted[-1] += ":*"
            groups.append("(" + " <-> ".join(quoted) + ")")
    return " & ".join(groups)


_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")
_PASSWORD_IN_DSN = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    return _PASSWORD_IN_DSN.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", url))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- the store -----------------------------------------------------------------------------------


def _import_driver() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as e:
        raise StoreError(
            f"PostgreSQL needs {e.name or 'psycopg'}: install the postgres extra: "
            "pip install 'cllm[postgres]'"
        ) from e
    return psycopg, psycopg_pool


class PostgresStore:
    """Conversations and the responses logged in them, in a PostgreSQL database.

    Args:
        url: a libpq connection URL (``postgresql://user:password@host:5432/dbname``; a unix
            socket directory goes in ``?host=/path``).
        min_size: connections kept open.
        max_size: most connections open at once (calls beyond wait for one).

    Raises:
        StoreError: from every method, when the database cannot be reached, read or written; the
            message names the database (never its password). A failed write changes nothing.
    """

    url: str

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4) -> None:
        self._psycopg, pool_module = _import_driver()
        self._url = url
        self.url = redact(url)
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._migrate()
        from psycopg.rows import dict_row

        pool = pool_module.ConnectionPool(
            url,
            min_size=min(min_size, max_size),
            max_size=max_size,
            timeout=CONNECT_TIMEOUT,
            kwargs={"row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT},
            check=pool_module.ConnectionPool.check_connection,
            open=False,
            name="cllm-store",
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except Exception as e:
            pool.close()
            raise StoreError(f"cannot connect to the database {self.url}: {e}") from e
        self._pool = pool

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn: psycopg.Connection[Any] = self._psycopg.connect(self._url, connect_timeout=CONNECT_TIMEOUT)
        except self._psycopg.Error as e:
            raise StoreError(f"cannot connect to the database {self.url}: {_message(e)}") from e
        return conn

    def _migrate(self) -> None:
        with self._connect() as conn:
            try:
                migrate(conn, self.url)
            except self._psycopg.Error as e:
                raise StoreError(f"cannot open the database {self.url}: {_message(e)}") from e

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, action: str, *, write: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside one transaction, committed at the end or rolled back.

        A write that moves ``updated`` times first takes `WRITE_LOCK`, so writers are serialized
        as SQLite's ``BEGIN IMMEDIATE`` serializes them.
        """
        pool = self._pool
        if pool is None:
            raise StoreError(f"the database {self.url} is closed")
        try:
            with pool.connection() as conn:
                if write:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield conn
        except self._psycopg.Error as e:  # the pool's timeouts are psycopg errors too
            raise StoreError(f"cannot {action} in {self.url}: {_message(e)}") from e

    def _next_updated(self, conn: psycopg.Connection[Any]) -> str:
        row = conn.execute("SELECT MAX(updated) AS latest FROM conversations").fetchone()
        latest = row["latest"] if row else None
        return utc_after(_iso(latest) if latest is not None else None)

    def _get_conversation(self, conn: psycopg.Connection[Any], conversation_id: str) -> Conversation | None:
        row = conn.execute("SELECT * FROM conversations WHERE id = %s", (conversation_id,)).fetchone()
        return _conversation(row) if row else None

    def _missing(self, conversation_id: str) -> StoreError:
        return StoreError(f"there is no conversation {conversation_id!r} in {self.url}")

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection. Closing twice is harmless; using a closed store raises `StoreError`."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    # -- conversations ---------------------------------------------------------------------

    def create_conversation(
        self, *, model: str | None = None, system: str | None = None, title: str | None = None
    ) -> Conversation:
        """Start a new, empty conversation (see `cllm.store.ConversationStore.create_conversation`)."""
        title = records.title_from_prompt(title)
        with self._transaction("create a conversation", write=True) as conn:
            now = self._next_updated(conn)
            conv = Conversation(
                id=new_id(), title=title, model=model, system=system, created=now, updated=now
            )
            conn.execute(
                "INSERT INTO conversations (id, title, model, system, created, updated)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (conv.id, _opt(title), _opt(model), _opt(system), _time(now), _time(now)),
            )
        return conv

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation with this id, or None."""
        with self._transaction("read a conversation") as conn:
            return self._get_conversation(conn, _encode_text(conversation_id))

    def latest_conversation(self) -> Conversation | None:
        """The conversation most recently created or added to, or None when there is none."""
        found = self.list_conversations(limit=1)
        return found[0] if found else None

    def list_conversations(self, limit: int = 50, offset: int = 0) -> list[Conversation]:
        """Conversations, the most recently updated first."""
        with self._transaction("list conversations") as conn:
            rows = conn.execute(
                "SELECT * FROM conversations ORDER BY updated DESC, id DESC LIMIT %s OFFSET %s",
                (max(limit, 0), max(offset, 0)),
            ).fetchall()
        return [_conversation(row) for row in rows]

    def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation and its responses; False when there was no such conversation."""
        with self._transaction("delete a conversation", write=True) as conn:
            cursor = conn.execute("DELETE FROM conversations WHERE id = %s", (_encode_text(conversation_id),))
            return cursor.rowcount > 0

    def rename_conversation(self, conversation_id: str, title: str) -> Conversation | None:
        """Give a conversation a new title (see `cllm.store.ConversationStore.rename_conversation`)."""
        title = records.clean_title(title)
        with self._transaction("rename a conversation", write=True) as conn:
            cursor = conn.execute(
                "UPDATE conversations SET title = %s WHERE id = %s",
                (_encode_text(title), _encode_text(conversation_id)),
            )
            if cursor.rowcount == 0:
                return None
            return self._get_conversation(conn, _encode_text(conversation_id))

    def history(self, conversation_id: str) -> list[dict[str, Any]]:
        """The whole conversation as OpenAI messages (see `cllm.store.ConversationStore.history`)."""
        with self._transaction("read a conversation") as conn:
            conv = self._get_conversation(conn, _encode_text(conversation_id))
            if conv is None:
                raise self._missing(conversation_id)
            rows = conn.execute(
                "SELECT * FROM responses WHERE conversation_id = %s ORDER BY seq", (conv.id,)
            ).fetchall()
        return records.history_messages(conv.system, [_logged_response(row) for row in rows])

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
        """Add a response to a conversation, in one transaction (see
        `cllm.store.ConversationStore.log_response`: credentials are never stored)."""
        from psycopg.types.json import Jsonb

        values = records.response_values(
            response, model=model, messages_in=messages_in, prompt=prompt, system=system, options=options
        )
        row_values: dict[str, Any] = {}
        for name, value in values.items():
            if name in records.JSON_COLUMNS:
                encoded = None if value is None else _encode_json(json.loads(value))
                row_values[name] = None if encoded is None else Jsonb(encoded, dumps=dumps_jsonb)
            elif isinstance(value, str):
                row_values[name] = _encode_text(value)
            else:
                row_values[name] = value
        row_values["interrupted"] = bool(values["interrupted"])
        with self._transaction("log a response", write=True) as conn:
            conv = self._get_conversation(conn, _encode_text(conversation_id))
            if conv is None:
                raise self._missing(conversation_id)
            now = self._next_updated(conn)
            row_values.update(id=new_id(), conversation_id=conv.id, created=_time(now))
            columns = ", ".join(row_values)
            marks = ", ".join(["%s"] * len(row_values))
            conn.execute(
                f"INSERT INTO responses ({columns}, search) VALUES ({marks}, to_tsvector('simple', %s))",
                (*row_values.values(), search_text(prompt, response.text, response.reasoning)),
            )
            conn.execute(
                "UPDATE conversations SET updated = %s, model = %s, system = COALESCE(%s, system),"
                " title = COALESCE(title, %s) WHERE id = %s",
                (_time(now), _opt(model), _opt(system), _opt(records.title_from_prompt(prompt)), conv.id),
            )
            row = conn.execute("SELECT * FROM responses WHERE id = %s", (row_values["id"],)).fetchone()
        assert row is not None  # written just now, in this transaction
        return _logged_response(row)

    def get_response(self, response_id: str) -> LoggedResponse | None:
        """The logged response with this id, or None."""
        with self._transaction("read a response") as conn:
            row = conn.execute(
                "SELECT * FROM responses WHERE id = %s", (_encode_text(response_id),)
            ).fetchone()
        return _logged_response(row) if row else None

    def responses(
        self, *, limit: int | None = 20, conversation_id: str | None = None, query: str | None = None
    ) -> list[LoggedResponse]:
        """Logged responses, newest first (see `cllm.store.ConversationStore.responses`)."""
        where: list[str] = []
        params: list[Any] = []
        if conversation_id is not None:
            where.append("conversation_id = %s")
            params.append(_encode_text(conversation_id))
        match = ts_query(query) if query is not None else None
        if match == "":
            return []
        if match is not None:
            where.append("search @@ to_tsquery('simple', %s)")
            params.append(match)
        sql = "SELECT * FROM responses"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT %s"
        params.append(None if limit is None else max(limit, 0))
        with self._transaction("read responses") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_logged_response(row) for row in rows]


def _opt(value: str | None) -> str | None:
    return None if value is None else _encode_text(value)


def _message(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _conversation(row: Mapping[str, Any]) -> Conversation:
    values: dict[str, Any] = {}
    for f in fields(Conversation):
        value = row[f.name]
        if isinstance(value, datetime):
            value = _iso(value)
        elif isinstance(value, str):
            value = _decode_text(value)
        values[f.name] = value
    return Conversation(**values)


def _logged_response(row: Mapping[str, Any]) -> LoggedResponse:
    values: dict[str, Any] = {}
    for f in fields(LoggedResponse):
        value = row[f.name]
        if f.name in records.JSON_COLUMNS:
            value = _decode_json(value)
        elif isinstance(value, datetime):
            value = _iso(value)
        elif isinstance(value, str):
            value = _decode_text(value)
        values[f.name] = value
    return LoggedResponse(**values)


# -- migrations ----------------------------------------------------------------------------------


def applied_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """The names of the migrations recorded in the database, in the order they were applied."""
    rows = conn.execute("SELECT name FROM _migrations ORDER BY applied, name").fetchall()
    return [row[0] if isinstance(row, Sequence) else row["name"] for row in rows]


def _tables(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()
    return {row[0] if isinstance(row, Sequence) else row["table_name"] for row in rows}


def migrate(conn: psycopg.Connection[Any], url: str, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the migrations the database lacks, under `MIGRATION_LOCK`; return those applied now.

    All of them run in one transaction together with the rows recording them: a failure leaves
    the database as it was, and a replica that waited for the lock finds them done.

    Raises:
        StoreError: the schema holds cllm's table names but no ``_migrations`` (another program's
            tables), or a migration this code does not know (a newer cllm wrote it).
    """
    migrations = MIGRATIONS if migrations is None else migrations
    known = [m.__name__ for m in migrations]
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        tables = _tables(conn)
        if "_migrations" not in tables:
            foreign = sorted(tables & set(_TABLES))
            if foreign:
                raise StoreError(
                    f"{url} already has a table {foreign[0]!r} and no _migrations table: it is not "
                    "cllm's; give cllm a database (or schema) of its own"
                )
            conn.execute("CREATE TABLE _migrations (name text PRIMARY KEY, applied timestamptz NOT NULL)")
            done: list[str] = []
        else:
            done = applied_migrations(conn)
        unknown = [name for name in done if name not in known]
        if unknown:
            raise StoreError(
                f"{url} was written by a newer version of cllm (it has schema migration {unknown[0]}, "
                "which this version does not know); upgrade cllm to use it"
            )
        for migration in migrations:
            name = migration.__name__
            if name in done:
                continue
            migration(conn)
            conn.execute("INSERT INTO _migrations (name, applied) VALUES (%s, %s)", (name, _time(utc_now())))
            applied.append(name)
    return applied
