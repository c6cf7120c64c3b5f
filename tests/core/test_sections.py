"""`split_sections`: every section within budget, the source rebuilt exactly, no word split."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cllm.core.sections import chars_over_four, split_sections

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé,;'0123456789", min_size=1, max_size=12)
SEP = st.sampled_from([" ", " ", " ", "  ", ". ", "! ", "\n", "\n\n", "\n \n\n", "\t", ".\n"])


@st.composite
def texts(draw: st.DrawFn) -> str:
    words = draw(st.lists(WORD, min_size=0, max_size=300))
    out = [draw(st.sampled_from(["", " ", "\n"]))]
    for word in words:
        out += [word, draw(SEP)]
    return "".join(out)


def word_counter(text: str) -> int:
    # A tokenizer-like count that is not additive: words, plus one for each run of punctuation.
    return len(re.findall(r"\w+|[^\w\s]+", text))


def is_boundary(text: str, at: int) -> bool:
    return at == 0 or at == len(text) or text[at - 1].isspace()


@settings(max_examples=300, deadline=None)
# Budgets from 24 up: what is left after the overlap holds any generated word (12 characters at most,
# every other one punctuation), so no word has to be cut.
@given(texts(), st.integers(24, 150), st.integers(0, 3), st.sampled_from([chars_over_four, word_counter]))
def test_sections_rebuild_the_text_fit_the_budget_and_never_split_a_word(
    text: str, budget: int, overlap_share: int, count: object
) -> None:
    overlap = budget * overlap_share // 8
    sections = split_sections(text, budget, overlap, count)  # type: ignore[arg-type]
    assert "".join(s.own_text for s in sections) == text
    for section in sections:
        assert count(section.text) <= budget  # type: ignore[operator]
        assert section.tokens == count(section.text)  # type: ignore[operator]
        assert is_boundary(text, section.start) and is_boundary(text, section.end)
        assert is_boundary(text, section.start - section.overlap)
        assert text[section.start - section.overlap : section.end] == section.text
    if sections:
        assert sections[0].overlap == 0
        assert [s.index for s in sections] == list(range(len(sections)))


def test_boundaries_prefer_paragraphs() -> None:
    paragraphs = [" ".join(f"w{i}x{j}" for j in range(30)) for i in range(40)]
    text = "\n\n".join(paragraphs)
    sections = split_sections(text, 200, 0, word_counter)
    assert len(sections) > 5
    for section in sections[:-1]:
        assert text[section.end - 2 : section.end] == "\n\n"


def test_a_long_paragraph_is_cut_at_lines_then_sentences() -> None:
    lines = "\n".join("First part. Second part here. " * 3 for _ in range(10))
    sections = split_sections(lines, 20, 0, word_counter)
    assert all(s.text.endswith(("\n", ". ")) for s in sections[:-1])
    sentences = "One two three four. " * 30
    cut = split_sections(sentences, 9, 0, word_counter)
    assert all(s.text.endswith(". ") for s in cut[:-1])


def test_overlap_repeats_the_end_of_the_previous_section() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    sections = split_sections(text, 50, 10, word_counter)
    for before, after in itertools.pairwise(sections):
        lead = after.text[: after.overlap]
        assert lead and before.own_text.endswith(lead)
        assert word_counter(lead) <= 10


def test_a_word_bigger_than_the_budget_is_the_only_thing_cut() -> None:
    text = "short words then " + "x" * 500 + " and more"
    sections = split_sections(text, 20, 0, chars_over_four)
    assert "".join(s.text for s in sections) == text
    assert all(chars_over_four(s.text) <= 20 for s in sections)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        split_sections("x", 0)
    with pytest.raises(ValueError, match="overlap"):
        split_sections("x", 10, 5)
    assert split_sections("", 10) == []
