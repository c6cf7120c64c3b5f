"""The store contract: every `Store` (SQLite and PostgreSQL) keeps what is logged, finds it, and
loses nothing. Each test runs once per store, on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cllm import FinishReason, Response, ToolCall, Usage
from cllm.store import (
    ConversationStore,  # noqa: F401  (the SQLite store the type hints name)
    LoggedResponse,
    Store,
    StoreError,
    open_store,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        target = str(tmp_path / "data" / "cllm.db")
    else:
        target = request.getfixturevalue("postgres_url")
    with open_store(target, pool_size=4) as s:
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


def test_a_response_round_trips_with_tool_calls_and_usage(store: Store) -> None:
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
def test_the_logged_message_is_the_responses_message(store: Store, response: Response) -> None:
    conv = store.create_conversation()
    logged = store.log_response(conv.id, response, model="m", messages_in=[user("x")])
    assert logged.message() == response.message()
    assert logged.refusal == response.refusal
    assert logged.raw_finish_reason == response.raw_finish_reason


def test_history_reproduces_a_tool_using_conversation(store: Store) -> None:
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


def test_history_of_an_unknown_conversation_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="no conversation 'nope'"):
        store.history("nope")
    with pytest.raises(StoreError, match="no conversation 'nope'"):
        store.log_response("nope", Response(text="x"), model="m", messages_in=[])


def test_an_interrupted_partial_answer_is_kept(store: Store) -> None:
    conv = store.create_conversation()
    partial = Response(text="The first half of", interrupted=True, error="interrupted by the user")
    logged = store.log_response(conv.id, partial, model="m", messages_in=[user("tell me")], prompt="tell me")
    again = store.get_response(logged.id)
    assert again is not None and again.interrupted and again.text == "The first half of"
    assert again.error == "interrupted by the user"
    assert again.finish_reason is None
    assert store.history(conv.id)[-1] == {"role": "assistant", "content": "The first half of"}


def test_an_interrupted_tool_call_does_not_break_the_next_turn(store: Store) -> None:
    conv = store.create_conversation()
    cut = Response(
        tool_calls=[ToolCall("c9", "search", None, '{"q": "ca', error="unterminated")], interrupted=True
    )
    store.log_response(conv.id, cut, model="m", messages_in=[user("search cats")])
    store.log_response(conv.id, Response(text="ok"), model="m", messages_in=[user("never mind")])
    history = store.history(conv.id)
    assert not any("tool_calls" in m for m in history)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


def test_conversation_gets_title_model_and_system_from_its_turns(store: Store) -> None:
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


def test_conversations_list_most_recently_updated_first(store: Store) -> None:
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


def test_responses_newest_first_filtered_by_conversation(store: Store) -> None:
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


def _log(store: Store, conv_id: str, prompt: str, text: str = "", reasoning: str = "") -> LoggedResponse:
    return store.log_response(
        conv_id,
        Response(text=text, reasoning=reasoning),
        model="m",
        messages_in=[user(prompt)],
        prompt=prompt,
    )


def test_full_text_search_over_prompt_text_and_reasoning(store: Store) -> None:
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


def test_options_json_cannot_represent_are_kept_as_text(store: Store) -> None:
    conv = store.create_conversation()
    logged = store.log_response(
        conv.id, Response(text="x"), model="m", messages_in=[], options={"stop": {1, 2}}
    )
    assert logged.options == {"stop": "{1, 2}"}


def test_one_store_shared_by_threads_loses_nothing(store: Store) -> None:
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
    store: Store,
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


def test_renaming_a_conversation_keeps_its_place_and_responses(store: Store) -> None:
    first = store.create_conversation(title="first")
    second = store.create_conversation(title="second")
    logged = store.log_response(first.id, Response(text="an answer"), model="m", messages_in=[user("q")])
    order = [c.id for c in store.list_conversations()]
    before = store.get_conversation(first.id)
    renamed = store.rename_conversation(first.id, "  Rivers\n of   Europe ")
    assert renamed is not None and renamed.title == "Rivers of Europe"
    assert before is not None and renamed.updated == before.updated  # renaming does not reorder
    assert [c.id for c in store.list_conversations()] == order
    assert store.get_response(logged.id) is not None
    assert store.rename_conversation("no-such-id", "x") is None
    for bad in ("", " \n\t ", "x" * 201):
        with pytest.raises(ValueError):
            store.rename_conversation(second.id, bad)
    unchanged = store.get_conversation(second.id)
    assert unchanged is not None and unchanged.title == "second"
    longest = store.rename_conversation(second.id, "é" * 200)
    assert longest is not None and longest.title == "é" * 200
