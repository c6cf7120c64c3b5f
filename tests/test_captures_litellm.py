"""Every real capture, replayed over loopback HTTP through LiteLLM's own provider code.

This checks the harness (captures, their expectations, the replay server) against LiteLLM, and records
which captures LiteLLM carries faithfully. Where LiteLLM itself gets a capture wrong, the test is a
strict xfail that says how, so a LiteLLM upgrade that fixes it shows up.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import litellm  # after the cost-map switch above (ruff allows os.environ before imports)
import pytest
from support.captures import Capture, all_captures, fixtures_dir
from support.replay_server import RecordedRequest, ReplayServer

litellm.suppress_debug_info = True
# Otherwise LiteLLM's pre-call cost estimate tries to download a Hugging Face tokenizer for llama-like
# model names (vllm-nim): ~23 s of retries per call without network.
litellm.disable_hf_tokenizer_download = True

if not fixtures_dir().is_dir():
    pytest.skip(f"no captures at {fixtures_dir()} (set CLLM_FIXTURES)", allow_module_level=True)

# LiteLLM's own pydantic models warn about ReadOnly TypedDict items on first use; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")

CAPTURES = all_captures()
# The supported range spans two behaviours of LiteLLM itself (cllm gives one contract over both).
LITELLM_1_110 = tuple(int(p) for p in version("litellm").split(".")[:2]) >= (1, 110)
MESSAGES = [{"role": "user", "content": "replay"}]

# (capture, check) -> how LiteLLM gets it wrong. "*" covers every check of LiteLLM's output.
LITELLM_XFAIL: dict[tuple[str, str], str] = {
    ("vertex-gemini__streamed_function_call_args", "*"): (
        "LiteLLM cannot parse Vertex streamFunctionCallArguments: the opening part "
        "functionCall{name, willContinue} has no 'args', VertexGeminiConfig._transform_parts raises "
        "KeyError('args') and the stream fails (MidStreamFallbackError) before any tool call"
    ),
}
if not LITELLM_1_110:
    LITELLM_XFAIL["anthropic__server_tool_large_input", "tool_calls"] = (
        "LiteLLM 1.106 reports Anthropic server_tool_use blocks (text_editor_code_execution, "
        "bash_code_execution; executed by Anthropic) as ordinary client tool_calls"
    )

# LiteLLM's final finish_reason for each raw provider value in the captures. OpenAI-compatible values
# pass through unchanged on 1.106 (Ollama's "stop" after a tool call stays "stop"; 1.110 rewrites it).
LITELLM_FINISH: dict[str | None, str] = {
    None: "stop",  # the provider sent none: LiteLLM makes up "stop", even after a tool call
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "STOP": "stop",  # "tool_calls" when the stream had function calls, see test_finish_reason
    "MAX_TOKENS": "length",
}


@dataclass
class _Call:
    name: str = ""
    arguments: str = ""


@dataclass
class Replay:
    """What LiteLLM streamed for choice 0."""

    text: str = ""
    reasoning: str = ""
    calls: dict[int, _Call] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Any = None
    server_calls: dict[str, _Call] = field(default_factory=dict)
    error: BaseException | None = None
    requests: list[RecordedRequest] = field(default_factory=list)


async def replay(capture: Capture) -> Replay:
    result = Replay()
    with ReplayServer(capture.response()) as server:
        try:
            stream = await litellm.acompletion(
                messages=MESSAGES, stream=True, timeout=10, **capture.litellm_kwargs(server.url)
            )
            async for chunk in stream:
                result.usage = getattr(chunk, "usage", None) or result.usage
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    result.text += delta.content or ""
                    result.reasoning += getattr(delta, "reasoning_content", None) or ""
                    for tool in delta.tool_calls or ():
                        call = result.calls.setdefault(tool.index, _Call())
                        # OpenRouter/Kimi repeat the name on every delta and LiteLLM passes it on.
                        call.name = call.name or (tool.function.name or "")
                        call.arguments += tool.function.arguments or ""
                    specific = getattr(delta, "provider_specific_fields", None) or {}
                    for tool in specific.get("server_tool_calls") or ():  # LiteLLM 1.110: whole calls
                        result.server_calls[tool["id"]] = _Call(
                            tool["function"]["name"], tool["function"]["arguments"]
                        )
                    result.finish_reason = choice.finish_reason or result.finish_reason
        except Exception as exc:
            result.error = exc
        result.requests = server.requests
    return result


@pytest.fixture(scope="module")
def replays() -> dict[str, Replay]:
    """Every replayable capture through litellm.acompletion, once for the whole module (~1-2 s)."""

    async def run_all() -> dict[str, Replay]:
        return {c.name: await replay(c) for c in CAPTURES if c.skip_reason is None}

    return asyncio.run(run_all())


def cases(check: str) -> list[Any]:
    params = []
    for capture in CAPTURES:
        marks: list[pytest.MarkDecorator] = []
        reason = LITELLM_XFAIL.get((capture.name, check))
        if check != "request":
            reason = LITELLM_XFAIL.get((capture.name, "*"), reason)
        if capture.skip_reason is not None:
            marks.append(pytest.mark.skip(reason=capture.skip_reason))
        elif reason is not None:
            marks.append(pytest.mark.xfail(reason=reason, strict=True))
        params.append(pytest.param(capture, id=capture.name, marks=marks))
    return params


def parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def ok(replays: dict[str, Replay], capture: Capture) -> Replay:
    result = replays[capture.name]
    assert result.error is None, f"LiteLLM raised {result.error!r}"
    return result


@pytest.mark.parametrize("capture", cases("request"))
def test_request_goes_to_the_provider_path(replays: dict[str, Replay], capture: Capture) -> None:
    requests = replays[capture.name].requests
    assert [r.path for r in requests] == [capture.request_path]
    if capture.wire_format == "gemini":
        assert requests[0].query.get("alt") == ["sse"]


@pytest.mark.parametrize("capture", cases("text"))
def test_text(replays: dict[str, Replay], capture: Capture) -> None:
    assert ok(replays, capture).text == capture.expected.text


@pytest.mark.parametrize("capture", cases("reasoning"))
def test_reasoning(replays: dict[str, Replay], capture: Capture) -> None:
    assert ok(replays, capture).reasoning == capture.expected.reasoning


@pytest.mark.parametrize("capture", cases("tool_calls"))
def test_tool_calls(replays: dict[str, Replay], capture: Capture) -> None:
    calls = list(ok(replays, capture).calls.values())
    assert [c.name for c in calls] == capture.expected.tool_names
    assert [parsed(c.arguments) for c in calls] == [t.arguments for t in capture.expected.tool_calls]


def test_anthropic_escapes_split_across_fragments_survive(replays: dict[str, Replay]) -> None:
    """6,121 chars of server-tool input in 883 fragments, 42 ending in a lone backslash."""
    capture = next(c for c in CAPTURES if c.name == "anthropic__server_tool_large_input")
    result = ok(replays, capture)
    # LiteLLM 1.106 streams them as tool-call fragments; 1.110 hands them over whole, apart.
    calls = list((result.server_calls if LITELLM_1_110 else result.calls).values())
    expected = capture.expected.server_tool_calls
    assert [(c.name, parsed(c.arguments)) for c in calls] == [(t.name, t.arguments) for t in expected]


@pytest.mark.parametrize("capture", cases("finish_reason"))
def test_finish_reason(replays: dict[str, Replay], capture: Capture) -> None:
    raw = capture.expected.finish_reason
    expected = LITELLM_FINISH.get(raw, raw)
    if capture.wire_format == "gemini" and capture.expected.tool_calls:
        expected = "tool_calls"
    if LITELLM_1_110 and expected == "stop" and capture.expected.tool_calls:
        expected = "tool_calls"  # 1.110 rewrites a provider's "stop" after tool calls
    assert ok(replays, capture).finish_reason == expected


@pytest.mark.parametrize("capture", cases("usage"))
def test_usage(replays: dict[str, Replay], capture: Capture) -> None:
    usage = ok(replays, capture).usage
    wire = capture.expected.usage
    assert usage is not None  # also when the capture has none: LiteLLM then counts tokens itself
    if wire is None:
        return
    completion = wire.completion_tokens
    if capture.wire_format == "gemini":
        # LiteLLM folds Gemini's thoughtsTokenCount into completion_tokens.
        completion = (completion or 0) + (wire.reasoning_tokens or 0)
    assert (usage.prompt_tokens, usage.completion_tokens) == (wire.prompt_tokens, completion)
    if wire.total_tokens is not None:
        assert usage.total_tokens == wire.total_tokens
