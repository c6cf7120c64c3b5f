"""The local model goes on from any assistant prefix, so a stream cut elsewhere can continue on it."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed: pip install 'cllm[local]'")

from support.faults import text_stream
from support.replay_server import ReplayServer

import cllm
from cllm.local import DEFAULT_MODEL

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]


def greedy(messages: list[dict[str, Any]]) -> str:
    return cllm.complete(DEFAULT_MODEL, messages, temperature=0, max_tokens=16).text


def test_a_prefix_is_continued_not_repeated() -> None:
    whole = greedy(QUESTION)
    cut = [i for i, c in enumerate(whole) if c == " "][2]  # before a space: the same tokens either way
    rest = greedy([*QUESTION, {"role": "assistant", "content": whole[:cut], "prefix": True}])
    assert rest.startswith(" ")  # the space is the answer's own
    common = min(len(rest), len(whole) - cut)
    assert rest[:common] == whole[cut : cut + common]


def test_a_cut_stream_continues_on_the_local_model(replay_server: ReplayServer) -> None:
    words = ["The ", "sea ", "is ", "wide ", "and ", "deep ", "and ", "blue."]
    replay_server.add(text_stream(words, cut_after=4))
    with cllm.stream(
        "openai/gpt-4o",
        QUESTION,
        api_base=replay_server.url + "/v1",
        api_key="sk-test",
        fallbacks=[{"model": DEFAULT_MODEL, "temperature": 0, "max_tokens": 12}],
    ) as s:
        events = list(s)
    [attempt] = [e for e in events if isinstance(e, cllm.Attempt)]
    assert (attempt.model, attempt.discard) == (DEFAULT_MODEL, False)
    shown = "".join(e.text for e in events[: events.index(attempt)] if isinstance(e, cllm.TextDelta))
    r = s.response
    assert r.text.startswith(shown) and len(r.text) > len(shown)
    assert r.model is not None and "gemma" in r.model
    assert [a.mode for a in r.attempts] == [None, "continue"]
    assert r.finish_reason in (cllm.FinishReason.STOP, cllm.FinishReason.LENGTH)
