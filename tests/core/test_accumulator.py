"""The accumulator fed directly with core chunks: the quirks of real providers, one at a time."""

import copy
import json

from cllm import (
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from cllm.core.accumulator import Chunk, StreamAccumulator, ToolCallChunk


def run(*chunks: Chunk) -> tuple[list[object], StreamAccumulator]:
    acc = StreamAccumulator()
    events: list[object] = []
    for chunk in chunks:
        events.extend(acc.feed(chunk))
    events.extend(acc.end())
    return events, acc


def tc(
    index: int | None = 0, id: str | None = None, name: str | None = None, args: str | None = None
) -> Chunk:
    return Chunk(tool_calls=[ToolCallChunk(index, id, name, args)])


def test_text_reasoning_and_finish() -> None:
    events, acc = run(
        Chunk(reasoning="think "),
        Chunk(reasoning="hard"),
        Chunk(text="Hel"),
        Chunk(text="lo"),
        Chunk(finish_reason="stop"),
        Chunk(usage=Usage(3, 2, 5)),
    )
    assert events == [
        ReasoningDelta("think "),
        ReasoningDelta("hard"),
        TextDelta("Hel"),
        TextDelta("lo"),
        Finish(FinishReason.STOP, "stop", Usage(3, 2, 5)),
    ]
    r = acc.snapshot()
    assert (r.text, r.reasoning, r.finish_reason, r.usage, r.error) == (
        "Hello",
        "think hard",
        "stop",
        Usage(3, 2, 5),
        None,
    )
    assert r.message() == {"role": "assistant", "content": "Hello"}


def test_tool_call_streams_parsed_arguments_and_ends_when_json_closes() -> None:
    acc = StreamAccumulator()
    seen = []
    for chunk in [
        tc(0, "call_1", "get_weather", ""),
        tc(0, None, None, '{"city": "Par'),
        tc(0, None, None, 'is"}'),
    ]:
        for event in acc.feed(chunk):
            seen.append(copy.deepcopy(event))
    assert seen == [
        ToolCallStart(0, "call_1", "get_weather"),
        ToolCallDelta(0, "call_1", "get_weather", '{"city": "Par', {"city": "Par"}),
        ToolCallDelta(0, "call_1", "get_weather", 'is"}', {"city": "Paris"}),
        ToolCallEnd(0, "call_1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}', None),
    ]
    end = acc.feed(Chunk(finish_reason="tool_calls")) + acc.end()
    assert end == [Finish(FinishReason.TOOL_CALLS, "tool_calls", None)]
    call = acc.snapshot().tool_calls[0]
    assert (call.id, call.name, call.arguments) == ("call_1", "get_weather", {"city": "Paris"})


def test_repeated_id_and_name_are_not_concatenated() -> None:
    events, acc = run(
        tc(0, "0", "llm_version", ""), tc(0, "0", "llm_version", "{}"), Chunk(finish_reason="stop")
    )
    assert [e for e in events if isinstance(e, ToolCallStart)] == [ToolCallStart(0, "0", "llm_version")]
    assert acc.snapshot().tool_calls[0].name == "llm_version"
    # A forced tool call that finishes with "stop" still leaves tools to run.
    assert acc.snapshot().finish_reason is FinishReason.TOOL_CALLS
    assert acc.snapshot().raw_finish_reason == "stop"


def test_calls_without_index_in_one_chunk_are_separate() -> None:
    chunk = Chunk(
        tool_calls=[
            ToolCallChunk(None, "a", "plus", '{"a": 1}'),
            ToolCallChunk(None, "b", "minus", '{"a": 2}'),
        ]
    )
    _, acc = run(chunk, Chunk(finish_reason="tool_calls"))
    assert [(c.name, c.arguments) for c in acc.snapshot().tool_calls] == [
        ("plus", {"a": 1}),
        ("minus", {"a": 2}),
    ]


def test_parallel_calls_by_index_and_new_id_at_same_index() -> None:
    _, acc = run(
        tc(0, "x", "one", '{"n":'),
        tc(1, "y", "two", "{}"),
        tc(0, None, None, " 1}"),
        tc(0, "z", "three", "{}"),
        Chunk(finish_reason="tool_calls"),
    )
    assert [(c.id, c.name, c.arguments) for c in acc.snapshot().tool_calls] == [
        ("x", "one", {"n": 1}),
        ("y", "two", {}),
        ("z", "three", {}),
    ]


def test_escape_split_across_fragments() -> None:
    _, acc = run(tc(0, "c", "w", '{"t": "a\\'), tc(0, None, None, 'nb"}'), Chunk(finish_reason="tool_use"))
    assert acc.snapshot().tool_calls[0].arguments == {"t": "a\nb"}


def test_invalid_final_json_keeps_the_raw_text_and_reports_it() -> None:
    events, acc = run(
        tc(0, "c", "make_file", '{"path": "a.py", "text": "unterminated'), Chunk(finish_reason="max_tokens")
    )
    end = next(e for e in events if isinstance(e, ToolCallEnd))
    assert end.arguments is None
    assert end.arguments_json == '{"path": "a.py", "text": "unterminated'
    assert end.error and "make_file" in end.error
    r = acc.snapshot()
    assert r.finish_reason is FinishReason.LENGTH
    assert r.tool_calls[0].error == end.error


def test_garbage_arguments_never_raise() -> None:
    events, acc = run(tc(0, "c", "f", "{oops"), tc(0, None, None, " more"), Chunk(finish_reason="tool_calls"))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [d.arguments_delta for d in deltas] == ["{oops", " more"]
    assert acc.snapshot().tool_calls[0].arguments_json == "{oops more"


def test_empty_arguments_mean_no_arguments() -> None:
    _, acc = run(tc(0, "c", "now", ""), Chunk(finish_reason="tool_use"))
    call = acc.snapshot().tool_calls[0]
    assert (call.arguments, call.arguments_json, call.error) == ({}, "{}", None)


def test_missing_id_gets_a_stable_one() -> None:
    _, acc = run(tc(None, None, "get_capital", '{"country": "FR"}'), Chunk(finish_reason="STOP"))
    assert acc.snapshot().tool_calls[0].id == "call_0"
    assert acc.snapshot().message()["tool_calls"][0]["id"] == "call_0"


def test_stream_without_finish_reason_is_an_error_not_stop() -> None:
    events, acc = run(Chunk(text="half an ans"))
    assert events[-1] == Finish(FinishReason.ERROR, None, None)
    r = acc.snapshot()
    assert r.text == "half an ans"
    assert r.finish_reason is FinishReason.ERROR
    assert r.error


def test_usage_on_every_chunk_keeps_the_latest() -> None:
    _, acc = run(
        Chunk(text="a", usage=Usage(5, 1, 6)),
        Chunk(text="b", usage=Usage(5, 2, 7)),
        Chunk(finish_reason="stop"),
    )
    assert acc.snapshot().usage == Usage(5, 2, 7)


def test_interrupt_keeps_everything_received() -> None:
    acc = StreamAccumulator()
    acc.feed(Chunk(text="partial"))
    acc.feed(tc(0, "c", "f", '{"a": [1, 2'))
    acc.interrupt("connection reset")
    r = acc.snapshot()
    assert (r.text, r.interrupted, r.finish_reason, r.error) == (
        "partial",
        True,
        FinishReason.ERROR,
        "connection reset",
    )
    assert r.tool_calls[0].arguments_json == '{"a": [1, 2'
    assert r.tool_calls[0].error


def test_cancel_before_finish_is_cancelled_and_after_finish_keeps_the_reason() -> None:
    acc = StreamAccumulator()
    acc.feed(Chunk(text="x"))
    acc.interrupt("closed", cancelled=True)
    assert (acc.snapshot().finish_reason, acc.snapshot().interrupted) == (FinishReason.CANCELLED, True)

    acc = StreamAccumulator()
    acc.feed(Chunk(text="x", finish_reason="length"))
    acc.interrupt("closed", cancelled=True)
    assert (acc.snapshot().finish_reason, acc.snapshot().interrupted) == (FinishReason.LENGTH, False)


def test_snapshot_while_streaming_has_no_finish_reason() -> None:
    acc = StreamAccumulator()
    acc.feed(Chunk(text="so far"))
    r = acc.snapshot()
    assert (r.text, r.finish_reason) == ("so far", None)
    assert r.to_dict()["finish_reason"] is None


def test_an_id_only_fragment_is_not_a_call() -> None:
    events, acc = run(Chunk(text="Hi"), tc(0, id="call_x"), Chunk(finish_reason="stop"))
    assert events == [TextDelta("Hi"), Finish(FinishReason.STOP, "stop", None)]
    assert acc.snapshot().tool_calls == []
    assert acc.snapshot().message() == {"role": "assistant", "content": "Hi"}


def test_server_tool_calls_are_kept_apart_and_never_offered_to_run() -> None:
    server = [
        ToolCallChunk(0, "srvtoolu_1", "bash_code_execution", '{"comm', server=True),
        ToolCallChunk(0, None, None, 'and": "ls"}', server=True),
        ToolCallChunk(None, "srvtoolu_2", "text_editor_code_execution", "{}", server=True),
    ]
    events, acc = run(
        *(Chunk(tool_calls=[fragment]) for fragment in server),
        Chunk(text="Done."),
        Chunk(finish_reason="end_turn"),
    )
    assert events == [TextDelta("Done."), Finish(FinishReason.STOP, "end_turn", None)]
    r = acc.snapshot()
    assert r.tool_calls == []
    assert [(c.id, c.name, c.arguments) for c in r.server_tool_calls] == [
        ("srvtoolu_1", "bash_code_execution", {"command": "ls"}),
        ("srvtoolu_2", "text_editor_code_execution", {}),
    ]
    assert r.to_dict()["server_tool_calls"][0]["arguments_json"] == '{"command": "ls"}'


def test_arguments_nested_too_deep_are_an_error_that_keeps_the_text() -> None:
    deep = "[" * 3000 + "]" * 3000
    events, acc = run(
        tc(0, "call_1", "f", deep[:1500]), tc(0, None, None, deep[1500:]), Chunk(finish_reason="tool_calls")
    )
    end = next(e for e in events if isinstance(e, ToolCallEnd))
    assert end.arguments is None and end.arguments_json == deep
    assert end.error is not None and "nested deeper than 256 levels" in end.error
    r = acc.snapshot()
    assert r.tool_calls[0].arguments_json == deep
    assert len(r.to_json()) > 6000  # serializable: the raw text, not the tree
    assert r.finish_reason is FinishReason.TOOL_CALLS


def test_arguments_nested_to_the_limit_parse_and_serialize() -> None:
    text = '{"a": ' * 255 + "1" + "}" * 255
    events, acc = run(tc(0, "call_1", "f", text), Chunk(finish_reason="tool_calls"))
    end = next(e for e in events if isinstance(e, ToolCallEnd))
    assert end.error is None
    r = acc.snapshot()
    assert json.loads(r.to_json())["tool_calls"][0]["arguments"] == json.loads(text)
