"""The fast path (cllm reading OpenAI-format streams itself) against LiteLLM's own stream.

Every real OpenAI-format capture is replayed over loopback HTTP twice, once per path, through
LiteLLM's real provider code: the same request goes out, and the same events and the same
`Response` come back (text, reasoning, tool calls, finish and raw finish reason, usage, cost, model).
Where LiteLLM's stream loses something the capture has, the fast path is held to the capture instead.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.captures import Capture, all_captures, capture, fixtures_dir
from support.faults import sse
from support.replay_server import ReplayServer, ScriptedResponse, error_response, split_at, stream_response

import cllm
from cllm import _provider, _wire

if not fixtures_dir().is_dir():
    pytest.skip(f"no captures at {fixtures_dir()} (set CLLM_FIXTURES)", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")

OPENAI_WIRE = [cap for cap in all_captures() if cap.wire_format == "openai" and not cap.skip_reason]
# Captures whose own LiteLLM route is one the fast path reads (the rest are checked through openai/).
FAST_ROUTE = {"openai", "azure", "nvidia_nim"}

# What LiteLLM's stream drops that the capture has: compared with the capture, not with LiteLLM.
LITELLM_DROPS = {
    "openai__refusal": "refusal",
    "openai__refusal_logprobs": "refusal",
}


@dataclasses.dataclass
class Run:
    events: list[Any]
    response: cllm.Response
    fast: bool
    request: Any
    error: cllm.CllmError | None = None

    def comparable(self) -> cllm.Response:
        return dataclasses.replace(self.response, ttft=None, duration=None)


@pytest.fixture(name="server")
def server_fixture() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


def _route(cap: Capture, server: ReplayServer, prefix: str | None = None) -> tuple[str, dict[str, Any]]:
    kwargs = cap.litellm_kwargs(server.url)
    del kwargs["stream_options"]
    model = kwargs.pop("model")
    if prefix is not None and prefix != cap.route.prefix:
        model = f"{prefix}/{cap.model}"
        kwargs = {"api_base": server.url + "/v1", "api_key": "sk-test"}
        if prefix == "azure":
            kwargs = {"api_base": server.url, "api_key": "sk-test", "api_version": "2024-10-21"}
    return model, kwargs


def run(
    server: ReplayServer,
    model: str,
    kwargs: dict[str, Any],
    response: ScriptedResponse,
    *,
    fast: bool,
    sync: bool = False,
) -> Run:
    server.add(response)
    before = len(server.requests)

    events: list[Any] = []
    error: cllm.CllmError | None = None
    took_fast = False

    async def consume() -> Any:
        nonlocal took_fast
        async with cllm.astream(model, "replay", fast_path=fast, **kwargs) as s:
            try:
                async for event in s:
                    events.append(copy.deepcopy(event))
            finally:
                took_fast = getattr(s._up, "fast", False)
        return s.response

    def consume_sync() -> Any:
        nonlocal took_fast
        with cllm.stream(model, "replay", fast_path=fast, **kwargs) as s:
            try:
                events.extend(copy.deepcopy(e) for e in s)
            finally:
                took_fast = getattr(s._up, "fast", False)
        return s.response

    try:
        final = consume_sync() if sync else asyncio.run(consume())
    except cllm.StreamInterrupted as exc:
        error, final = exc, exc.response
    return Run(events, final, took_fast, server.requests[before], error)


def both(
    server: ReplayServer, model: str, kwargs: dict[str, Any], response: ScriptedResponse
) -> tuple[Run, Run]:
    slow = run(server, model, kwargs, response, fast=False)
    fast = run(server, model, kwargs, response, fast=True)
    assert not slow.fast
    return slow, fast


def assert_same(slow: Run, fast: Run, *, drops: str | None = None) -> None:
    # The request is LiteLLM's on both paths, to the byte.
    assert fast.request.target == slow.request.target
    assert fast.request.json == slow.request.json
    assert fast.request.header("authorization") == slow.request.header("authorization")
    assert fast.request.header("api-key") == slow.request.header("api-key")
    assert _fields(fast.error) == _fields(slow.error)
    if drops is None:
        assert fast.events == slow.events
        assert fast.comparable() == slow.comparable()
    else:
        assert dataclasses.replace(fast.comparable(), **{drops: None}) == slow.comparable()


@pytest.mark.parametrize("cap", OPENAI_WIRE, ids=lambda c: c.name)
def test_every_capture_gives_the_same_events_and_response(cap: Capture, server: ReplayServer) -> None:
    prefix = cap.route.prefix if cap.route.prefix in FAST_ROUTE else "openai"
    model, kwargs = _route(cap, server, prefix)
    slow, fast = both(server, model, kwargs, cap.response())
    assert fast.fast, f"{cap.name} did not take the fast path"
    drops = LITELLM_DROPS.get(cap.name)
    assert_same(slow, fast, drops=drops)
    if drops == "refusal":
        assert fast.response.refusal == cap.expected.refusal
        assert slow.response.refusal is None


# A few captures that between them carry text, usage, tool calls, reasoning and content filters.
ROUTE_SAMPLE = ["openai__text_usage", "openai__parallel_tool_calls", "deepseek__reasoning_tool_call"]


@pytest.mark.parametrize("prefix", sorted(_wire.FAST_PROVIDERS))
@pytest.mark.parametrize("name", ROUTE_SAMPLE)
def test_every_fast_provider_route_is_equivalent(prefix: str, name: str, server: ReplayServer) -> None:
    cap = capture(name)
    model, kwargs = _route(cap, server, prefix)
    slow, fast = both(server, model, kwargs, cap.response())
    assert fast.fast, f"{prefix}/ did not take the fast path"
    assert_same(slow, fast)


def test_the_sync_stream_takes_the_fast_path_too(server: ReplayServer) -> None:
    cap = capture("openai__tool_call_many_deltas")
    model, kwargs = _route(cap, server)
    slow = run(server, model, kwargs, cap.response(), fast=False, sync=True)
    fast = run(server, model, kwargs, cap.response(), fast=True, sync=True)
    assert fast.fast and not slow.fast
    assert_same(slow, fast)


@pytest.mark.parametrize(
    "name",
    [
        "openai__tool_call_many_deltas",
        "deepseek__reasoning_tool_call",
        "azure-openai__content_filter_results",
    ],
)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_byte_splits_give_the_same_events(
    name: str, server: ReplayServer, data: st.DataObject
) -> None:
    cap = capture(name)
    wire = cap.wire
    pieces = split_at(wire, data.draw(st.lists(st.integers(1, len(wire) - 1), max_size=60)))
    model, kwargs = _route(cap, server, "azure" if cap.route.prefix == "azure" else "openai")
    whole = run(server, model, kwargs, cap.response(pieces=[wire]), fast=False)
    split = run(server, model, kwargs, cap.response(pieces=pieces), fast=True)
    assert split.fast
    assert split.events == whole.events
    assert split.comparable() == whole.comparable()


# -- when it falls back -------------------------------------------------------------------------

TEXT = capture("openai__text_usage")


def test_fast_path_false_and_the_environment_switch_turn_it_off(
    server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, kwargs = _route(TEXT, server)
    assert run(server, model, kwargs, TEXT.response(), fast=True).fast
    assert not run(server, model, kwargs, TEXT.response(), fast=False).fast
    monkeypatch.setenv("CLLM_FAST_PATH", "0")
    off = run(server, model, kwargs, TEXT.response(), fast=True)
    assert not off.fast and off.response.text == TEXT.expected.text


def test_litellm_callbacks_send_the_stream_through_litellm(server: ReplayServer) -> None:
    lib = _provider.litellm()
    seen: list[Any] = []

    async def on_success(kwargs: Any, response: Any, start: Any, end: Any) -> None:
        seen.append(response)

    lib._async_success_callback.append(on_success)
    try:
        model, kwargs = _route(TEXT, server)
        with_callback = run(server, model, kwargs, TEXT.response(), fast=True)
    finally:
        lib._async_success_callback.remove(on_success)
    assert not with_callback.fast
    assert with_callback.response.text == TEXT.expected.text


def test_the_cache_entry_litellm_lists_for_caches_of_its_own_does_not_turn_it_off(
    server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litellm.caching.caching import Cache

    lib = _provider.litellm()
    for name in ("input_callback", "success_callback", "_async_success_callback"):
        monkeypatch.setattr(lib, name, [])
    Cache(type="local")  # as LiteLLM's Vertex context caching module does when it is imported
    assert "cache" in lib.success_callback and lib.cache is None
    model, kwargs = _route(TEXT, server)
    assert run(server, model, kwargs, TEXT.response(), fast=True).fast
    monkeypatch.setattr(lib, "cache", Cache(type="local"))  # a cache that is used
    cached = run(server, model, kwargs, TEXT.response(), fast=True)
    assert not cached.fast and cached.response.text == TEXT.expected.text


@pytest.mark.parametrize("prefix", ["groq", "mistral", "deepseek", "openrouter", "hosted_vllm"])
def test_providers_litellm_reads_with_its_own_handler_are_not_read_fast(
    prefix: str, server: ReplayServer
) -> None:
    # Their LiteLLM route streams through its own HTTP handler and provider-specific chunk
    # transformations, not the openai SDK: reading the body there would mean redoing those.
    model, kwargs = _route(TEXT, server, prefix)
    got = run(server, model, kwargs, TEXT.response(), fast=True)
    assert not got.fast
    assert got.response.text == TEXT.expected.text


# -- errors -------------------------------------------------------------------------------------


def _failure(server: ReplayServer, response: ScriptedResponse, fast: bool) -> cllm.CllmError:
    model, kwargs = _route(TEXT, server)
    try:
        got = run(server, model, kwargs, response, fast=fast)
    except cllm.CllmError as exc:
        return exc
    assert got.error is not None, "no error"
    return got.error


def _fields(error: cllm.CllmError | None) -> tuple[Any, ...]:
    if error is None:
        return ()
    fields: tuple[Any, ...] = (type(error).__name__, str(error))
    if isinstance(error, cllm.ProviderError):
        fields += (error.status_code, error.kind, error.error_type, error.code, error.retry_after)
    if isinstance(error, cllm.StreamInterrupted):
        r = error.response
        fields += (r.text, r.finish_reason, r.interrupted, r.error)
    return fields


def _text_pieces(n: int) -> list[bytes]:
    model = "gpt-4o-mini"
    return [
        sse({"id": "c", "model": model, "choices": [{"index": 0, "delta": {"content": f"w{i} "}}]})
        for i in range(n)
    ]


FAILURES = {
    "429 with Retry-After": error_response(
        429, "Rate limit reached", type="requests", code="rate_limit_exceeded", headers={"retry-after": "7"}
    ),
    "401": error_response(401),
    "500": error_response(500, "The server had an error", type="server_error", code=None),
    "error in the stream before output": stream_response(
        [sse({"error": {"message": "The model is overloaded", "type": "overloaded_error", "code": 529}})]
    ),
    "error in the stream after output": stream_response(
        [*_text_pieces(3), sse({"error": {"message": "Internal error", "type": "server_error"}})]
    ),
    "connection reset after output": stream_response(_text_pieces(4), reset_after=3),
    "malformed chunk after output": stream_response([*_text_pieces(2), b"data: {not json\n\n"]),
    "clean end without a finish reason": stream_response(_text_pieces(3)),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failures_give_the_same_error_on_both_paths(case: str, server: ReplayServer) -> None:
    slow = _failure(server, FAILURES[case], fast=False)
    fast = _failure(server, FAILURES[case], fast=True)
    assert _fields(fast) == _fields(slow)


def test_a_truncated_stream_says_so_on_both_paths(server: ReplayServer) -> None:
    model, kwargs = _route(TEXT, server)
    body = [*_text_pieces(3)]
    slow, fast = both(server, model, kwargs, stream_response(body))
    assert_same(slow, fast)
    assert fast.response.finish_reason is cllm.FinishReason.ERROR


# -- what stays the same ------------------------------------------------------------------------


def test_breaking_out_closes_the_connection_at_once(server: ReplayServer) -> None:
    model, kwargs = _route(TEXT, server)
    server.add(stream_response(_text_pieces(200), delay=0.01))

    async def go() -> float:
        async with cllm.astream(model, "replay", **kwargs) as s:
            async for _ in s:
                assert s._up.fast  # type: ignore[attr-defined]
                break
        return await server.exchanges[-1].await_client_closed(2.0)

    asyncio.run(go())
    assert server.exchanges[-1].closed_early


def test_idle_timeout_applies(server: ReplayServer) -> None:
    model, kwargs = _route(TEXT, server)
    got = run(
        server,
        model,
        {**kwargs, "idle_timeout": 0.3},
        stream_response(_text_pieces(3), hang_after=2),
        fast=True,
    )
    assert got.fast
    assert isinstance(got.error, cllm.StreamTimeout) and got.error.kind == "idle"
    assert got.error.response.text == "w0 w1 "


def test_no_chunk_is_kept(server: ReplayServer) -> None:
    model, kwargs = _route(TEXT, server)
    finish = sse({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    pieces = [*_text_pieces(2000), finish, b"data: [DONE]\n\n"]
    server.add(stream_response(pieces))

    async def go() -> tuple[int, str]:
        async with cllm.astream(model, "replay", **kwargs) as s:
            wrapper = s._up._wrapper  # type: ignore[attr-defined]
            async for _ in s:
                wrapper = wrapper or s._up._wrapper  # type: ignore[attr-defined]
            return len(getattr(wrapper, "chunks", []) or []), s.response.text

    kept, text = asyncio.run(go())
    assert kept == 0
    assert text == "".join(f"w{i} " for i in range(2000))


def test_requests_are_json_lossless(server: ReplayServer) -> None:
    # Parameters LiteLLM maps (max_tokens, tools, tool_choice, temperature) reach the wire as it maps them.
    model, kwargs = _route(TEXT, server)
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ]
    options = {
        **kwargs,
        "max_tokens": 20,
        "temperature": 0.2,
        "tools": tools,
        "tool_choice": "auto",
        "user": "u",
    }
    slow, fast = both(server, model, options, TEXT.response())
    assert fast.fast
    assert_same(slow, fast)
    sent = json.loads(fast.request.body)
    assert sent["stream"] is True and sent["max_tokens"] == 20 and sent["tools"] == tools
