"""``local/gemma-3-270m`` end to end: real llama.cpp generation through LiteLLM and cllm.

Temperature 0 and a few tokens each, so the replies are fixed and the tests quick.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest

pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed: pip install 'cllm[local]'")

import cllm
from cllm import FinishReason, ProviderError, TextDelta, ToolCallDelta, ToolCallEnd, ToolCallStart
from cllm.local import DEFAULT_MODEL
from cllm.local._model import LoadedModel, load

QUESTION = "What is the capital of France?"
LONG = "Continue the sequence: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"  # a reply that goes on and on
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    loaded = load("gemma-3-270m")
    # Warm LiteLLM's lazy imports too, so timing tests measure generation only.
    cllm.complete(DEFAULT_MODEL, "Hi", temperature=0, max_tokens=1)
    return loaded


async def collect(**options: Any) -> tuple[list[Any], cllm.Response]:
    prompt = options.pop("prompt", QUESTION)
    events = []
    async with cllm.astream(DEFAULT_MODEL, prompt, temperature=0, **options) as s:
        async for event in s:
            events.append(event)
    return events, s.response


# -- text -----------------------------------------------------------------------------------------


async def test_text_streams_token_by_token_with_usage(model: LoadedModel) -> None:
    events, response = await collect(max_tokens=20)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) >= 4
    assert response.text == "".join(deltas)
    assert "Paris" in response.text
    assert response.finish_reason is FinishReason.STOP
    assert response.usage is not None
    assert response.usage.prompt_tokens and response.usage.prompt_tokens > 5
    assert response.usage.completion_tokens and response.usage.completion_tokens >= len(deltas)
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.cost == 0.0  # runs on this machine: free, not "unknown"


async def test_max_tokens_ends_the_reply_with_length(model: LoadedModel) -> None:
    _, response = await collect(prompt=LONG, max_tokens=4)
    assert response.finish_reason is FinishReason.LENGTH
    assert response.usage is not None and response.usage.completion_tokens == 4
    assert response.text


async def test_a_stop_sequence_ends_the_reply_before_it(model: LoadedModel) -> None:
    _, whole = await collect(max_tokens=20)
    _, cut = await collect(max_tokens=20, stop=[" is"])
    assert whole.text.startswith(cut.text + " is")
    assert cut.finish_reason is FinishReason.STOP


async def test_generation_never_blocks_the_event_loop(model: LoadedModel) -> None:
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    _, response = await collect(prompt=LONG, max_tokens=40)
    running = False
    await task
    assert response.usage is not None and response.usage.completion_tokens == 40
    assert len(gaps) > 100
    assert max(gaps) <= 0.05, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"


# -- closing and queueing -------------------------------------------------------------------------


async def test_closing_the_stream_stops_generation_within_a_token(model: LoadedModel) -> None:
    llm = model.llm
    s = cllm.astream(DEFAULT_MODEL, LONG, temperature=0, max_tokens=300)
    seen = 0
    async for event in s:
        seen += isinstance(event, TextDelta)
        if seen == 3:
            break
    before = llm.n_tokens  # tokens evaluated so far
    await s.aclose()
    after = llm.n_tokens
    assert not model.lock.locked, "the model is still busy after the stream was closed"
    assert after - before <= 2
    await asyncio.sleep(0.3)
    assert llm.n_tokens == after, "tokens were generated after the stream was closed"
    assert s.response.interrupted

    # The next request starts at once (300 more tokens would take seconds).
    started = time.perf_counter()
    _, response = await collect(max_tokens=2)
    assert response.text
    assert time.perf_counter() - started < 1.5


async def test_concurrent_requests_take_turns_and_both_complete(model: LoadedModel) -> None:
    async def run(prompt: str) -> tuple[float, float, str]:
        times = []
        async with cllm.astream(DEFAULT_MODEL, prompt, temperature=0, max_tokens=8) as s:
            async for event in s:
                if isinstance(event, TextDelta):
                    times.append(time.perf_counter())
        return times[0], times[-1], s.response.text

    (a_first, a_last, a_text), (b_first, b_last, b_text) = await asyncio.gather(
        run(QUESTION), run("What is the capital of Italy?")
    )
    assert a_last < b_first or b_last < a_first, "the two generations interleaved"
    assert a_text == (await collect(max_tokens=8))[1].text
    assert b_text == (await collect(prompt="What is the capital of Italy?", max_tokens=8))[1].text
    assert not model.lock.locked


def test_the_sync_api_streams_and_closes(model: LoadedModel) -> None:
    with cllm.stream(DEFAULT_MODEL, QUESTION, temperature=0, max_tokens=20) as s:
        pieces = list(s.text_stream)
    assert len(pieces) >= 4 and "".join(pieces) == s.response.text
    assert s.response.finish_reason is FinishReason.STOP

    with cllm.stream(DEFAULT_MODEL, LONG, temperature=0, max_tokens=300) as s:
        for _ in s:
            break
    deadline = time.perf_counter() + 0.5
    while model.lock.locked and time.perf_counter() < deadline:
        time.sleep(0.005)
    assert not model.lock.locked


def test_litellm_sync_streaming_works_directly(model: LoadedModel) -> None:
    from cllm import _provider

    chunks = list(
        _provider.litellm().completion(
            model=DEFAULT_MODEL,
            messages=[{"role": "user", "content": QUESTION}],
            temperature=0,
            max_tokens=20,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert not model.lock.locked


def test_non_streaming_calls_give_the_same_reply(model: LoadedModel) -> None:
    streamed = cllm.complete(DEFAULT_MODEL, QUESTION, temperature=0, max_tokens=20)
    whole = cllm.complete(DEFAULT_MODEL, QUESTION, temperature=0, max_tokens=20, stream=False)
    assert whole.text == streamed.text
    assert whole.finish_reason is FinishReason.STOP
    assert whole.usage == streamed.usage


# -- tools ----------------------------------------------------------------------------------------


async def test_a_required_tool_call_streams_its_arguments(model: LoadedModel) -> None:
    events, response = await collect(
        prompt="What is the weather in Paris?", tools=[WEATHER], tool_choice="required", max_tokens=60
    )
    kinds = [type(e) for e in events]
    assert kinds.count(ToolCallStart) == 1 and kinds.count(ToolCallEnd) == 1
    assert kinds.index(ToolCallStart) < kinds.index(ToolCallDelta) < kinds.index(ToolCallEnd)
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(deltas) >= 4  # the arguments arrive token by token
    end = next(e for e in events if isinstance(e, ToolCallEnd))
    assert end.name == "get_weather" and end.error is None
    assert end.arguments_json == "".join(d.arguments_delta for d in deltas)
    assert set(end.arguments) == {"city", "unit"}
    assert isinstance(end.arguments["city"], str) and end.arguments["unit"] in ("celsius", "fahrenheit")
    assert response.finish_reason is FinishReason.TOOL_CALLS
    assert response.tool_calls[0].arguments == end.arguments
    assert response.usage is not None and response.usage.completion_tokens


async def test_a_named_tool_choice_calls_that_tool(model: LoadedModel) -> None:
    _, response = await collect(
        prompt="What time is it in Tokyo?",
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=40,
    )
    [call] = response.tool_calls
    assert call.name == "get_time"
    assert isinstance(call.arguments, dict) and isinstance(call.arguments["timezone"], str)


def _weather_history(city: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, (known, weather) in enumerate([("London", "rainy"), ("Berlin", "sunny")]):
        arguments = json.dumps({"city": known, "unit": "celsius"})
        messages += [
            {"role": "user", "content": f"What is the weather in {known}?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"c{i}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"c{i}", "content": weather},
            {"role": "assistant", "content": f"It is {weather} in {known}."},
        ]
    return [*messages, {"role": "user", "content": f"What is the weather in {city}?"}]


async def test_auto_tool_choice_calls_when_the_reply_opens_as_a_call(model: LoadedModel) -> None:
    _, called = await collect(prompt=_weather_history("Paris"), tools=[WEATHER], max_tokens=40)
    assert called.finish_reason is FinishReason.TOOL_CALLS
    assert called.tool_calls[0].arguments["city"] == "Paris"
    _, text = await collect(prompt=QUESTION, tools=[WEATHER], tool_choice="auto", max_tokens=20)
    assert text.tool_calls == [] and "Paris" in text.text
    assert text.finish_reason is FinishReason.STOP


async def test_tool_calls_work_without_streaming_too(model: LoadedModel) -> None:
    response = await cllm.acomplete(
        DEFAULT_MODEL,
        "What is the weather in Paris?",
        stream=False,
        temperature=0,
        tools=[WEATHER],
        tool_choice="required",
    )
    assert response.finish_reason is FinishReason.TOOL_CALLS
    assert set(response.tool_calls[0].arguments) == {"city", "unit"}


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("does-not-exist.gguf", "model file not found"),
        ("random-bytes.gguf", "not a valid GGUF model file"),
        ("llama-99", "unknown local model 'llama-99'"),
    ],
)
async def test_a_bad_model_gets_a_clear_error(
    model: LoadedModel, tmp_path: Any, name: str, words: str
) -> None:
    (tmp_path / "random-bytes.gguf").write_bytes(os.urandom(64 * 1024))
    target = f"local/{tmp_path / name}" if name.endswith(".gguf") else f"local/{name}"
    with pytest.raises(ProviderError, match=words) as info:
        async with cllm.astream(target, QUESTION) as s:
            async for _ in s:
                pass
    if name.endswith(".gguf"):
        assert str(tmp_path / name) in info.value.message
    with pytest.raises(ProviderError, match=words):
        cllm.complete(target, QUESTION, stream=False)


async def test_a_prompt_longer_than_the_context_window_gets_a_clear_error(model: LoadedModel) -> None:
    started = time.perf_counter()
    with pytest.raises(
        ProviderError, match=r"the prompt is \d+ tokens.*context window is 8192 tokens"
    ) as info:
        await collect(prompt="word " * 9000, max_tokens=5)
    assert "`cllm file PATH" in info.value.message
    assert time.perf_counter() - started < 5
    assert not model.lock.locked
    _, response = await collect(max_tokens=2)  # and the model still works
    assert response.text


async def test_a_relative_gguf_path_loads_the_same_file(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(model.path.parent)
    response = await cllm.astream(
        f"local/./{model.path.name}", QUESTION, temperature=0, max_tokens=20
    ).until_done()
    assert "Paris" in response.text
    assert load(f"./{model.path.name}") is model  # loaded once per file, whatever the spelling


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


class TemplatedModel(LoadedModel):
    """The same weights (and queue), as a GGUF carrying a chat template would be."""

    @property
    def chat_template(self) -> str | None:
        return GEMMA_TEMPLATE


def test_a_gguf_with_a_chat_template_is_prompted_through_it(model: LoadedModel) -> None:
    from cllm.local._generate import Generation, collect

    templated = TemplatedModel(model.name, model.path, model.llm, model.lock)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
    generation = Generation(templated, messages, {"temperature": 0, "max_tokens": 5})
    llm = model.llm
    start_of_turn = llm.tokenize(b"<start_of_turn>", add_bos=False, special=True)
    assert len(start_of_turn) == 1  # one control token, not its spelling
    tokens = generation.prompt_tokens
    assert tokens.count(llm.token_bos()) == 1 and tokens[0] == llm.token_bos()
    assert tokens.count(start_of_turn[0]) == 3  # system (rendered as a user turn here), user, model
    text = llm.detokenize(tokens, special=True).decode()
    assert text.endswith(f"<start_of_turn>user\n{QUESTION}<end_of_turn>\n<start_of_turn>model\n")
    reply = collect(generation.chunks())
    assert reply.finish_reason in ("stop", "length") and reply.usage["prompt_tokens"] == len(tokens)


def test_a_tool_schema_the_grammar_cannot_express_still_gets_a_json_object(model: LoadedModel) -> None:
    from cllm.local._generate import Generation, collect

    # llama.cpp's schema converter rejects patterns without ^...$: the call falls back to "any object".
    odd = {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"code": {"type": "string", "pattern": "[A-Z]+"}}},
    }
    earlier = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"code": "XYZ"}'}}
    messages = [
        {"role": "user", "content": "Look up the code XYZ."},
        {"role": "assistant", "content": None, "tool_calls": [earlier]},
        {"role": "tool", "tool_call_id": "c1", "content": "found"},
        {"role": "user", "content": "Look up the code ABC."},
    ]
    options = {"tools": [{"type": "function", "function": odd}], "tool_choice": "required", "temperature": 0}
    generation = Generation(model, messages, {**options, "max_tokens": 40})
    assert "object ::=" in generation._grammar._grammar  # the generic JSON object rule
    reply = collect(generation.chunks())
    assert reply.tool_name == "lookup"
    assert reply.finish_reason == "tool_calls"
    assert json.loads(reply.arguments) == {"code": "ABC"}


def test_auto_tool_choice_predicts_the_reply_the_model_would_give(model: LoadedModel) -> None:
    from cllm.local._generate import Generation

    # Whether a reply is a call is decided by peeking at its first tokens; with the same seed and
    # sampler settings the peek must see exactly what the unconstrained reply then generates.
    settings = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "presence_penalty": 0.5}
    seen: set[bool] = set()
    assert model.lock.acquire()
    try:
        for seed in range(16):
            generation = Generation(
                model,
                _weather_history("Paris")[4:],
                {"tools": [WEATHER], **settings, "seed": seed, "max_tokens": 6},
            )
            opens_call = generation._opens_call()
            reply = "".join(text for text, _ in generation._complete(None, []))
            assert opens_call == reply.lstrip().startswith("{"), f"seed {seed}: {reply!r}"
            seen.add(opens_call)
    finally:
        model.lock.release()
    assert seen == {True, False}  # both outcomes occur, so the check means something


# -- progress before the first token ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)  # two reads of a long prompt on a CPU that may be shared
def test_reading_a_long_prompt_reports_its_progress_and_answers_as_before(model: LoadedModel) -> None:
    from cllm import local

    seen: list[tuple[str, int, int]] = []
    remove = local.add_progress_listener(lambda what, done, total: seen.append((what, done, total)))
    prompt = "Here is a list of fruit: " + ", ".join(["apple", "pear", "plum", "fig"] * 80) + ". Name one."
    try:
        watched = cllm.complete(DEFAULT_MODEL, prompt, temperature=0, max_tokens=8)
    finally:
        remove()
    reading = [(done, total) for what, done, total in seen if what == "reading the prompt"]
    total = reading[-1][1]
    assert watched.usage is not None and total == watched.usage.prompt_tokens > 512
    assert len(reading) >= 3  # batch by batch, not once at the end
    assert [done for done, _ in reading] == sorted(done for done, _ in reading)
    assert reading[-1] == (total, total)
    # The same tokens llama.cpp gives when it reads the prompt itself, in one call.
    from cllm.local._generate import Generation

    generation = Generation(model, [{"role": "user", "content": prompt}], {"temperature": 0, "max_tokens": 8})
    model.llm.reset()
    direct = model.llm.create_completion(generation.prompt_tokens, max_tokens=8, temperature=0)
    assert direct["choices"][0]["text"].strip() == watched.text.strip()
    # Nothing is reported once no one listens.
    count = len(seen)
    cllm.complete(DEFAULT_MODEL, "Hi", temperature=0, max_tokens=1)
    assert len(seen) == count


async def test_a_prompt_that_leaves_no_room_for_the_answer_is_refused_with_advice(model: LoadedModel) -> None:
    from cllm.local import SECTIONS_ADVICE

    # Fits the window, but only a few tokens would be left for the reply.
    fits = len(model.llm.tokenize(("word " * 7990).encode()))
    assert 7900 < fits < 8192
    with pytest.raises(ProviderError) as info:
        await collect(prompt="word " * 7990, max_tokens=512)
    message = info.value.message
    assert "kept for the reply" in message and "bigger window" in message and SECTIONS_ADVICE in message
    # A short reply still fits: the request is accepted (not run: reading 8,000 tokens takes a minute).
    from cllm.local._generate import Generation

    accepted = Generation(model, [{"role": "user", "content": "word " * 7990}], {"max_tokens": 5})
    assert len(accepted.prompt_tokens) + 5 <= model.context_tokens
