"""The request on the wire: what `CllmLlm` sends equals what ADK's `LiteLlm` sends for the same `LlmRequest`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip(
    "google.adk", reason="google-adk is not installed (the `adk` extra: pip install -e '.[adk]')"
)

from importlib.metadata import version

from google.adk.models.lite_llm import LiteLlm
from google.adk.models.llm_request import LlmRequest
from google.genai import types
from pydantic import BaseModel
from support.replay_server import ReplayServer, stream_response

from cllm.adk import CllmLlm

from .helpers import MODEL, collect, options, text_pieces

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="The weather in a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "city": types.Schema(type=types.Type.STRING, description="City name"),
            "days": types.Schema(type=types.Type.INTEGER),
            "units": types.Schema(type=types.Type.STRING, enum=["c", "f"]),
            "stops": types.Schema(type=types.Type.ARRAY, items=types.Schema(type=types.Type.STRING)),
        },
        required=["city"],
    ),
)
SEARCH = types.FunctionDeclaration(
    name="search",
    description="Search.",
    parameters_json_schema={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)


class Answer(BaseModel):
    city: str
    temperature: float
    notes: list[str]


def conversation() -> list[types.Content]:
    return [
        types.Content(role="user", parts=[types.Part(text="Weather in Paris and Rome?")]),
        types.Content(
            role="model",
            parts=[
                types.Part(text="Checking."),
                types.Part(
                    function_call=types.FunctionCall(id="call_a", name="get_weather", args={"city": "Paris"})
                ),
                types.Part(
                    function_call=types.FunctionCall(id="call_b", name="get_weather", args={"city": "Rome"})
                ),
            ],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(
                        id="call_a", name="get_weather", response={"temp": 21}
                    )
                ),
                types.Part(
                    function_response=types.FunctionResponse(
                        id="call_b", name="get_weather", response={"temp": 25}
                    )
                ),
            ],
        ),
        types.Content(role="model", parts=[types.Part(text="Paris 21, Rome 25.")]),
        types.Content(role="user", parts=[types.Part(text="And é, in JSON?")]),
    ]


REQUESTS: dict[str, Callable[[], LlmRequest]] = {
    "plain": lambda: LlmRequest(
        model=MODEL, contents=[types.Content(role="user", parts=[types.Part(text="hi")])]
    ),
    "system_tools_and_settings": lambda: LlmRequest(
        model=MODEL,
        contents=conversation(),
        config=types.GenerateContentConfig(
            system_instruction="You are terse.",
            tools=[types.Tool(function_declarations=[WEATHER, SEARCH])],
            temperature=0.2,
            top_p=0.9,
            max_output_tokens=300,
            stop_sequences=["END"],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
            ),
        ),
    ),
    "tool_choice_none": lambda: LlmRequest(
        model=MODEL,
        contents=conversation(),
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER])],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.NONE)
            ),
        ),
    ),
    "response_schema_pydantic": lambda: LlmRequest(
        model=MODEL,
        contents=conversation(),
        config=types.GenerateContentConfig(response_schema=Answer, response_mime_type="application/json"),
    ),
    "response_schema_genai": lambda: LlmRequest(
        model=MODEL,
        contents=conversation(),
        config=types.GenerateContentConfig(
            response_schema=types.Schema(
                type=types.Type.OBJECT,
                properties={
                    "a": types.Schema(type=types.Type.STRING),
                    "b": types.Schema(type=types.Type.NUMBER),
                },
            )
        ),
    ),
    "missing_tool_result_and_system_content": lambda: LlmRequest(
        model=MODEL,
        contents=[*conversation()[:2], types.Content(role="user", parts=[types.Part(text="go on")])],
        config=types.GenerateContentConfig(
            system_instruction=types.Content(parts=[types.Part(text="One."), types.Part(text="Two.")])
        ),
    ),
    "thoughts_in_history": lambda: LlmRequest(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="q")]),
            types.Content(role="model", parts=[types.Part(text="hmm", thought=True), types.Part(text="a")]),
            types.Content(role="user", parts=[types.Part(text="q2")]),
        ],
    ),
}

THINKING_MODEL = "openai/o3-mini"
THINKING: dict[str, types.ThinkingConfig] = {
    "budget_low": types.ThinkingConfig(thinking_budget=512),
    "budget_medium": types.ThinkingConfig(thinking_budget=2000),
    "budget_high": types.ThinkingConfig(thinking_budget=9000),
    "level": types.ThinkingConfig(thinking_level=types.ThinkingLevel.HIGH),
}


async def wire_body(llm: Any, request: LlmRequest, server: ReplayServer) -> dict[str, Any]:
    server.add(stream_response(text_pieces(["ok"])))
    await collect(llm.generate_content_async(request, stream=True))
    body: dict[str, Any] = server.requests[-1].json
    return body


async def both(make: Callable[[], LlmRequest], server: ReplayServer, model: str = MODEL) -> tuple[Any, Any]:
    ours = await wire_body(CllmLlm(model=model, **options(server)), make(), server)
    theirs = await wire_body(LiteLlm(model=model, **options(server)), make(), server)
    return ours, theirs


# The mapping follows LiteLlm 2.13. Older ones send Schema types in upper case, a system Content as an
# object, no tool_choice for mode NONE and no reasoning settings: compared only from 2.13 on.
ADK_VERSION = tuple(int(p) for p in version("google-adk").split(".")[:2])
REFERENCE = pytest.mark.skipif(
    ADK_VERSION < (2, 13), reason=f"LiteLlm {version('google-adk')} maps requests as 2.13 no longer does"
)


@REFERENCE
@pytest.mark.parametrize("name", list(REQUESTS))
async def test_same_request_as_litellm(replay_server: ReplayServer, name: str) -> None:
    ours, theirs = await both(REQUESTS[name], replay_server)
    assert json.dumps(ours, sort_keys=True, indent=1) == json.dumps(theirs, sort_keys=True, indent=1)


@REFERENCE
@pytest.mark.parametrize("name", list(THINKING))
async def test_thinking_config_maps_like_litellm(replay_server: ReplayServer, name: str) -> None:
    def make() -> LlmRequest:
        request = REQUESTS["plain"]()
        request.model = THINKING_MODEL
        request.config = types.GenerateContentConfig(thinking_config=THINKING[name])
        return request

    ours, theirs = await both(make, replay_server, THINKING_MODEL)
    assert ours == theirs
    assert "reasoning_effort" in ours


def test_the_mapped_request_has_what_it_should(replay_server: ReplayServer) -> None:
    """Not only equal to LiteLlm's: the parts a provider needs are there."""
    import asyncio

    body = asyncio.run(
        wire_body(
            CllmLlm(model=MODEL, **options(replay_server)),
            REQUESTS["system_tools_and_settings"](),
            replay_server,
        )
    )
    messages = body["messages"]
    assert messages[0] == {"role": "system", "content": "You are terse."}
    assistant = messages[2]
    assert [c["function"]["arguments"] for c in assistant["tool_calls"]] == [
        '{"city": "Paris"}',
        '{"city": "Rome"}',
    ]
    assert messages[3:5] == [
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": '{"temp": 25}'},
    ]
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"], body["stop"]) == (
        0.2,
        0.9,
        300,
        ["END"],
    )
    assert body["tool_choice"] == "required"
    weather = body["tools"][0]["function"]
    assert weather["parameters"]["properties"]["city"] == {"type": "string", "description": "City name"}
    assert weather["parameters"]["required"] == ["city"]
