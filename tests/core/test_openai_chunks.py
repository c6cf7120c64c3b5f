"""OpenAI-format chunk payloads into core `Chunk`s."""

from __future__ import annotations

from cllm.core.accumulator import Chunk, ToolCallChunk
from cllm.core.openai_chunks import parse_chunk, read_usage, stream_error
from cllm.core.response import Usage


def test_text_refusal_reasoning_and_finish_of_choice_zero_only() -> None:
    chunk = parse_chunk(
        {
            "model": "gpt-4o",
            "choices": [
                {"index": 1, "delta": {"content": "other choice"}},
                {
                    "index": 0,
                    "delta": {"content": "hi", "refusal": "no", "reasoning": "think"},
                    "finish_reason": "stop",
                },
            ],
        }
    )
    assert chunk == Chunk(text="hi", reasoning="think", refusal="no", finish_reason="stop", model="gpt-4o")
    assert parse_chunk({"choices": [{"delta": {"reasoning_content": "r"}}]}).reasoning == "r"
    assert parse_chunk({"choices": [{"index": 2, "delta": {"content": "x"}}]}) == Chunk()


def test_tool_calls_with_missing_fields_and_object_arguments() -> None:
    chunk = parse_chunk(
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}},
                            {"function": {"arguments": {"a": 1}}},
                            "not a call",
                        ]
                    }
                }
            ]
        }
    )
    assert chunk.tool_calls == [
        ToolCallChunk(0, "call_1", "f", ""),
        ToolCallChunk(None, None, None, '{"a": 1}'),
    ]


def test_usage_from_usage_or_groq() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "completion_tokens_details": {"reasoning_tokens": 3},
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    assert parse_chunk({"choices": [], "usage": usage}).usage == Usage(10, 5, 15, 3, 4)
    assert parse_chunk({"x_groq": {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}}).usage == Usage(
        1, 2, 3
    )
    assert read_usage({"prompt_tokens": 0, "completion_tokens": 0}) is None
    assert read_usage(None) is None


def test_errors_in_the_stream() -> None:
    assert stream_error({"error": {"message": "overloaded"}}) == {"message": "overloaded"}
    assert stream_error({"error": "text"}) == {"message": "text"}
    assert stream_error({"error": None}) is None
    assert stream_error({"choices": []}) is None
