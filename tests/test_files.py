"""`cllm.sections` with a model's tokenizer, and `cllm.aprocess_file` against a scripted provider."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from support.replay_server import RecordedRequest, ReplayServer, ScriptedResponse
from support.scripted_provider import MODEL, prompt_of, text_stream

import cllm


def opts(server: ReplayServer, **extra: Any) -> dict[str, Any]:
    return {"api_base": server.url + "/v1", "api_key": "sk-test", **extra}


def big_text(size: int = 200_000) -> str:
    paragraphs, n = [], 0
    while sum(map(len, paragraphs)) < size:
        sentences = [f"Sentence {n}.{k} tells of item {n * 7 + k} and what became of it." for k in range(6)]
        paragraphs.append(" ".join(sentences))
        n += 1
    return "\n\n".join(paragraphs) + "\n"


def section_responder(request: RecordedRequest) -> ScriptedResponse:
    prompt = prompt_of(request)
    found = re.search(r"section (\d+) of (\d+)", prompt)
    label = found.group(1) if found else "combined"
    return text_stream([f"answer {label}", " ", "done"], delay=0.05)


def test_sections_count_in_the_models_tokens() -> None:
    from cllm import _provider

    text = big_text(40_000)
    parts = cllm.sections(text, max_tokens=1000, overlap=50, model=MODEL)
    count = _provider.text_counter(MODEL)
    assert count is not None
    assert all(count(p.text) <= 1000 for p in parts)
    assert max(count(p.text) for p in parts) > 900  # the budget is used, not wasted
    assert "".join(p.own_text for p in parts) == text
    assert all(p.own_text.endswith("\n\n") for p in parts[:-1])


async def test_a_200_kb_file_in_sections_in_order_the_first_live(
    replay_server: ReplayServer, tmp_path: Path
) -> None:
    replay_server.add(section_responder, repeat=True)
    path = tmp_path / "big.txt"
    text = big_text()
    path.write_text(text, encoding="utf-8")
    first_text_at: float | None = None
    parts: list[cllm.FilePart] = []
    async for part in cllm.aprocess_file(
        path,
        "Summarize this section",
        model=MODEL,
        concurrency=4,
        combine="Combine these",
        **opts(replay_server),
    ):
        if first_text_at is None and isinstance(part.event, cllm.TextDelta):
            first_text_at = time.monotonic()
        parts.append(part)
    closing = [p for p in parts if p.event is None]
    total = closing[0].total
    assert total > 10
    assert [p.index for p in closing] == [*range(total), total]
    assert closing[-1].combined and closing[-1].response is not None
    assert closing[-1].response.text == "answer combined done"
    # In order: every event of a section comes before the next section's.
    indexes = [p.index for p in parts]
    assert indexes == sorted(indexes)
    for p in closing[:-1]:
        assert p.response is not None and p.response.text == f"answer {p.index + 1} done"
        assert p.error is None
    sections = [p.section for p in closing[:-1]]
    assert all(s is not None for s in sections)
    assert "".join(s.own_text for s in sections if s) == text
    assert all(s.own_text.endswith("\n\n") for s in sections[:-1] if s)
    # The first section's text arrived before the last section was even sent.
    last_request = max(
        ex.request.received_at
        for ex in replay_server.exchanges
        if f"section {total} of" in prompt_of(ex.request)
    )
    assert first_text_at is not None and first_text_at < last_request
    combined_prompt = prompt_of(replay_server.exchanges[-1].request)
    assert combined_prompt.startswith("Combine these") and f"## Section {total}/{total}" in combined_prompt


async def test_a_failed_section_is_reported_in_its_turn(replay_server: ReplayServer, tmp_path: Path) -> None:
    from support.replay_server import error_response

    def respond(request: RecordedRequest) -> ScriptedResponse:
        if "section 2 of" in prompt_of(request):
            return error_response(500, "boom", code=None)
        return section_responder(request)

    replay_server.add(respond, repeat=True)
    path = tmp_path / "t.txt"
    path.write_text(big_text(30_000), encoding="utf-8")
    closing = [
        p
        async for p in cllm.aprocess_file(path, "Do", model=MODEL, section_tokens=2000, **opts(replay_server))
        if p.event is None
    ]
    assert [p.index for p in closing] == list(range(len(closing)))
    assert isinstance(closing[1].error, cllm.ProviderError)
    assert closing[0].error is None and closing[2].error is None


async def test_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bin"
    path.write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(ValueError, match="not UTF-8"):
        async for _ in cllm.aprocess_file(path, "x", model=MODEL):
            pass
