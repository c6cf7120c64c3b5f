"""PostgresStore on a real PostgreSQL server: what only it has (migrations under an advisory lock,
the search vector, NUL-safe text, a server that is not there). The shared behaviour is in
test_store_contract.py."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest
from support.services import PostgresServer

from cllm import Response
from cllm.store import StoreError, open_store
from cllm.store import postgres as pg
from cllm.store.postgres import PostgresStore, redact, search_text, ts_query


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    code = (
        "import sys; from cllm.store import open_store; "
        "s = open_store(sys.argv[1]); s.create_conversation(title=sys.argv[2]); s.close()"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, postgres_url, f"p{i}"], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    with psycopg.connect(postgres_url) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM _migrations")]
    assert names == [m.__name__ for m in pg.MIGRATIONS]
    with PostgresStore(postgres_url) as store:
        assert sorted(c.title or "" for c in store.list_conversations()) == ["p0", "p1", "p2", "p3"]


def test_search_uses_the_gin_index(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as store:
        conv = store.create_conversation()
        for i in range(50):
            store.log_response(conv.id, Response(text=f"word{i} common"), model="m", messages_in=[user("q")])
        assert [r.text for r in store.responses(query="word49")] == ["word49 common"]
    with psycopg.connect(postgres_url) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT id FROM responses WHERE search @@ to_tsquery('simple', %s)",
                (ts_query("word4"),),
            )
        )
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'responses'"
            ).fetchall()
        )
    assert "responses_search" in plan
    assert (
        types["search"] == "tsvector"
        and types["messages_in"] == "jsonb"
        and types["created"].startswith("timestamp with time zone")
    )


def test_a_database_from_a_newer_cllm_is_refused(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO _migrations (name, applied) VALUES ('m999_future', now())")
    with pytest.raises(StoreError, match=r"written by a newer version of cllm.*m999_future"):
        PostgresStore(postgres_url)


def test_another_programs_tables_are_refused_untouched(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE conversations (x text)")
        conn.execute("INSERT INTO conversations VALUES ('theirs')")
    with pytest.raises(StoreError, match=r"already has a table 'conversations' and no _migrations table"):
        PostgresStore(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT x FROM conversations").fetchall() == [("theirs",)]
        assert conn.execute("SELECT to_regclass('_migrations')").fetchone() == (None,)


def test_an_unreachable_server_is_a_quick_clear_error_without_the_password(tmp_path: Any) -> None:
    url = f"postgresql://cllm:hunter2-secret@/cllm?host={tmp_path}"
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"cannot connect to the database postgresql://cllm:\*\*\*@") as info:
        PostgresStore(url)
    assert time.monotonic() - started < 10
    assert "hunter2" not in str(info.value)
    assert redact("host=/x password='a b' user=u") == "host=/x password=*** user=u"


def test_a_server_that_goes_away_is_a_store_error_then_recovers(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    with PostgresStore(url) as store:
        conv = store.create_conversation(title="before")
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (url.split("/")[-1].split("?")[0],),
            )
        # The pool checks a connection before lending it: a dropped one is replaced, not failed.
        assert store.get_conversation(conv.id) == conv


def test_nul_and_the_escape_character_round_trip(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as store:
        conv = store.create_conversation(title="a\x00b", system="s\uf8ff0\x00")
        text = "before\x00after \uf8ff\uf8ff0 tail"
        logged = store.log_response(
            conv.id,
            Response(text=text),
            model="m\x00",
            messages_in=[{"role": "user", "content": "x\x00y", "k\x00": ["\uf8ff"]}],
            prompt="p\x00q",
        )
        again = store.get_response(logged.id)
        assert again == logged
        assert (again.text, again.model, again.prompt) == (text, "m\x00", "p\x00q")
        assert again.messages_in == [{"role": "user", "content": "x\x00y", "k\x00": ["\uf8ff"]}]
        got = store.get_conversation(conv.id)
        assert got is not None and (got.title, got.system) == ("a\x00b", "s\uf8ff0\x00")
        assert [r.id for r in store.responses(query="after")] == [logged.id]


def test_secrets_never_reach_the_database(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as store:
        conv = store.create_conversation()
        store.log_response(
            conv.id,
            Response(text="hi"),
            model="m",
            messages_in=[user("hello")],
            options={
                "api_key": "sk-live-SECRET1",
                "extra_headers": {"Authorization": "SECRET2"},
                "max_tokens": 9,
            },
        )
    with psycopg.connect(postgres_url) as conn:
        dump = " ".join(str(row) for row in conn.execute("SELECT r::text FROM responses r"))
    assert "max_tokens" in dump and "SECRET" not in dump


def test_the_database_url_environment_variable_picks_postgresql(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLLM_DATABASE_URL", postgres_url)
    with open_store() as store:
        assert isinstance(store, PostgresStore)
        store.create_conversation(title="via env")
    with PostgresStore(postgres_url) as store:
        assert [c.title for c in store.list_conversations()] == ["via env"]
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.list_conversations()


def test_search_words_are_those_sqlite_sees() -> None:
    assert search_text("Café au-lait", None, "a:b_c 東京 🎉") == "cafe au lait a b c 東京"
    assert ts_query("   ") is None
    assert ts_query("🎉 *") == ""
    assert ts_query("café a:b") == "('cafe':*) & ('a' <-> 'b':*)"
    assert ts_query("'; DROP TABLE x") == "('drop':*) & ('table':*) & ('x':*)"
    long = "w " * 200_000
    assert len(search_text(long)) <= pg.SEARCH_MAX
