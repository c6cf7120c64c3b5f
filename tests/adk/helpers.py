"""Scripted OpenAI-compatible streams and ADK requests for the adapter's tests."""

from __future__ import annotations

import json
from typing import Any

from google.adk.models.llm_request import LlmRequest
from google.genai import types
from support.replay_server import ReplayServer

MODEL = "openai/gpt-4o-2024-08-06"
DONE = b"data: [DONE]\n\n"


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def usage_chunk(prompt: int = 9, completion: int = 4, **details: Any) -> bytes:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    if "reasoning" in details:
        usage["completion_tokens_details"] = {"reasoning_tokens": details["reasoning"]}
    if "cached" in details:
        usage["prompt_tokens_details"] = {"cached_tokens": details["cached"]}
    return sse(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [],
            "usage": usage,
        }
    )


def text_pieces(
    words: list[str], finish: str | None = "stop", usage: bytes | None = None, done: bool = True
) -> list[bytes]:
    pieces = [chunk({"role": "assistant", "content": ""})]
    pieces += [chunk({"content": w}) for w in words]
    if finish:
        pieces.append(chunk({}, finish))
    if usage is not None:
        pieces.append(usage)
    if done:
        pieces.append(DONE)
    return pieces


def tool_pieces(
    fragments: list[str],
    finish: str | None = "tool_calls",
    name: str = "make_file",
    call_id: str = "call_1",
    usage: bytes | None = None,
) -> list[bytes]:
    first = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    pieces = [chunk({"role": "assistant", "content": None, "tool_calls": [first]})]
    pieces += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}) for f in fragments]
    if finish:
        pieces.append(chunk({}, finish))
    pieces.append(usage if usage is not None else usage_chunk())
    pieces.append(DONE)
    return pieces


def options(server: ReplayServer, **extra: Any) -> dict[str, Any]:
    return {"api_base": server.url + "/v1", "api_key": "sk-test", **extra}


def user_request(text: str = "hi", **config: Any) -> LlmRequest:
    return LlmRequest(
        model=MODEL,
        contents=[types.Content(role="user", parts=[types.Part(text=text)])],
        config=types.GenerateContentConfig(**config),
    )


async def collect(agen: Any) -> list[Any]:
    return [response async for response in agen]
