"""The seam between text shown and its continuation: nothing repeated, nothing lost."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from cllm.core.splice import PrefixSplicer

words = st.lists(st.sampled_from(["a", "b", " ", "\n", "word", "é", "  "]), min_size=0, max_size=30).map(
    "".join
)


def splice(prefix: str, pieces: list[str]) -> str:
    splicer = PrefixSplicer(prefix)
    return "".join(splicer.feed(p) for p in pieces) + splicer.flush()


def cuts(text: str, data: st.DataObject) -> list[str]:
    points = sorted(set(data.draw(st.lists(st.integers(0, len(text)), max_size=6))))
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@given(words, words, st.data())
def test_a_plain_continuation_passes_through(prefix: str, rest: str, data: st.DataObject) -> None:
    seam = prefix[len(prefix.rstrip()) :] if prefix.strip() else ""
    if (rest and prefix and rest.startswith(prefix)) or (seam and rest[:1].isspace()):
        return  # indistinguishable from an echo or a repeated seam
    assert splice(prefix, cuts(rest, data)) == rest


@given(words, words, st.data())
def test_an_echoed_prefix_is_dropped(prefix: str, rest: str, data: st.DataObject) -> None:
    seam = prefix[len(prefix.rstrip()) :] if prefix.strip() else ""
    if seam and rest[:1].isspace():
        return
    assert splice(prefix, cuts(prefix + rest, data)) == rest


@given(
    st.text(min_size=1).filter(lambda t: t.strip() and not t[-1].isspace()),
    st.sampled_from([" ", "\n", "\n\n"]),
    words,
    st.data(),
)
def test_a_repeated_whitespace_seam_is_dropped(word: str, seam: str, rest: str, data: st.DataObject) -> None:
    rest = rest.lstrip()
    prefix = word + seam
    assert splice(prefix, cuts(seam + rest, data)) == rest


def test_examples() -> None:
    assert splice("Hello world ", [" and", " more"]) == "and more"
    assert splice("Hello world ", ["Hello ", "world ", "and more"]) == "and more"
    assert splice("Hello world ", ["Hel", "p me"]) == "Help me"
    assert splice("Hello", [" world"]) == " world"
    assert splice("para\n", ["\n\nnext"]) == "\nnext"
    assert splice("x", []) == ""
    assert splice("", ["a", "b"]) == "ab"
    assert splice("Hello world", ["Hello"]) == "Hello"  # ended while it still looked like an echo
