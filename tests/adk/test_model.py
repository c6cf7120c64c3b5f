"""`CllmLlm` on its own: streaming, the final response, finish reasons, usage, errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

pytest.importorskip(
    "google.adk", reason="google-adk is not installed (the `adk` extra: pip install -e '.[adk]')"
)

from google.genai import types
from support.replay_server import ReplayServer, error_response, stream_response

import cllm
from cllm.adk import INCOMPLETE_CALLS_KEY, CllmLlm

from .helpers import MODEL, chunk, collect, options, text_pieces, tool_pieces, usage_chunk, user_request


def test_import_cllm_does_not_import_adk() -> None:
    code = "import sys, cllm; print('google.adk' in sys.modules, 'google.genai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


async def test_text_streams_as_partials_then_one_final(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["Hel", "lo", " world"], usage=usage_chunk())))
    llm = CllmLlm(model=MODEL, **options(replay_server))
    responses = await collect(llm.generate_content_async(user_request(), stream=True))
    partials, final = responses[:-1], responses[-1]
    assert [r.content.parts[0].text for r in partials] == ["Hel", "lo", " world"]
    assert all(r.partial for r in partials)
    assert final.partial is False
    assert [p.text for p in final.content.parts] == ["Hello world"]
    assert final.finish_reason == types.FinishReason.STOP
    assert final.error_code is None and not final.interrupted
    assert final.usage_metadata.prompt_token_count == 9
    assert final.usage_metadata.candidates_token_count == 4
    assert final.usage_metadata.total_token_count == 13
    assert final.model_version == MODEL  # the response's model, named as it was asked for


async def test_stream_false_gives_the_same_final(replay_server: ReplayServer) -> None:
    pieces = [chunk({"role": "assistant", "content": ""}), chunk({"reasoning_content": "think "})]
    pieces += [chunk({"reasoning_content": "hard"}), chunk({"content": "Sure. "})]
    pieces += tool_pieces(['{"path": "a', '.py"}'])[0:]
    for _ in range(2):
        replay_server.add(stream_response(pieces))
    llm = CllmLlm(model=MODEL, **options(replay_server))
    streamed = await collect(llm.generate_content_async(user_request(), stream=True))
    whole = await collect(llm.generate_content_async(user_request(), stream=False))
    assert len(whole) == 1
    assert whole[0].model_dump() == streamed[-1].model_dump()
    parts = whole[0].content.parts
    assert (parts[0].text, parts[0].thought) == ("think hard", True)
    assert parts[1].text == "Sure. "
    assert parts[2].function_call.args == {"path": "a.py"}
    assert parts[2].function_call.id == "call_1"
    thoughts = [r.content.parts[0] for r in streamed[:-1] if r.content.parts[0].thought]
    assert [p.text for p in thoughts] == ["think ", "hard"]


async def test_partial_function_calls_carry_the_arguments_parsed_so_far(replay_server: ReplayServer) -> None:
    fragments = ['{"path": "a', '.py", "n": 1', "2, ", '"tags": ["x', '"]}']
    pieces = tool_pieces(fragments)
    replay_server.add(stream_response(pieces, delay=0.1))
    llm = CllmLlm(model=MODEL, **options(replay_server))
    responses = await collect(llm.generate_content_async(user_request(), stream=True))
    calls = [r.content.parts[0].function_call for r in responses[:-1]]
    assert all(r.partial for r in responses[:-1])
    assert [c.args for c in calls] == [
        {},
        {"path": "a"},
        {"path": "a.py", "n": 1},
        {"path": "a.py", "n": 12},
        {"path": "a.py", "n": 12, "tags": ["x"]},
        {"path": "a.py", "n": 12, "tags": ["x"]},
    ]
    assert {c.id for c in calls} == {"call_1"} and {c.name for c in calls} == {"make_file"}
    assert all(c.will_continue for c in calls)
    partial_args = [
        [(p.json_path, p.string_value, p.number_value) for p in c.partial_args or ()] for c in calls
    ]
    assert partial_args[1:5] == [
        [("$.path", "a", None)],
        [("$.path", ".py", None), ("$.n", None, 1.0)],
        [("$.n", None, 12.0)],
        [("$.tags[0]", "x", None)],
    ]
    final_call = responses[-1].content.parts[0].function_call
    assert final_call.args == {"path": "a.py", "n": 12, "tags": ["x"]}
    assert not final_call.partial_args and not final_call.will_continue


FINISHES = {
    "stop": (text_pieces(["ok"], "stop", usage_chunk()), types.FinishReason.STOP, None, False),
    "tool_calls": (tool_pieces(['{"a": 1}']), types.FinishReason.STOP, None, False),
    "length": (
        text_pieces(["cut"], "length", usage_chunk()),
        types.FinishReason.MAX_TOKENS,
        "MAX_TOKENS",
        False,
    ),
    "content_filter": (text_pieces(["no"], "content_filter"), types.FinishReason.SAFETY, "SAFETY", False),
    "invalid_json": (
        tool_pieces(['{"a": tru']),
        types.FinishReason.MALFORMED_FUNCTION_CALL,
        "MALFORMED_FUNCTION_CALL",
        False,
    ),
    "invalid_json_length": (
        tool_pieces(['{"a": "x'], "length"),
        types.FinishReason.MAX_TOKENS,
        "MAX_TOKENS",
        False,
    ),
    "truncated": (
        text_pieces(["cut ", "off"], None, done=False),
        types.FinishReason.OTHER,
        "STREAM_INTERRUPTED",
        True,
    ),
}


@pytest.mark.parametrize("case", list(FINISHES))
@pytest.mark.parametrize("stream", [True, False])
async def test_finish_reasons(replay_server: ReplayServer, case: str, stream: bool) -> None:
    pieces, reason, code, interrupted = FINISHES[case]
    replay_server.add(stream_response(pieces))
    llm = CllmLlm(model=MODEL, **options(replay_server))
    final = (await collect(llm.generate_content_async(user_request(), stream=stream)))[-1]
    assert final.partial is False
    assert final.finish_reason == reason
    assert final.error_code == code
    assert bool(final.interrupted) is interrupted
    if code is not None:
        assert final.error_message
    if case.startswith("invalid_json"):
        assert not any(p.function_call for p in (final.content.parts if final.content else ()))
        assert '{"a": ' in final.error_message  # the raw text is kept
    if case == "truncated":
        assert final.content.parts[0].text == "cut off"
        assert final.usage_metadata is None  # LiteLLM's estimate is never shown as the provider's
    if case == "tool_calls":
        assert final.content.parts[0].function_call.args == {"a": 1}


async def test_connection_reset_keeps_what_arrived(replay_server: ReplayServer) -> None:
    pieces = tool_pieces(['{"path": "a.py", ', '"text": "hal', 'f"}'])
    replay_server.add(stream_response([chunk({"content": "Writing it. "}), *pieces], reset_after=4))
    llm = CllmLlm(model=MODEL, **options(replay_server))
    responses = await collect(llm.generate_content_async(user_request(), stream=True))
    final = responses[-1]
    assert final.interrupted is True
    assert final.error_code == "STREAM_INTERRUPTED" and final.error_message
    assert final.finish_reason == types.FinishReason.OTHER
    assert [p.text for p in final.content.parts] == ["Writing it. "]
    assert not any(p.function_call for p in final.content.parts)  # never run half a call
    (call,) = final.custom_metadata[INCOMPLETE_CALLS_KEY]
    assert (call["name"], call["arguments_json"]) == ("make_file", '{"path": "a.py", "text": "hal')
    assert any(r.partial and r.content.parts[0].function_call for r in responses[:-1])


async def test_usage_reports_thoughts_and_cached_tokens(replay_server: ReplayServer) -> None:
    replay_server.add(
        stream_response(text_pieces(["x"], usage=usage_chunk(100, 50, reasoning=30, cached=64)))
    )
    llm = CllmLlm(model=MODEL, **options(replay_server))
    usage = (await collect(llm.generate_content_async(user_request(), stream=True)))[-1].usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (100, 50, 150)
    assert (usage.thoughts_token_count, usage.cached_content_token_count) == (30, 64)


async def test_no_usage_reported_means_no_usage_metadata(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["x"])))
    llm = CllmLlm(model=MODEL, **options(replay_server))
    final = (await collect(llm.generate_content_async(user_request(), stream=True)))[-1]
    assert final.usage_metadata is None
    assert final.finish_reason == types.FinishReason.STOP


async def test_failure_before_output_raises_a_provider_error(replay_server: ReplayServer) -> None:
    replay_server.add(error_response(401, "Incorrect API key provided: sk-test."))
    llm = CllmLlm(model=MODEL, **options(replay_server))
    with pytest.raises(cllm.ProviderError) as info:
        await collect(llm.generate_content_async(user_request(), stream=True))
    assert info.value.status_code == 401
    assert "Incorrect API key" in str(info.value)


@pytest.mark.parametrize("kind", ["idle", "first_token", "total"])
async def test_timeouts_give_an_error_response(replay_server: ReplayServer, kind: str) -> None:
    if kind == "first_token":
        replay_server.add(stream_response(text_pieces(["late"]), hang_after=0))
        opts = {"first_token_timeout": 0.3}
    elif kind == "idle":
        replay_server.add(stream_response(text_pieces(["early ", "words"]), hang_after=3))
        opts = {"idle_timeout": 0.3}
    else:
        replay_server.add(stream_response(text_pieces([f"w{i} " for i in range(100)]), delay=0.05))
        opts = {"total_timeout": 0.4}
    llm = CllmLlm(model=MODEL, **options(replay_server, **opts))
    final = (await collect(llm.generate_content_async(user_request(), stream=True)))[-1]
    assert final.error_code == f"{kind.upper()}_TIMEOUT"
    assert final.interrupted is True and final.finish_reason == types.FinishReason.OTHER
    if kind == "idle":
        assert final.content.parts[0].text == "early words"
    if kind == "total":
        assert final.content.parts[0].text.startswith("w0 w1")
    assert (await replay_server.await_client_closed(timeout=1.0)).closed_early


async def test_http_options_timeout_is_the_idle_timeout(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["early"]), hang_after=2))
    llm = CllmLlm(model=MODEL, **options(replay_server))
    request = user_request(http_options=types.HttpOptions(timeout=300))
    final = (await collect(llm.generate_content_async(request, stream=True)))[-1]
    assert final.error_code == "IDLE_TIMEOUT"


async def test_one_instance_serves_concurrent_calls(replay_server: ReplayServer) -> None:
    def answer(request: object) -> object:
        prompt = request.json["messages"][-1]["content"]  # type: ignore[attr-defined]
        return stream_response(text_pieces([prompt, " done"]), delay=0.01)

    replay_server.add(answer, repeat=True)
    llm = CllmLlm(model=MODEL, **options(replay_server))
    results = await asyncio.gather(
        *(collect(llm.generate_content_async(user_request(f"p{i}"), stream=True)) for i in range(8))
    )
    for i, responses in enumerate(results):
        assert responses[-1].content.parts[0].text == f"p{i} done"
        assert "".join(r.content.parts[0].text for r in responses[:-1]) == f"p{i} done"


async def test_options_pass_through_to_cllm(replay_server: ReplayServer) -> None:
    replay_server.add(stream_response(text_pieces(["x"])))
    llm = CllmLlm(model="cllm/" + MODEL, temperature=0.5, max_tokens=7, **options(replay_server))
    await collect(llm.generate_content_async(user_request(), stream=True))
    body = replay_server.requests[0].json
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("gpt-4o-2024-08-06", 0.5, 7)
    assert json.dumps(body["messages"]) == json.dumps([{"role": "user", "content": "hi"}])


async def test_folded_fragments_are_shown_when_the_stream_goes_quiet(replay_server: ReplayServer) -> None:
    from support.replay_server import Piece

    fragments = ['{"items": [', *[f"{i}, " for i in range(40)], "40"]
    pieces = tool_pieces(fragments)
    # Every fragment at once (folded into few snapshots), then 0.6 s of silence before the rest.
    head, tail = pieces[: len(fragments) + 1], pieces[len(fragments) + 1 :]
    replay_server.add(stream_response([*head, Piece(tail[0], 0.6), *tail[1:]]))
    llm = CllmLlm(model=MODEL, **options(replay_server))
    started = time.monotonic()
    seen: list[tuple[float, object]] = []
    async for response in llm.generate_content_async(user_request(), stream=True):
        if response.partial:
            seen.append((time.monotonic() - started, response.content.parts[0].function_call.args))
    last_time, last_args = seen[-1]
    assert last_args == {"items": list(range(41))}
    assert last_time - seen[0][0] < 0.5  # shown before the provider spoke again, not with the final
    assert len(seen) < len(fragments)  # a burst is folded


async def test_cllm_retries_work_through_the_adapter(replay_server: ReplayServer) -> None:
    replay_server.add(error_response(503, "overloaded", type="server_error", code=None))
    replay_server.add(stream_response(text_pieces(["second ", "try"])))
    llm = CllmLlm(model=MODEL, retries=1, **options(replay_server))
    final = (await collect(llm.generate_content_async(user_request(), stream=True)))[-1]
    assert final.content.parts[0].text == "second try"
    assert final.finish_reason == types.FinishReason.STOP
    assert len(replay_server.requests) == 2
