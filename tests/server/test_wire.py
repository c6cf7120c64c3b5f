"""The pure encoders: cllm events as JSON, OpenAI chunks, settings from a config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cllm import Finish, FinishReason, Response, TextDelta, ToolCallDelta, ToolCallEnd, ToolCallStart, Usage
from cllm.config import ConfigError
from cllm.server.settings import ModelTable, RequestError, Settings
from cllm.server.wire import ChunkEncoder, event_data, openai_completion, openai_finish_reason, sse_frame


def frames(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]


def test_chunk_encoder_tool_call_once_per_index() -> None:
    enc = ChunkEncoder("m", include_usage=True)
    start = ToolCallStart(0, None, "f")
    out = enc.first(start)
    out += enc.encode(start)
    out += enc.encode(ToolCallDelta(0, None, "f", '{"a"', {}))
    out += enc.encode(ToolCallDelta(0, None, "f", ": 1}", {"a": 1}))
    out += enc.encode(ToolCallEnd(0, "call_0", "f", {"a": 1}, '{"a": 1}'))
    out += enc.encode(Finish(FinishReason.TOOL_CALLS, "tool_use", Usage(1, 2, 3)))
    chunks = frames(out)
    assert out.endswith("data: [DONE]\n\n")
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [("id" in tc, "name" in tc.get("function", {})) for tc in calls] == [
        (True, True),
        (False, False),
        (False, False),
    ]
    assert calls[0]["id"].startswith("call_")
    # As OpenAI sends it: the role and "content": null on the tool call's own first chunk.
    first = chunks[0]["choices"][0]["delta"]
    assert (first["role"], first["content"], first["tool_calls"][0]["function"]["name"]) == (
        "assistant",
        None,
        "f",
    )
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 3
    assert {c["id"] for c in chunks} == {enc.id}


def test_chunk_encoder_text_opens_with_empty_content() -> None:
    enc = ChunkEncoder("m")
    text = TextDelta("Hi")
    chunks = frames(enc.first(text) + enc.encode(text))
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
    ]


def test_chunk_text_is_escaped_json() -> None:
    enc = ChunkEncoder('we"ird\nname')
    text = enc.encode(TextDelta('line "1"\n</script>'))
    assert frames(text)[0]["choices"][0]["delta"]["content"] == 'line "1"\n</script>'
    assert text.count("\n\n") == 1


def test_finish_reasons_in_openai_spelling() -> None:
    assert openai_finish_reason(FinishReason.CANCELLED) == "stop"
    assert openai_finish_reason(FinishReason.LENGTH) == "length"
    completion = openai_completion(Response(text="", finish_reason=FinishReason.STOP), "m")
    assert completion["choices"][0]["message"]["content"] == ""
    assert completion["usage"]["total_tokens"] == 0


def test_event_data_and_frames() -> None:
    assert event_data(ToolCallDelta(1, "id", "n", "x", {"k": [1]}))["arguments"] == {"k": [1]}
    assert sse_frame("text-delta", '{"text":"a"}', 3) == b'id: 3\nevent: text-delta\ndata: {"text":"a"}\n\n'


def test_model_aliases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIAS_KEY", "sk-from-env-123456")
    config = tmp_path / "c.toml"
    config.write_text(
        'default_model = "fast"\n[models.fast]\nmodel = "openai/x"\napi_base = "http://h/v1"\n'
        'api_key_env = "ALIAS_KEY"\n[server]\nmax_streams_per_client = 3\n'
    )
    settings = Settings.load({}, config)
    assert settings.max_streams_per_client == 3
    assert settings.models.resolve(None) == (
        "openai/x",
        {"api_base": "http://h/v1", "api_key": "sk-from-env-123456"},
    )
    assert settings.models.resolve("anthropic/claude") == ("anthropic/claude", {})
    assert settings.scrubber("key sk-from-env-123456") == "key ***"
    assert Settings.load({"max_streams_per_client": 5}, config).max_streams_per_client == 5


def test_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[models.fast]\napi_base = "x"\n')
    with pytest.raises(ConfigError, match="needs model"):
        Settings.load({}, config)
    with pytest.raises(ConfigError, match="not found"):
        Settings.load({}, tmp_path / "missing.toml")


def test_no_model_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CLLM_MODEL", raising=False)
    monkeypatch.setenv("CLLM_HOME", str(tmp_path))
    monkeypatch.setattr("cllm.local.is_available", lambda: False)
    with pytest.raises(RequestError, match="no model"):
        ModelTable().resolve(None)
