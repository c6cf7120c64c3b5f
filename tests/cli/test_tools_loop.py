"""`--functions`: the tool loop, the chain limit, and carrying on a conversation with tool turns."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Cli, last_user_text, text_stream, tool_call_stream
from support.replay_server import RecordedRequest, ScriptedResponse

FUNCTIONS = '''
def get_weather(city: str, unit: str = "C") -> str:
    """The current weather in a city.

    Args:
        city: the city's name.
        unit: C or F.
    """
    return f"{city}: sunny, 21 {unit}"


def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)
'''


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    path = tmp_path / "functions.py"
    path.write_text(FUNCTIONS)
    return path


def _answer(request: RecordedRequest) -> ScriptedResponse:
    messages = request.json["messages"]
    if messages[-1]["role"] == "tool":
        return text_stream(["It is ", "sunny."])
    prompt = last_user_text(request)
    if prompt == "Weather in Paris?":
        return tool_call_stream("get_weather", '{"city": "Paris"}')
    return text_stream([f"Re: {prompt}"])


def test_tool_loop_then_continuing_with_c_and_cid(cli: Cli, functions: Path) -> None:
    cli.server.add(_answer, repeat=True)
    first, other = cli.run_many(
        (["--functions", str(functions), "Weather in Paris?"], None), (["Unrelated"], None)
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout == "It is sunny.\n"
    # Progress on stderr (not a terminal: one line when the call starts, one when it is complete).
    assert "tool call get_weather: writing arguments" in first.stderr
    assert 'tool call get_weather({"city": "Paris"}) · 17 bytes' in first.stderr
    assert "get_weather: Paris: sunny, 21 C" in first.stderr
    assert other.returncode == 0, other.stderr

    tool_requests = [r.json for r in cli.server.requests if "tools" in r.json]
    assert len(tool_requests) == 2
    assert tool_requests[0]["tools"][0]["function"]["name"] == "get_weather"
    assert tool_requests[0]["tools"][0]["function"]["parameters"]["required"] == ["city"]
    sent_back = tool_requests[1]["messages"]
    assert sent_back[-2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert sent_back[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "Paris: sunny, 21 C"}

    logs = cli.logs()
    weather = [r for r in logs if r["conversation_id"] == logs[0]["conversation_id"]]
    if weather[0]["prompt"] != "Weather in Paris?":
        weather = [r for r in logs if r["conversation_id"] != logs[0]["conversation_id"]]
    assert [r["prompt"] for r in weather] == ["Weather in Paris?", None]
    assert (
        weather[0]["finish_reason"] == "tool_calls" and weather[0]["tool_calls"][0]["name"] == "get_weather"
    )
    assert weather[1]["messages_in"] == [sent_back[-1]] and weather[1]["text"] == "It is sunny."
    conversation = weather[0]["conversation_id"]

    earlier = [
        {"role": "user", "content": "Weather in Paris?"},
        sent_back[-2],  # the assistant's tool call, as the loop sent it
        {"role": "tool", "tool_call_id": "call_1", "content": "Paris: sunny, 21 C"},
        {"role": "assistant", "content": "It is sunny."},
    ]
    by_cid = cli.run("--cid", conversation, "And tomorrow?")
    assert by_cid.returncode == 0, by_cid.stderr
    assert cli.server.requests[-1].json["messages"] == [
        *earlier,
        {"role": "user", "content": "And tomorrow?"},
    ]
    latest = cli.run("-c", "Thanks")  # the conversation just carried on is now the latest
    assert latest.returncode == 0, latest.stderr
    assert cli.server.requests[-1].json["messages"] == [
        *earlier,
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": "Re: And tomorrow?"},
        {"role": "user", "content": "Thanks"},
    ]


def test_failing_tools_are_reported_to_the_model_and_the_chain_limit_stops_the_loop(
    cli: Cli, functions: Path
) -> None:
    cli.server.add(tool_call_stream("explode", '{"reason": "boom"}'), repeat=True)
    result = cli.run("--functions", str(functions), "--chain-limit", "2", "go")
    assert result.returncode == 6  # the chain limit's own exit status
    requests = cli.server.requests
    assert len(requests) == 3  # the first call and two rounds of tool results
    assert requests[1].json["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "Error: RuntimeError: boom",
    }
    assert "chain limit" in result.stderr and "--chain-limit" in result.stderr
    assert "Traceback" not in result.stderr
    logs = cli.logs()
    assert len(logs) == 3 and len({r["conversation_id"] for r in logs}) == 1
