"""ConversationStore on real SQLite files: what is logged comes back, searchable, and nothing is lost."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cllm import FinishReason, Response, ToolCall, Usage
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


def tool_result(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


WEATHER_CALL = ToolCall("call_1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}')
TIME_CALL = ToolCall("call_2", "get_time", {"tz": "CET"}, '{"tz":"CET"}')
TOOL_RESPONSE = Response(
    text="Let me check.",
    reasoning="The user wants weather and time.",
    tool_calls=[WEATHER_CALL, TIME_CALL],
    finish_reason=FinishReason.TOOL_CALLS,
    raw_finish_reason="tool_calls",
    usage=Usage(prompt_tokens=12, completion_tokens=30, total_tokens=42, reasoning_tokens=7),
    cost=0.00042,
    model="gpt-4o-2024-08-06",
    ttft=0.25,
    duration=1.5,
)


def test_a_response_round_trips_with_tool_calls_and_usage(store: ConversationStore) -> None:
    conv = store.create_conversation(model="openai/gpt-4o")
    logged = store.log_response(
        conv.id,
        TOOL_RESPONSE,
        model="openai/gpt-4o",
        messages_in=[user("Weather and time in Paris?")],
        prompt="Weather and time in Paris?",
        options={"temperature": 0, "max_tokens": 200},
    )
    fetched = store.get_response(logged.id)
    assert fetched == logged
    assert fetched.conversation_id == conv.id
    assert fetched.model == "openai/gpt-4o"
    assert fetched.response_model == "gpt-4o-2024-08-06"
    assert fetched.text == "Let me check."
    assert fetched.reasoning == "The user wants weather and time."
    assert fetched.tool_calls == [
        {
            "id": "call_1",
            "name": "get_weather",
            "arguments": {"city": "Paris"},
            "arguments_json": '{"city": "Paris"}',
        },
        {"id": "call_2", "name": "get_time", "arguments": {"tz": "CET"}, "arguments_json": '{"tz":"CET"}'},
    ]
    assert fetched.finish_reason == "tool_calls"
    assert fetched.usage == {
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "total_tokens": 42,
        "reasoning_tokens": 7,
        "cached_tokens": None,
    }
    assert fetched.cost == 0.00042
    assert (fetched.ttft, fetched.duration) == (0.25, 1.5)
    assert fetched.options == {"temperature": 0, "max_tokens": 200}
    assert not fetched.interrupted
    assert fetched.message() == TOOL_RESPONSE.message()
    data = json.loads(json.dumps(fetched.to_dict()))
    for key in ["id", "conversation_id", "model", "prompt", "text", "reasoning", "tool_calls"]:
        assert data[key] == getattr(fetched, key)
    assert {"finish_reason", "usage", "cost", "interrupted", "created"} <= data.keys()


@pytest.mark.parametrize(
    "response",
    [
        Response(text="plain"),
        Response(text=""),
        Response(text="", tool_calls=[WEATHER_CALL]),
        Response(refusal="no", finish_reason=FinishReason.CONTENT_FILTER, raw_finish_reason="content_filter"),
        Response(tool_calls=[ToolCall("c", "f", None, '{"a": ', error="Expecting value")]),
    ],
)
def test_the_logged_message_is_the_responses_message(store: ConversationStore, response: Response) -> None:
    conv = store.create_conversation()
    logged = store.log_response(conv.id, response, model="m", messages_in=[user("x")])
    assert logged.message() == response.message()
    assert logged.refusal == response.refusal
    assert logged.raw_finish_reason == response.raw_finish_reason


def test_history_reproduces_a_tool_using_conversation(store: ConversationStore) -> None:
    conv = store.create_conversation(model="m", system="Answer briefly.")
    q1 = user("Weather and time in Paris?")
    store.log_response(conv.id, TOOL_RESPONSE, model="m", messages_in=[q1], prompt=q1["content"])
    results = [tool_result("call_1", '{"temp": 21}'), tool_result("call_2", "14:05")]
    answer = Response(text="21 °C, 14:05.", finish_reason=FinishReason.STOP)
    store.log_response(conv.id, answer, model="m", messages_in=results)
    q2 = user("Thanks!")
    store.log_response(
        conv.id, Response(text="You're welcome."), model="m", messages_in=[q2], prompt="Thanks!"
    )

    assert store.history(conv.id) == [
        {"role": "system", "content": "Answer briefly."},
        q1,
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
                },
            ],
        },
        *results,
        {"role": "assistant", "content": "21 °C, 14:05."},
        q2,
        {"role": "assistant", "content": "You're welcome."},
    ]


def test_history_of_an_unknown_conversation_is_an_error(store: ConversationStore) -> None:
    with pytest.raises(StoreError, match="no conversation 'nope'"):
        store.history("nope")
    with pytest.raises(StoreError, match="no conversation 'nope'"):
        store.log_response("nope", Response(text="x"), model="m", messages_in=[])


def test_an_interrupted_partial_answer_is_kept(store: ConversationStore) -> None:
    conv = store.create_conversation()
    partial = Response(text="The first half of", interrupted=True, error="interrupted by the user")
    logged = store.log_response(conv.id, partial, model="m", messages_in=[user("tell me")], prompt="tell me")
    again = store.get_response(logged.id)
    assert again is not None and again.interrupted and again.text == "The first half of"
    assert again.error == "interrupted by the user"
    assert again.finish_reason is None
    assert store.history(conv.id)[-1] == {"role": "assistant", "content": "The first half of"}


def test_an_interrupted_tool_call_does_not_break_the_next_turn(store: ConversationStore) -> None:
    conv = store.create_conversation()
    cut = Response(
        tool_calls=[ToolCall("c9", "search", None, '{"q": "ca', error="unterminated")], interrupted=True
    )
    store.log_response(conv.id, cut, model="m", messages_in=[user("search cats")])
    store.log_response(conv.id, Response(text="ok"), model="m", messages_in=[user("never mind")])
    history = store.history(conv.id)
    assert not any("tool_calls" in m for m in history)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


def test_conversation_gets_title_model_and_system_from_its_turns(store: ConversationStore) -> None:
    conv = store.create_conversation()
    assert (conv.title, conv.model, conv.system) == (None, None, None)
    store.log_response(
        conv.id, Response(text="a"), model="m1", messages_in=[user("x")], prompt="First question\nmore"
    )
    store.log_response(
        conv.id, Response(text="b"), model="m2", messages_in=[user("y")], prompt="Second", system="Be terse."
    )
    again = store.get_conversation(conv.id)
    assert again is not None
    assert (again.title, again.model, again.system) == ("First question", "m2", "Be terse.")
    assert again.created == conv.created and again.updated > conv.updated
    assert store.history(conv.id)[0] == {"role": "system", "content": "Be terse."}
    long = store.create_conversation(title="  A first line\nand a second " + "x" * 500)
    assert long.title == "A first line"
    titled = store.create_conversation(title="Mine")
    store.log_response(titled.id, Response(text="a"), model="m", messages_in=[user("x")], prompt="Other")
    assert store.get_conversation(titled.id).title == "Mine"  # type: ignore[union-attr]


def test_conversations_list_most_recently_updated_first(store: ConversationStore) -> None:
    assert store.latest_conversation() is None
    assert store.list_conversations() == []
    a = store.create_conversation(title="a")
    b = store.create_conversation(title="b")
    c = store.create_conversation(title="c")
    assert [x.id for x in store.list_conversations()] == [c.id, b.id, a.id]
    store.log_response(a.id, Response(text="x"), model="m", messages_in=[user("x")])
    assert [x.title for x in store.list_conversations()] == ["a", "c", "b"]
    assert [x.title for x in store.list_conversations(limit=1, offset=1)] == ["c"]
    latest = store.latest_conversation()
    assert latest is not None and latest.id == a.id
    assert store.get_conversation("missing") is None


def test_responses_newest_first_filtered_by_conversation(store: ConversationStore) -> None:
    one, two = store.create_conversation(), store.create_conversation()
    ids = []
    for i in range(6):
        conv = one if i % 2 == 0 else two
        ids.append(
            store.log_response(conv.id, Response(text=f"r{i}"), model="m", messages_in=[user(f"q{i}")]).id
        )
    assert [r.id for r in store.responses()] == ids[::-1]
    assert [r.id for r in store.responses(limit=2)] == ids[:3:-1]
    assert [r.text for r in store.responses(conversation_id=one.id)] == ["r4", "r2", "r0"]
    assert len(store.responses(limit=None)) == 6
    assert store.responses(limit=0) == []
    assert sorted(ids) == ids  # ids are time-ordered


NASTY = ['"foo', "AND", "OR", "NOT x", "*", "-x", "a:b", "NEAR(", "prompt:", "'", "\\", "%_", "\u202e", "🎉"]


def _log(
    store: ConversationStore, conv_id: str, prompt: str, text: str = "", reasoning: str = ""
) -> LoggedResponse:
    return store.log_response(
        conv_id,
        Response(text=text, reasoning=reasoning),
        model="m",
        messages_in=[user(prompt)],
        prompt=prompt,
    )


def test_full_text_search_over_prompt_text_and_reasoning(store: ConversationStore) -> None:
    conv = store.create_conversation()
    old = _log(store, conv.id, "how do pipes stream?", text="Line buffering matters.")
    mid = _log(
        store, conv.id, "café au lait", text="Un café, s'il vous plaît.", reasoning="thinking about coffee"
    )
    new = _log(store, conv.id, "東京の天気は 教えて", text='晴れ 🎉 -x a:b "foo AND')
    other = store.create_conversation()
    newest = _log(store, other.id, "pipes again", text="yes")

    def found(q: str, **kw: Any) -> list[str]:
        return [r.id for r in store.responses(query=q, **kw)]

    assert found("pipes") == [newest.id, old.id]
    assert found("pipes", conversation_id=conv.id) == [old.id]
    assert found("buffer") == [old.id]  # prefix match on the answer
    assert found("coffee") == [mid.id]  # reasoning is searched
    assert found("cafe plait") == [mid.id]  # accents ignored, every word required
    assert found("CAFÉ") == [mid.id]
    assert found("東京の天気は") == [new.id]
    assert found("晴れ") == [new.id]
    assert found('"foo AND -x a:b') == [new.id]
    assert found("pipes zebra") == []
    assert found("   ") == [newest.id, new.id, mid.id, old.id]  # no words: no filter
    for q in NASTY:
        store.responses(query=q)  # never an FTS syntax error


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


def test_options_json_cannot_represent_are_kept_as_text(store: ConversationStore) -> None:
    conv = store.create_conversation()
    logged = store.log_response(
        conv.id, Response(text="x"), model="m", messages_in=[], options={"stop": {1, 2}}
    )
    assert logged.options == {"stop": "{1, 2}"}


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
    assert store_migrations.migrate(conn, tmp_path / "m.db") == []
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


def test_one_store_shared_by_threads_loses_nothing(store: ConversationStore) -> None:
    convs = [store.create_conversation() for _ in range(4)]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                conv = convs[(n + i) % len(convs)]
                _log(store, conv.id, f"t{n} m{i}", text=f"t{n}-{i}")
                store.history(conv.id)
                store.responses(limit=5, query=f"t{n}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    texts = {r.text for r in store.responses(limit=None)}
    assert texts == {f"t{n}-{i}" for n in range(8) for i in range(25)}


def test_the_default_path_is_in_cllm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLLM_HOME", str(tmp_path / "home"))
    with ConversationStore() as store:
        assert store.path == tmp_path / "home" / "cllm.db"
        store.create_conversation()
    assert (tmp_path / "home" / "cllm.db").is_file()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(),
    reasoning=st.text(),
    prompt=st.none() | st.text(),
    arguments=st.lists(json_values, max_size=3),
    content=json_values,
)
def test_any_response_comes_back_as_it_went_in(
    store: ConversationStore,
    text: str,
    reasoning: str,
    prompt: str | None,
    arguments: list[Any],
    content: Any,
) -> None:
    calls = [ToolCall(f"id{i}", f"f{i}", a, json.dumps(a)) for i, a in enumerate(arguments)]
    response = Response(text=text, reasoning=reasoning, tool_calls=calls)
    conv = store.create_conversation()
    messages_in = [{"role": "user", "content": content}]
    logged = store.log_response(conv.id, response, model="m", messages_in=messages_in, prompt=prompt)
    again = store.get_response(logged.id)
    assert again == logged
    assert (again.text, again.reasoning, again.prompt, again.messages_in) == (
        text,
        reasoning,
        prompt,
        messages_in,
    )
    assert [c["arguments"] for c in again.tool_calls] == arguments
    assert store.history(conv.id) == [*messages_in, response.message()]


def test_the_store_does_not_import_litellm(tmp_path: Path) -> None:
    code = (
        "import sys; from cllm.store import ConversationStore; "
        f"ConversationStore({str(tmp_path / 'x.db')!r}).close(); print('litellm' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
