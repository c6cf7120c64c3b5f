"""The store's pure rules: ids, search-query quoting, secret stripping, titles, history rebuilding."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cllm.store import ids
from cllm.store.records import (
    LoggedResponse,
    fts_query,
    history_messages,
    is_secret_option,
    strip_secrets,
    title_from_prompt,
)

NASTY_QUERIES = [
    '"foo',
    "AND",
    "OR NOT",
    "*",
    "-x",
    "a:b",
    "NEAR(a b)",
    "(",
    ")",
    "^x",
    "foo\"bar'",
    "''",
    "a + b",
]


def test_ids_are_26_crockford_characters_in_creation_order() -> None:
    made = [ids.new_id() for _ in range(2000)]
    assert all(len(i) == 26 and set(i) <= set(ids.ALPHABET) for i in made)
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_carry_their_time() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=2)
    made = ids.new_id()
    ms = 0
    for ch in made[:10]:
        ms = ms * 32 + ids.ALPHABET.index(ch)
    assert before <= datetime.fromtimestamp(ms / 1000, UTC) <= datetime.now(UTC) + timedelta(milliseconds=2)


def test_ids_stay_ordered_when_the_clock_steps_back() -> None:
    now = time.time_ns() // 1_000_000 + 10_000
    first = ids.new_id(now)
    assert ids.new_id(now - 5_000) > first


def test_utc_after_is_strictly_increasing_and_sorts_as_text() -> None:
    future = (datetime.now(UTC) + timedelta(seconds=5)).isoformat(timespec="microseconds")
    later = ids.utc_after(future)
    assert later > future
    assert datetime.fromisoformat(later) - datetime.fromisoformat(future) == timedelta(microseconds=1)
    assert ids.utc_after(None) < later
    assert len(ids.utc_now()) == len(later)


@pytest.fixture(scope="module")
def fts() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')")
    conn.executemany(
        "INSERT INTO t (body) VALUES (?)",
        [("a streaming café answer",), ('he said "foo and AND a:b -x',), ("東京 タワー 🎉",)],
    )
    return conn


def _search(conn: sqlite3.Connection, text: str) -> list[str]:
    match = fts_query(text)
    assert match is not None
    return [row[0] for row in conn.execute("SELECT body FROM t WHERE t MATCH ?", (match,))]


@pytest.mark.parametrize("text", NASTY_QUERIES)
def test_any_query_text_is_never_fts_syntax(fts: sqlite3.Connection, text: str) -> None:
    _search(fts, text)  # must not raise


@given(st.text(min_size=1).filter(lambda s: s.split() != [] and "\x00" not in s))
def test_arbitrary_text_is_a_valid_query(text: str) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
    conn.execute("SELECT * FROM t WHERE t MATCH ?", (fts_query(text),)).fetchall()


def test_query_words_all_match_as_prefixes_ignoring_accents(fts: sqlite3.Connection) -> None:
    assert _search(fts, "stream cafe") == ["a streaming café answer"]
    assert _search(fts, "stream zebra") == []
    assert _search(fts, '"foo') == ['he said "foo and AND a:b -x']
    assert _search(fts, "東京") == ["東京 タワー 🎉"]


def test_blank_query_is_no_query() -> None:
    assert fts_query("") is None
    assert fts_query(" \n\t") is None


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "API_KEY",
        "apiKey",
        "aws_secret_access_key",
        "aws_session_token",
        "token",
        "client_secret",
        "authorization",
        "headers",
        "extra_headers",
        "x-api-key",
        "password",
        "vertex_credentials",
    ],
)
def test_credential_options_are_recognised(name: str) -> None:
    assert is_secret_option(name)


@pytest.mark.parametrize(
    "name", ["max_tokens", "max_completion_tokens", "temperature", "api_base", "tools", "keywords", "top_k"]
)
def test_ordinary_options_are_kept(name: str) -> None:
    assert not is_secret_option(name)


def test_strip_secrets_goes_into_nested_values() -> None:
    options = {
        "temperature": 0,
        "api_key": "sk-1",
        "metadata": {"user": "u", "auth_token": "t"},
        "tools": [{"type": "function", "function": {"name": "f", "secret": "s"}}],
    }
    assert strip_secrets(options) == {
        "temperature": 0,
        "metadata": {"user": "u"},
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }


def test_title_is_the_first_line_shortened() -> None:
    assert title_from_prompt("\n\n  Summarize   this\nplease") == "Summarize this"
    long = title_from_prompt("word " * 40)
    assert long is not None and len(long) == 80 and long.endswith("…")
    assert title_from_prompt("  \n ") is None
    assert title_from_prompt(None) is None


def _turn(
    messages_in: list[dict[str, Any]], text: str = "", calls: tuple[str, ...] = (), interrupted: bool = False
) -> LoggedResponse:
    return LoggedResponse(
        id="r",
        conversation_id="c",
        model="m",
        prompt=None,
        system=None,
        messages_in=messages_in,
        text=text,
        reasoning="",
        tool_calls=[{"id": c, "name": "f", "arguments": {}, "arguments_json": "{}"} for c in calls],
        finish_reason=None,
        usage=None,
        cost=None,
        interrupted=interrupted,
        error=None,
        options={},
        ttft=None,
        duration=None,
        created="",
    )


USER = {"role": "user", "content": "q"}


def test_history_keeps_the_last_turns_tool_calls_for_the_caller_to_answer() -> None:
    messages = history_messages(None, [_turn([USER], calls=("a",))])
    assert [c["id"] for c in messages[-1]["tool_calls"]] == ["a"]
    assert messages[-1]["content"] is None


def test_history_drops_tool_calls_nothing_answered() -> None:
    turns = [
        _turn([USER], text="let me look", calls=("a", "b")),
        _turn([{"role": "tool", "tool_call_id": "a", "content": "1"}, USER], text="ok"),
    ]
    messages = history_messages("sys", turns)
    assert messages[0] == {"role": "system", "content": "sys"}
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["a"]


def test_history_drops_an_interrupted_last_turns_calls_but_keeps_its_text() -> None:
    messages = history_messages(None, [_turn([USER], calls=("a",), interrupted=True)])
    assert messages[-1] == {"role": "assistant", "content": ""}
    messages = history_messages(None, [_turn([USER], text="partial", calls=("a",), interrupted=True)])
    assert messages[-1] == {"role": "assistant", "content": "partial"}
