"""ConversationStore on real SQLite files: what only SQLite has (files, WAL, FTS5, migrations on a
file). What every store does is in test_store_contract.py."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cllm import Response
from cllm.store import ConversationStore, LoggedResponse, StoreError
from cllm.store import migrations as store_migrations


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "cllm.db"


@pytest.fixture
def store(db: Path) -> Any:
    with ConversationStore(db) as s:
        yield s


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _log(store: ConversationStore, conv_id: str, prompt: str, text: str = "") -> LoggedResponse:
    return store.log_response(
        conv_id, Response(text=text), model="m", messages_in=[user(prompt)], prompt=prompt
    )


def test_deleting_a_conversation_removes_its_responses_from_search(
    store: ConversationStore, db: Path
) -> None:
    keep, gone = store.create_conversation(), store.create_conversation()
    kept = _log(store, keep.id, "shared words here")
    lost = _log(store, gone.id, "shared words there")
    assert store.delete_conversation(gone.id) is True
    assert store.delete_conversation(gone.id) is False
    assert store.get_conversation(gone.id) is None
    assert store.get_response(lost.id) is None
    assert [r.id for r in store.responses(query="shared")] == [kept.id]
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO responses_fts (responses_fts) VALUES ('integrity-check')"
        )  # raises if out of sync


def test_secrets_never_reach_the_file(store: ConversationStore, db: Path) -> None:
    conv = store.create_conversation()
    secrets = ["sk-live-SECRET1", "Bearer SECRET2", "SECRET3", "SECRET4"]
    logged = store.log_response(
        conv.id,
        Response(text="hi"),
        model="m",
        messages_in=[user("hello")],
        options={
            "api_key": secrets[0],
            "extra_headers": {"Authorization": secrets[1]},
            "aws_session_token": secrets[2],
            "metadata": {"client_secret": secrets[3], "run": 7},
            "max_tokens": 100,
            "api_base": "http://127.0.0.1:9/v1",
        },
    )
    assert logged.options == {"max_tokens": 100, "api_base": "http://127.0.0.1:9/v1", "metadata": {"run": 7}}
    store.close()
    raw = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.is_file())
    assert b"max_tokens" in raw
    for secret in secrets:
        assert secret.encode() not in raw


def test_migrations_are_recorded_and_applied_once(db: Path) -> None:
    with ConversationStore(db) as first:
        conv = first.create_conversation(title="kept")
    with ConversationStore(db) as second:
        assert second.get_conversation(conv.id) == conv
    with sqlite3.connect(db) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM _migrations")]
        assert names == [m.__name__ for m in store_migrations.MIGRATIONS]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def assert_refused_untouched(path: Path, match: str) -> None:
    """Opening `path` fails with a `StoreError` matching `match`, and the file is left as it was."""
    before = path.read_bytes()
    with pytest.raises(StoreError, match=match):
        ConversationStore(path)
    assert path.read_bytes() == before


def test_a_database_from_a_newer_cllm_is_refused_untouched(db: Path) -> None:
    ConversationStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO _migrations (name, applied) VALUES ('m999_future', 'x')")
    conn.close()
    assert_refused_untouched(db, r"cllm\.db was written by a newer version of cllm.*m999_future")


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    def m002_broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("THIS IS NOT SQL")

    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        store_migrations.migrate(conn, tmp_path / "m.db", [store_migrations.m001_initial, m002_broken])
    assert store_migrations.applied_migrations(conn) == ["m001_initial"]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables and "responses" in tables
    assert store_migrations.migrate(conn, tmp_path / "m.db") == [
        m.__name__ for m in store_migrations.MIGRATIONS[1:]
    ]
    conn.close()


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"{tmp_path}.*is a directory"):
        ConversationStore(tmp_path)


def test_a_path_under_a_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("keep me")
    with pytest.raises(StoreError, match=r"not-a-dir/sub/cllm\.db: .*not-a-dir is a file, not a directory"):
        ConversationStore(blocker / "sub" / "cllm.db")
    with pytest.raises(StoreError, match=r"not-a-dir/cllm\.db: .*not-a-dir is a file, not a directory"):
        ConversationStore(blocker / "cllm.db")
    assert blocker.read_text() == "keep me"


def test_an_unwritable_location_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match=r"/proc/cllm-test/cllm\.db"):
        ConversationStore("/proc/cllm-test/cllm.db")


def test_a_corrupt_file_is_a_clear_error_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "cllm.db"
    path.write_bytes(os.urandom(8192))
    assert_refused_untouched(path, r"cllm\.db.*corrupt or not a cllm database")


def test_another_programs_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE conversations (x)")
        conn.execute("INSERT INTO conversations VALUES ('theirs')")
    conn.close()
    assert_refused_untouched(path, r"other\.db is a SQLite database but not cllm's")


def test_a_full_disk_is_a_clear_error_and_loses_nothing(store: ConversationStore) -> None:
    conv = store.create_conversation()
    kept = [_log(store, conv.id, f"question {i}", text="short answer") for i in range(5)]
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[union-attr]
    # SQLite's own limit on the file's size: a write past it fails exactly as on a full disk.
    store._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # type: ignore[union-attr]
    big = "x" * 200_000
    with pytest.raises(StoreError, match=r"cllm\.db.*database or disk is full"):
        for i in range(10):
            _log(store, conv.id, f"big {i}", text=big)
    logged = store.responses(limit=None, conversation_id=conv.id)
    assert [r.id for r in logged if r.text != big][::-1] == [r.id for r in kept]
    assert store.get_conversation(conv.id) is not None
    store._conn.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[union-attr]
    after = _log(store, conv.id, "after", text="room again")
    assert store.history(conv.id)[-1] == {"role": "assistant", "content": "room again"}
    assert store.get_response(after.id) is not None


def test_a_closed_store_says_so(db: Path) -> None:
    store = ConversationStore(db)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_conversations()


def test_the_default_path_is_in_cllm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLLM_HOME", str(tmp_path / "home"))
    with ConversationStore() as store:
        assert store.path == tmp_path / "home" / "cllm.db"
        store.create_conversation()
    assert (tmp_path / "home" / "cllm.db").is_file()


def test_the_store_does_not_import_litellm(tmp_path: Path) -> None:
    code = (
        "import sys; from cllm.store import ConversationStore; "
        f"ConversationStore({str(tmp_path / 'x.db')!r}).close(); print('litellm' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
