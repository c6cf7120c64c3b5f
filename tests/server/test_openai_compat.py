"""/v1/chat/completions and /v1/models through the official openai client, against a real uvicorn."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest
from support.replay_server import ReplayServer, error_response, json_response, sse_events, stream_response

from cllm.core.accumulator import StreamAccumulator

from .conftest import (
    PROVIDER_KEY,
    Running,
    ServerFactory,
    feed_failing_on_tool_calls,
    sse_body,
    text_stream,
    text_then_tool_chunks,
    tool_chunks,
)


def client(server: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_streaming_text_with_usage(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["Hello", ", ", "world"]))
    stream = client(server).chat.completions.create(
        model="test",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, world"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    # The provider got the alias's model and key; the client's key never went anywhere.
    sent = provider.requests[0]
    assert sent.json["model"] == "gpt-test"
    assert sent.header("authorization") == f"Bearer {PROVIDER_KEY}"


def test_no_usage_chunk_unless_asked(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["a", "b"]))
    chunks = list(
        client(server).chat.completions.create(
            model="test", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_streaming_tool_call_id_and_name_once(server: Running, provider: ReplayServer) -> None:
    provider.add(stream_response(sse_events(sse_body(tool_chunks()))))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    chunks = list(
        client(server).chat.completions.create(
            model="test", messages=[{"role": "user", "content": "weather?"}], tools=tools, stream=True
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [d.id for d in deltas if d.id] == ["call_abc"]
    assert [d.function.name for d in deltas if d.function and d.function.name] == ["get_weather"]
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(arguments) == {"city": "Paris", "unit": "c"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]
    assert provider.requests[0].json["tools"] == tools


def test_stream_helper_accumulates(server: Running, provider: ReplayServer) -> None:
    # The client's own accumulating helper must accept our chunks.
    provider.add(stream_response(sse_events(sse_body(tool_chunks()))))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with client(server).chat.completions.stream(
        model="test", messages=[{"role": "user", "content": "weather?"}], tools=tools
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_abc", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}


async def test_async_client_streaming(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["one ", "two ", "three"], delay=0.01))
    aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    stream = await aclient.chat.completions.create(
        model="test", messages=[{"role": "user", "content": "count"}], stream=True
    )
    parts = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert parts == ["one ", "two ", "three"]
    await aclient.close()


def test_non_streaming(server: Running, provider: ReplayServer) -> None:
    provider.add(
        json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-test",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Bonjour"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        )
    )
    completion = client(server).chat.completions.create(
        model="test", messages=[{"role": "user", "content": "hello in French"}]
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Bonjour"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 4


def test_provider_401_becomes_openai_error_without_the_key(server: Running, provider: ReplayServer) -> None:
    provider.add(error_response(401, f"Incorrect API key provided: {PROVIDER_KEY}."))
    with pytest.raises(openai.AuthenticationError) as caught:
        list(
            client(server).chat.completions.create(
                model="test", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    assert caught.value.status_code == 401
    body = caught.value.response.text
    assert PROVIDER_KEY not in body
    assert "Incorrect API key" in json.loads(body)["error"]["message"]
    # The server is still fine.
    provider.add(text_stream(["ok"]))
    stream = client(server).chat.completions.create(
        model="test", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "ok"


def test_bad_requests(server: Running) -> None:
    c = client(server)
    with pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model="test", messages=[])
    assert caught.value.body["message"] == "'messages' must be a non-empty list"  # type: ignore[index]
    r = httpx.post(
        server.url + "/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_client_cannot_redirect_the_provider(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream(["fine"]))
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={
            "model": "test",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "api_base": "http://127.0.0.1:9/v1",
            "api_key": "attacker",
        },
    )
    assert r.status_code == 200
    sent = provider.requests[0]
    assert sent.header("authorization") == f"Bearer {PROVIDER_KEY}"


def test_models_and_healthz(server: Running) -> None:
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["test"]
    health = httpx.get(server.url + "/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_disconnect_closes_upstream_within_100ms(server: Running, provider: ReplayServer) -> None:
    provider.add(text_stream([f"w{i} " for i in range(500)], delay=0.02))
    body = json.dumps({"model": "test", "messages": [{"role": "user", "content": "go"}], "stream": True})
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n".encode()
        + b"content-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n{body}".encode()
    )
    received = b""
    while received.count(b"data: ") < 5:
        received += sock.recv(65536)
    exchange = provider.wait_exchange(0)
    assert exchange.outcome == "streaming"
    closed_at = time.monotonic()
    sock.close()
    provider_closed = exchange.wait_client_closed(timeout=2.0)
    assert provider_closed - closed_at < 0.1
    assert exchange.closed_early


def raw_chunks(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_tool_call_answer_opens_with_null_content(server: Running, provider: ReplayServer) -> None:
    provider.add(stream_response(sse_events(sse_body(tool_chunks()))))
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "test", "messages": [{"role": "user", "content": "weather?"}], "stream": True},
    )
    first = raw_chunks(r.text)[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert first["tool_calls"][0]["function"]["name"] == "get_weather"


def test_provider_error_type_and_code_are_kept(server: Running, provider: ReplayServer) -> None:
    provider.add(
        error_response(
            401, "Incorrect API key provided", type="invalid_request_error", code="invalid_api_key"
        ),
        error_response(429, "slow down", type="requests", code="rate_limit_exceeded"),
    )
    for stream in (True, False):
        r = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "test", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        )
        error = r.json()["error"]
        if stream:
            assert r.status_code == 401
            assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
        else:
            assert r.status_code == 429
            assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")


def test_dropped_provider_is_502(server: Running, provider: ReplayServer) -> None:
    provider.add(
        stream_response([b'{"id": "x"'], content_type="application/json", reset_after=0),
        stream_response(sse_events(sse_body(tool_chunks())), reset_after=0),
    )
    for stream in (False, True):
        r = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "test", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        )
        assert r.status_code == 502, (stream, r.text)
        assert r.json()["error"]["type"] == "api_error"


def test_missing_provider_key_is_401_naming_the_variable(
    make_server: ServerFactory, provider: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = make_server(
        config_extra=f'[models.nokey]\nmodel = "openai/gpt-test"\napi_base = "{provider.url}/v1"\n'
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        client(server).chat.completions.create(model="nokey", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert "OPENAI_API_KEY" in caught.value.message
    assert provider.requests == []


def test_failure_while_encoding_ends_with_an_error_chunk_and_done(
    server: Running, provider: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What tool-call arguments nested thousands of levels deep once did in the core.
    monkeypatch.setattr(StreamAccumulator, "feed", feed_failing_on_tool_calls(StreamAccumulator.feed))
    provider.add(stream_response(sse_events(sse_body(text_then_tool_chunks()))))
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "test", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    )
    assert r.status_code == 200
    chunks = raw_chunks(r.text)
    assert chunks[1]["choices"][0]["delta"]["content"] == "Hi"
    assert chunks[-1]["error"]["message"] == "internal error: RecursionError"
    assert r.text.endswith("data: [DONE]\n\n")
