from __future__ import annotations

import copy
import itertools
import json
import math
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cllm.core.partial_json import PartialJsonError, PartialJsonParser, parse_partial_json


def feed_all(pieces: list[str]) -> PartialJsonParser:
    parser = PartialJsonParser()
    for piece in pieces:
        parser.feed(piece)
    return parser


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 vs 1.0, -0.0 vs 0.0, key order)."""
    return bool(a == b) and repr(a) == repr(b)


# -- the value so far ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": "hel', {"a": "hel"}),
        ('[1, 2, {"b": [', [1, 2, {"b": []}]),
        ('{"a": 1, "b', {"a": 1}),
        ('{"a": 1, "b"', {"a": 1}),
        ('{"a": 1, "b":', {"a": 1}),
        ('{"a": 1, "b": ', {"a": 1}),
        ('{"a": 1, "b": "', {"a": 1, "b": ""}),
        ('{"a": tr', {}),
        ('{"a": true', {"a": True}),
        ("[null, fals", [None]),
        ("{", {}),
        ("[", []),
        ("{}", {}),
        ("[]", []),
        ("[[], {}, [{}]]", [[], {}, [{}]]),
        ('{"a": {"b": {"c": [1, [2, [3', {"a": {"b": {"c": [1, [2, [3]]]}}}),
        ('"abc', "abc"),
        ('"', ""),
        ("", None),
        ("   \n\t ", None),
        ('  \n {"a" :\t[ 1 ,2 ] , "b" : null }  \n', {"a": [1, 2], "b": None}),
        ('{"a": 1, "a": "x', {"a": "x"}),
        ('{"a": 1, "b": 2, "a": 3}', {"a": 3, "b": 2}),
        ('{"k\\u00e9y": 1, "\\"q\\"": 2}', {"kéy": 1, '"q"': 2}),
        ("[Infinity, -Infinity, -Inf", [math.inf, -math.inf]),
    ],
)
def test_value_of_prefix(text: str, expected: Any) -> None:
    assert same(parse_partial_json(text), expected)


def test_nan_and_infinities_are_accepted_like_json_loads() -> None:
    value = parse_partial_json("[NaN, Infinity, -Infinity]")
    assert math.isnan(value[0]) and value[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("12", 12),
        ("-", None),
        ("-0", 0),
        ("-12", -12),
        ("1.", 1),
        ("1.5", 1.5),
        ("1e", 1),
        ("1e-", 1),
        ("1.5E+", 1.5),
        ("1e5", 100000.0),
        ("-1.25e+2", -125.0),
        ("-0.0", -0.0),
        ("[1.", [1]),
        ("[-", []),
        ('{"a": -', {}),
        ('{"a": -3', {"a": -3}),
        ("[1, 2.0, 3e0, 12345678901234567890]", [1, 2.0, 3.0, 12345678901234567890]),
    ],
)
def test_numbers_show_their_longest_complete_prefix(text: str, expected: Any) -> None:
    assert same(parse_partial_json(text), expected)


def test_number_grows_across_feeds_and_changes_type() -> None:
    parser = PartialJsonParser()
    seen = [copy.deepcopy(parser.feed(piece)) for piece in ["[", "-", "1", "2", ".", "5", "e", "1", "]"]]
    assert [repr(v) for v in seen] == [
        "[]",
        "[]",
        "[-1]",
        "[-12]",
        "[-12]",
        "[-12.5]",
        "[-12.5]",
        "[-125.0]",
        "[-125.0]",
    ]


def test_top_level_number_is_done_only_once_something_follows() -> None:
    parser = PartialJsonParser()
    assert parser.feed("12") == 12
    assert not parser.done
    assert parser.feed("3") == 123
    assert parser.feed(" \n") == 123
    assert parser.done


@pytest.mark.parametrize("text", ['{"a": [1, "x"]}', "[]", '"s"', "true", "null", "-Infinity"])
def test_done_once_top_level_value_closes_and_trailing_whitespace_is_ignored(text: str) -> None:
    parser = PartialJsonParser()
    parser.feed(text[:-1])
    assert not parser.done
    parser.feed(text[-1])
    assert parser.done
    assert same(parser.feed("  \n\t"), json.loads(text))


def test_nothing_fed_is_none() -> None:
    parser = PartialJsonParser()
    assert parser.value is None
    assert parser.feed("") is None
    assert parser.feed("  ") is None
    assert not parser.done


def test_value_is_the_live_object() -> None:
    parser = PartialJsonParser()
    first = parser.feed('{"a": [')
    snapshot = copy.deepcopy(first)
    assert parser.feed('1, "x') is first
    assert parser.value is first
    assert first == {"a": [1, "x"]}
    assert snapshot == {"a": []}


def test_long_string_fed_in_tiny_pieces() -> None:
    content = 'line "one"\\ \u00e9\u4e2d\U0001f600\n\t' * 500
    text = json.dumps({"file_text": content, "n": 1})
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    parser = PartialJsonParser()
    for piece in pieces:
        value = parser.feed(piece)
        assert content.startswith(value.get("file_text", ""))
    assert same(parser.value, {"file_text": content, "n": 1})


# -- escapes ------------------------------------------------------------------------------------------------

ESCAPED_STRINGS = [
    r'"a\nb"',
    r'"\"\\\/\b\f\n\r\t"',
    r'"caf\u00e9"',
    r'"\u00E9\u4E2d"',
    r'"\ud83d\ude00"',
    r'"x\uD83D\uDE00y"',
    r'"\ud83d"',
    r'"\ud83dx"',
    r'"\ud83d\u0041"',
    r'"\ud83d\n"',
    r'"\ud83d\ud83d\ude00"',
    r'"\ud83d\ud83d"',
    r'"\udc00"',
    r'"\ude00\ud83d"',
    r'{"\ud83d\ude00k\n": "\ud83d"}',
]


@pytest.mark.parametrize("text", ESCAPED_STRINGS)
def test_escape_split_anywhere_never_shows_half_an_escape(text: str) -> None:
    expected = json.loads(text)
    final_string = expected if isinstance(expected, str) else next(iter(expected.values()))
    for cuts in [[k] for k in range(1, len(text))] + [list(range(1, len(text)))]:
        bounds = [0, *cuts, len(text)]
        parser = PartialJsonParser()
        for start, end in itertools.pairwise(bounds):
            value = parser.feed(text[start:end])
            shown = value if isinstance(value, str) else next(iter(value.values()), "")
            # A prefix of the final string: no backslash, no stray half of a surrogate pair.
            assert final_string.startswith(shown), (cuts, shown)
        assert same(parser.value, expected)


def test_surrogate_pair_waits_for_its_low_half() -> None:
    parser = PartialJsonParser()
    assert parser.feed('"a\\ud83d') == "a"
    assert parser.feed("\\ude") == "a"
    assert parser.feed('00b"') == "a\U0001f600b"


# -- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pos"),
    [
        ('{"a" x', 5),
        ("[1,]", 3),
        ('{"a": 1,}', 8),
        ("[1}", 2),
        ('{"a": 1]', 7),
        ("01", 0),
        ("[1.e5]", 1),
        ("--1", 0),
        ('"\\x"', 2),
        ('"\\u12g4"', 5),
        ('"\\ud83d\\u12"', 11),
        ('"a\nb"', 2),
        ("tx", 1),
        ("nulL", 3),
        ('{"a": 1}}', 8),
        ("1 2", 2),
        ("{1: 2}", 1),
        ("[,]", 1),
        ("}", 0),
        ("'a'", 0),
    ],
)
def test_text_that_can_never_be_valid_raises_with_its_position(text: str, pos: int) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(PartialJsonError) as one_shot:
        parse_partial_json(text)
    assert one_shot.value.pos == pos
    with pytest.raises(PartialJsonError) as char_by_char:
        feed_all(list(text))
    assert char_by_char.value.pos == pos


def test_parser_stays_failed_after_an_error() -> None:
    parser = PartialJsonParser()
    parser.feed('{"a": [1, "x"')
    with pytest.raises(PartialJsonError) as first:
        parser.feed(' "y"]}')
    assert isinstance(first.value, ValueError)
    assert parser.error is first.value
    assert parser.value == {"a": [1, "x"]}
    with pytest.raises(PartialJsonError) as again:
        parser.feed("]}")
    assert (again.value.msg, again.value.pos) == (first.value.msg, first.value.pos)
    assert parser.value == {"a": [1, "x"]}


def test_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(PartialJsonError("Expecting value", 7)))
    assert (error.msg, error.pos, str(error)) == ("Expecting value", 7, "Expecting value at position 7")


def test_integer_too_long_for_int_raises_like_json_loads() -> None:
    text = "1" * 5000
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(PartialJsonError):
        parse_partial_json(text + " ")


# -- properties ---------------------------------------------------------------------------------------------

_TRICKY = st.text(
    alphabet=st.sampled_from(list('ab "\\/\b\f\n\r\t\x00\x1f\x7fé中\U0001f600\ud83d\ude00\udc00'))
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | _TRICKY
)
# Keys without surrogates: escaped halves of a pair would merge into one key and make duplicates.
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=15,
)
DUMPS_OPTIONS: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [
        {},
        {"ensure_ascii": False},
        {"indent": 2},
        {"indent": 1, "ensure_ascii": False},
        {"separators": (",", ":")},
        {"separators": (",", ":"), "ensure_ascii": False},
    ]
)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    text = json.dumps(draw(JSON_VALUES), **draw(DUMPS_OPTIONS))
    return draw(st.sampled_from(["", " ", "\n  "])) + text + draw(st.sampled_from(["", " ", "\n"]))


def assert_consistent(partial: Any, final: Any) -> None:
    """`partial` is what a prefix of the text of `final` may show: closed parts equal, the last partial."""
    if isinstance(final, dict):
        assert isinstance(partial, dict)
        keys = list(partial)
        assert keys == list(final)[: len(keys)]
        for key in keys[:-1]:
            assert same(partial[key], final[key])
        if keys:
            assert_consistent(partial[keys[-1]], final[keys[-1]])
    elif isinstance(final, list):
        assert isinstance(partial, list)
        assert len(partial) <= len(final)
        for a, b in zip(partial[:-1], final, strict=False):
            assert same(a, b)
        if partial:
            assert_consistent(partial[-1], final[len(partial) - 1])
    elif isinstance(final, str):
        assert isinstance(partial, str)
        assert final.startswith(partial)
    elif isinstance(final, bool) or final is None:
        assert partial is final
    elif isinstance(final, int):
        assert type(partial) is int
        assert str(final).startswith(str(partial))
    else:
        assert type(partial) in (int, float)


@PROPERTY_SETTINGS
@given(json_texts())
def test_every_prefix_parses_to_a_consistent_value(text: str) -> None:
    final = json.loads(text)
    for end in range(len(text) + 1):
        parser = PartialJsonParser()
        value = parser.feed(text[:end])
        if value is not None or final is None:
            assert_consistent(value, final)
        if parser.done:
            assert same(json.loads(text[:end]), final)
    assert same(parse_partial_json(text), final)


@PROPERTY_SETTINGS
@given(json_texts(), st.data())
def test_any_split_gives_the_same_values_as_parsing_each_prefix(text: str, data: st.DataObject) -> None:
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(text)), max_size=40))))
    bounds = [0, *cuts, len(text)]
    parser = PartialJsonParser()
    for start, end in itertools.pairwise(bounds):
        value = parser.feed(text[start:end])
        assert same(value, parse_partial_json(text[:end]))
    assert same(parser.value, json.loads(text))
    assert same(feed_all(list(text)).value, json.loads(text))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('{}[]",: \n0123456789.eE+-truefalsnNIiy\\u')), max_size=20))
def test_agrees_with_json_loads_on_arbitrary_text(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        expected = PartialJsonError
    parser = PartialJsonParser()
    try:
        value = parser.feed(text)
    except PartialJsonError as error:
        assert expected is PartialJsonError, "rejected text that json.loads accepts"
        with pytest.raises(PartialJsonError) as split_error:
            feed_all(list(text))
        assert split_error.value.pos == error.pos
        return
    if expected is not PartialJsonError:
        assert json.dumps(value) == json.dumps(expected)  # also compares NaN and int/float
    if parser.done:
        assert expected is not PartialJsonError


def test_nesting_deeper_than_the_limit_is_an_error() -> None:
    from cllm.core.partial_json import MAX_DEPTH, PartialJsonError

    parser = PartialJsonParser()
    assert parser.feed("[" * MAX_DEPTH) is not None
    with pytest.raises(PartialJsonError, match="nested deeper than"):
        parser.feed("[")
    assert PartialJsonParser(max_depth=2).feed('{"a": [1]}') == {"a": [1]}
    with pytest.raises(PartialJsonError):
        PartialJsonParser(max_depth=2).feed('{"a": [{')
