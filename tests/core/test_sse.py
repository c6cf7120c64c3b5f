"""The sans-I/O SSE decoder: the event-stream line rules, and any split of the bytes gives the same events."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cllm.core.sse import ServerSentEvent, SSEDecoder


def decode(*pieces: bytes) -> tuple[list[ServerSentEvent], bool]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events, decoder.close()


def test_data_lines_comments_names_and_line_ends() -> None:
    body = (
        b": a comment\n"
        b"data: one\n\n"
        b"event: error\r\ndata:two\r\ndata:  three\r\n\r\n"
        b"id: 7\rretry: 10\rdata: four\r\r"
        b"event: named-but-empty\n\n"
        b"data\n\n"
    )
    events, cut = decode(body)
    assert events == [
        ServerSentEvent("one"),
        ServerSentEvent("two\n three", "error"),  # only one space after the colon is dropped
        ServerSentEvent("four"),
        ServerSentEvent(""),  # a "data" line with no colon is an empty data line
    ]
    assert not cut


def test_an_event_without_its_blank_line_is_not_dispatched() -> None:
    events, cut = decode(b'data: {"a": 1}\n\ndata: {"b": 2}\n')
    assert events == [ServerSentEvent('{"a": 1}')]
    assert cut
    assert decode(b"data: x\n\ndata: y")[1]


def test_a_carriage_return_at_the_end_of_a_piece_waits_for_the_next_byte() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # "\r" then "\n" is one line end, not two (which would end the event here).
    assert decoder.feed(b"\ndata: b\r\n\r") == []
    assert decoder.feed(b"\n") == [ServerSentEvent("a\nb")]


def test_utf8_split_inside_a_character() -> None:
    body = "data: héllo wörld ✓\n\n".encode()
    cut = body.index("✓".encode()) + 1
    assert decode(body[:cut], body[cut:])[0] == [ServerSentEvent("héllo wörld ✓")]


LINE_END = st.sampled_from([b"\n", b"\r\n", b"\r"])
TEXT = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["data", "event", "comment", "id"]))
            value = draw(TEXT).encode()
            line = b":" + value if kind == "comment" else kind.encode() + b": " + value
            out += line + draw(LINE_END)
        out += draw(LINE_END)
    return out


@given(body=streams(), data=st.data())
def test_any_split_of_the_bytes_gives_the_same_events(body: bytes, data: st.DataObject) -> None:
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(body)), max_size=20))))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert decode(*pieces) == decode(body)
    # Byte by byte too.
    assert decode(*(body[i : i + 1] for i in range(len(body)))) == decode(body)
