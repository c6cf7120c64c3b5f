"""The local model's pure parts: prompts, tool plans, sampling options, output splitting, queueing."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cllm.errors import CllmError
from cllm.local._model import FifoLock
from cllm.local._output import CallOutput, TextOutput
from cllm.local._prompt import (
    LocalModelError,
    Sampling,
    Turn,
    call_schema,
    plan_tools,
    render_transcript,
    template_messages,
    to_turns,
    tools_instruction,
)

WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}
TOOLS = [{"type": "function", "function": WEATHER}, {"type": "function", "function": TIME}]


# -- messages → prompt ----------------------------------------------------------------------------


def test_a_conversation_with_a_tool_round_trip_renders_as_a_transcript() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Oslo?"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "snow"},
        {"role": "user", "content": "Thanks"},
    ]
    prompt = render_transcript(to_turns(messages), "TOOLS HERE")
    assert prompt == (
        "Be brief.\n\nTOOLS HERE\n\n"
        "User: Weather in Oslo?\n"
        'Assistant: {"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
        "Tool: (get_weather) snow\n"
        "User: Thanks\n"
        "Assistant:"
    )


def test_template_messages_alternate_strictly_with_one_system_message_first() -> None:
    turns = [
        Turn("user", "a"),
        Turn("system", "sys"),
        Turn("user", "b"),
        Turn("assistant", "c"),
        Turn("tool", "42"),
        Turn("user", "d"),
    ]
    assert template_messages(turns, "tools") == [
        {"role": "system", "content": "sys\n\ntools"},
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "Tool result: 42\n\nd"},
    ]


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"role": "robot", "content": "x"}, "unknown message role"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, "text only"),
        ({"role": "user", "content": 3}, "must be a string"),
    ],
)
def test_messages_a_local_model_cannot_read_get_a_clear_error(message: dict, words: str) -> None:
    with pytest.raises(LocalModelError, match=words) as info:
        to_turns([message])
    assert isinstance(info.value, CllmError)


# -- tools ----------------------------------------------------------------------------------------


def test_tool_choice_decides_between_text_auto_and_a_forced_call() -> None:
    assert plan_tools(None, None).mode == "text"
    assert plan_tools(TOOLS, "none").mode == "text"
    auto = plan_tools(TOOLS, None)
    assert auto.mode == "auto" and [f["name"] for f in auto.tools] == ["get_weather", "get_time"]
    assert plan_tools(TOOLS, "auto").mode == "auto"
    assert plan_tools(TOOLS, "required").mode == "call"
    named = plan_tools(TOOLS, {"type": "function", "function": {"name": "get_time"}})
    assert named.mode == "call"
    assert [f["name"] for f in named.tools] == ["get_time"]  # the only one the grammar allows
    assert [f["name"] for f in named.offered] == ["get_weather", "get_time"]  # all are described


@pytest.mark.parametrize(
    ("tools", "choice", "words"),
    [
        (TOOLS, {"type": "function", "function": {"name": "nope"}}, "not among the tools"),
        (TOOLS, "sometimes", "tool_choice must be"),
        ([{"type": "function", "function": {"description": "no name"}}], None, "a tool must be"),
    ],
)
def test_bad_tools_or_tool_choice_get_a_clear_error(tools: list, choice: object, words: str) -> None:
    with pytest.raises(LocalModelError, match=words):
        plan_tools(tools, choice)


def test_the_call_schema_fixes_the_name_and_hoists_definitions_to_the_root() -> None:
    with_refs = {
        "name": "book",
        "parameters": {
            "type": "object",
            "properties": {"when": {"$ref": "#/$defs/Date"}},
            "$defs": {"Date": {"type": "string"}},
        },
    }
    schema = call_schema([WEATHER, with_refs])
    first, second = schema["anyOf"]
    assert first["properties"]["name"] == {"const": "get_weather"}
    assert first["properties"]["arguments"] == WEATHER["parameters"]
    assert second["properties"]["arguments"] == {
        "type": "object",
        "properties": {"when": {"$ref": "#/$defs/Date"}},
    }
    assert schema["$defs"] == {"Date": {"type": "string"}}
    assert with_refs["parameters"]["$defs"]  # the caller's tool is left as it was
    loose = call_schema([WEATHER], loose=frozenset({"get_weather"}))
    assert loose["properties"]["arguments"] == {"type": "object"}


def test_the_tool_instruction_lists_every_tool_and_the_call_format() -> None:
    text = tools_instruction([WEATHER, TIME])
    lines = text.splitlines()
    assert json.loads(lines[1])["name"] == "get_weather"
    assert json.loads(lines[2]) == {"name": "get_time", "description": "", "parameters": TIME["parameters"]}
    assert '"arguments"' in lines[-1]


# -- sampling -------------------------------------------------------------------------------------


def test_sampling_options_pass_through_with_defaults_for_the_rest() -> None:
    s = Sampling.from_params(
        {"temperature": 0, "max_completion_tokens": 7, "seed": -1, "stop": "END", "top_k": 5}
    )
    assert (s.temperature, s.max_tokens, s.seed, s.stop, s.top_k) == (0.0, 7, -1, ("END",), 5)
    assert Sampling.from_params({"max_tokens": 3, "max_completion_tokens": 9}).max_tokens == 3
    assert Sampling.from_params({}) == Sampling()


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"max_tokens": 2.5}, "must be an integer"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"stop": ["a", 1]}, "stop must be"),
    ],
)
def test_bad_sampling_options_get_a_clear_error(params: dict, words: str) -> None:
    with pytest.raises(LocalModelError, match=words):
        Sampling.from_params(params)


# -- output ---------------------------------------------------------------------------------------


def test_a_text_reply_loses_only_its_leading_whitespace() -> None:
    out = TextOutput()
    assert [out.feed(t) for t in [" ", "\n The", " cat", " "]] == ["", "The", " cat", " "]


CALLS = [
    '{"name": "get_weather", "arguments": {"city": "Paris \\"centre\\" {x}", "days": [1, 2]}}',
    '{"name":"f","arguments":{}}',
    '{ "name" : "f\\u00e9" , "arguments" : {"a": {"b": ["}", "]"]}} } ',
]


@pytest.mark.parametrize("text", CALLS)
@given(data=st.data())
def test_any_split_of_a_call_gives_its_name_then_its_arguments(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, len(text) - 1), max_size=12)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    out = CallOutput()
    pieces = [p for part in parts for p in out.feed(part)]
    whole = json.loads(text)
    assert pieces[0].kind == "name" and pieces[0].value == whole["name"]
    assert all(p.kind == "arguments" for p in pieces[1:])
    arguments = "".join(p.value for p in pieces[1:])
    assert json.loads(arguments) == whole["arguments"]
    assert arguments == arguments.strip()
    assert out.complete


def test_a_call_cut_short_reports_what_arrived_and_is_not_complete() -> None:
    out = CallOutput()
    pieces = out.feed('{"name": "f", "arguments": {"a": "x')
    assert [(p.kind, p.value) for p in pieces] == [("name", "f"), ("arguments", '{"a": "x')]
    assert not out.complete
    assert [p.value for p in out.feed('y"} ')] == ['y"}']
    assert not out.complete  # the arguments are whole, the call is not
    assert out.feed("}") == []
    assert out.complete
    assert CallOutput().feed('{"name": "f", "arguments": ') == []  # the value has not begun


# -- queueing -------------------------------------------------------------------------------------


def test_the_model_lock_is_granted_in_arrival_order() -> None:
    lock = FifoLock()
    assert lock.acquire()
    order: list[int] = []

    def waiter(i: int) -> None:
        assert lock.acquire()
        order.append(i)
        lock.release()

    threads = []
    for i in range(5):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        while lock.waiting < i + 1:  # each waiter queued before the next arrives
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert not lock.locked


def test_a_waiter_that_gives_up_leaves_the_queue_without_the_lock() -> None:
    lock = FifoLock()
    assert lock.acquire()
    gave_up = threading.Event()
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.append(lock.acquire(gave_up.is_set)))
    t.start()
    while lock.waiting < 1:
        time.sleep(0.001)
    gave_up.set()
    lock.wake()
    t.join(5)
    assert results == [False]
    assert lock.waiting == 0
    lock.release()
    assert lock.acquire()  # the lock still works for the next one
