"""How an answer ended, through real processes: one stderr line and an exit code for whatever is not
a complete answer; a forced tool choice and a declined call; one model name; chat fed from a pipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DONE, Cli, chunk, last_user_text, text_stream, tool_call_stream, usage_chunk
from support.replay_server import Piece, RecordedRequest, ScriptedResponse, json_response, stream_response

from cllm.cli import endings


def _ending(text: str, finish: str, **extra: Any) -> ScriptedResponse:
    pieces = [Piece(chunk({"role": "assistant", "content": ""}))]
    if text:
        pieces.append(Piece(chunk({"content": text})))
    if extra:
        pieces.append(Piece(chunk(extra)))
    pieces += [Piece(chunk({}, finish)), Piece(usage_chunk()), Piece(DONE)]
    return stream_response(pieces)


def _respond(request: RecordedRequest) -> ScriptedResponse:
    prompt = last_user_text(request)
    if prompt == "rivers":
        return _ending("I have a river in", "length")
    if prompt == "empty":
        return _ending("", "stop")
    if prompt == "filtered":
        return _ending("", "content_filter")
    return text_stream(["All ", "done."])


@pytest.mark.slow
@pytest.mark.timeout(180)  # five processes that each import LiteLLM, on a machine that may be busy
def test_cut_off_filtered_empty_and_complete_answers_have_their_own_exit_codes(cli: Cli) -> None:
    cli.server.add(_respond, repeat=True)
    cut, cut_json, empty, filtered, complete = cli.run_many(
        (["-u", "-o", "max_tokens", "5", "rivers"], None),
        (["--json", "-o", "max_tokens", "5", "rivers"], None),
        (["empty"], None),
        (["filtered"], None),
        (["fine"], None),
        timeout=150,
    )
    assert cut.returncode == endings.CUT_OFF == 3
    assert cut.stdout == "I have a river in\n"  # what came is still printed, and logged
    [line, usage] = cut.stderr.strip().splitlines()
    assert (
        line
        == "cllm: the answer was cut off at the token limit (max_tokens 5; raise it with -o max_tokens N)"
    )
    assert usage.startswith("usage:")
    assert cut_json.returncode == 3 and json.loads(cut_json.stdout)["finish_reason"] == "length"
    assert "cut off" in cut_json.stderr

    assert empty.returncode == endings.EMPTY == 5 and empty.stdout == ""
    assert empty.stderr.strip() == "cllm: the model's reply was empty"
    assert filtered.returncode == endings.FILTERED == 4
    assert filtered.stderr.strip() == "cllm: the answer was blocked by the provider's content filter"

    assert complete.returncode == 0 and complete.stdout == "All done.\n" and complete.stderr == ""
    finishes = {r["prompt"]: r["finish_reason"] for r in cli.logs()}
    assert finishes["rivers"] == "length" and finishes["fine"] == "stop"


FUNCTIONS = '''
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"{city}: sunny"
'''


def test_a_forced_tool_choice_applies_to_the_first_round_only(cli: Cli, tmp_path: Path) -> None:
    functions = tmp_path / "tools.py"
    functions.write_text(FUNCTIONS)

    def respond(request: RecordedRequest) -> ScriptedResponse:
        # A model that obeys tool_choice: forced, it calls the tool again and again.
        if request.json.get("tool_choice") == "required" or request.json["messages"][-1]["role"] != "tool":
            return tool_call_stream("get_weather", '{"city": "Paris"}')
        return text_stream(["Sunny in Paris."])

    cli.server.add(respond, repeat=True)
    base = ["--functions", str(functions), "-o", "tool_choice", "required"]
    once, every = cli.run_many(
        ([*base, "Weather in Paris?"], None),
        ([*base, "--tool-choice-rounds", "0", "--chain-limit", "1", "Weather again?"], None),
    )
    assert once.returncode == 0, once.stderr
    assert once.stdout == "Sunny in Paris.\n"
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for request in cli.server.requests:
        first_user = next(m["content"] for m in request.json["messages"] if m["role"] == "user")
        by_prompt.setdefault(first_user, []).append(request.json)
    first, second = by_prompt["Weather in Paris?"]
    assert first["tool_choice"] == "required" and "tool_choice" not in second
    assert second["tools"]  # the tools are still offered: the model may call one again

    # Forced on every round, the model never answers: the chain limit ends it, with its own code.
    assert every.returncode == endings.CHAIN_LIMIT == 6
    assert [r.get("tool_choice") for r in by_prompt["Weather again?"]] == ["required", "required"]
    assert "stopped after 1 round of tool calls" in every.stderr
    assert "the last call was not run" in every.stderr


def test_streamed_and_whole_responses_carry_the_same_model_name(cli: Cli) -> None:
    whole = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Whole."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }

    def respond(request: RecordedRequest) -> ScriptedResponse:
        return json_response(whole) if not request.json.get("stream") else text_stream(["Streamed."])

    cli.server.add(respond, repeat=True)
    streamed, not_streamed = cli.run_many((["--json", "hi"], None), (["--json", "--no-stream", "hi"], None))
    assert streamed.returncode == 0 and not_streamed.returncode == 0, streamed.stderr + not_streamed.stderr
    names = {json.loads(r.stdout)["model"] for r in (streamed, not_streamed)}
    assert names == {"openai/test-model"}


def test_chat_reads_piped_lines_as_messages(cli: Cli) -> None:
    cli.server.add(lambda request: text_stream([f"Re: {last_user_text(request)}"]), repeat=True)
    result = cli.run("chat", input="hello\n\nsecond line\n/exit\nnever sent\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Re: hello\nRe: second line\n"
    assert "not a terminal" not in result.stderr and "\r" not in result.stdout + result.stderr
    [request1, request2] = cli.server.requests
    assert [m["content"] for m in request2.json["messages"]] == ["hello", "Re: hello", "second line"]
    assert len({r["conversation_id"] for r in cli.logs()}) == 1
    assert request1.json["messages"] == [{"role": "user", "content": "hello"}]


def test_a_piped_chat_exits_with_the_code_of_an_answer_that_was_cut_off(cli: Cli) -> None:
    cli.server.add(_respond, repeat=True)
    result = cli.run("chat", input="rivers\nfine\n")
    assert result.returncode == endings.CUT_OFF, result.stderr
    assert "cut off at the token limit" in result.stderr
