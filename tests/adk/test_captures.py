"""The real provider captures through `CllmLlm`: text, reasoning and tool arguments equal `cllm.astream`'s."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip(
    "google.adk", reason="google-adk is not installed (the `adk` extra: pip install -e '.[adk]')"
)

from google.adk.models.llm_request import LlmRequest
from google.genai import types
from support.captures import Capture, all_captures, fixtures_dir
from support.replay_server import ReplayServer

import cllm
from cllm.adk import INCOMPLETE_CALLS_KEY, CllmLlm

if not fixtures_dir().is_dir():
    pytest.skip(f"no captures at {fixtures_dir()} (set CLLM_FIXTURES)", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")

CAPTURES = [c for c in all_captures() if c.skip_reason is None]


def kwargs(capture: Capture, server: ReplayServer) -> dict[str, Any]:
    options = capture.litellm_kwargs(server.url)
    options.pop("model")
    options.pop("stream_options")
    return options


async def through_cllm(capture: Capture, server: ReplayServer) -> cllm.Response | cllm.ProviderError:
    server.add(capture.response(), path=capture.request_path)
    try:
        async with cllm.astream(capture.litellm_model, "replay", **kwargs(capture, server)) as s:
            return await s.until_done()
    except cllm.StreamInterrupted as exc:
        return exc.response
    except cllm.ProviderError as exc:  # where LiteLLM itself cannot read the capture
        return exc


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: c.name)
async def test_capture_through_the_adapter(replay_server: ReplayServer, capture: Capture) -> None:
    expected = await through_cllm(capture, replay_server)
    replay_server.add(capture.response(), path=capture.request_path)
    llm = CllmLlm(model=capture.litellm_model, **kwargs(capture, replay_server))
    request = LlmRequest(contents=[types.Content(role="user", parts=[types.Part(text="replay")])])
    if isinstance(expected, cllm.ProviderError):
        with pytest.raises(cllm.ProviderError) as info:
            [r async for r in llm.generate_content_async(request, stream=True)]
        assert str(info.value) == str(expected)
        return
    responses = [r async for r in llm.generate_content_async(request, stream=True)]
    partials, final = responses[:-1], responses[-1]
    assert all(r.partial for r in partials) and final.partial is False
    parts = final.content.parts if final.content else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    reasoning = "".join(p.text for p in parts if p.text and p.thought)
    assert (text, reasoning) == (expected.text, expected.reasoning)
    streamed = "".join(p.text for r in partials for p in r.content.parts if p.text and not p.thought)
    assert streamed == expected.text
    calls = [p.function_call for p in parts if p.function_call]
    if calls:
        # (LiteLLM makes up a new id for each Gemini call, so ids differ between two replays.)
        assert [(c.name, c.args) for c in calls] == [(t.name, t.arguments) for t in expected.tool_calls]
        assert all(c.id for c in calls)
        assert final.finish_reason == types.FinishReason.STOP
    elif final.interrupted:
        kept = (final.custom_metadata or {}).get(INCOMPLETE_CALLS_KEY, [])
        assert [k["arguments_json"] for k in kept] == [t.arguments_json for t in expected.tool_calls]
    else:
        assert not expected.tool_calls or any(t.error for t in expected.tool_calls)
    assert final.finish_reason is not None
    assert (final.usage_metadata is None) == (expected.usage is None)
