"""A sans-I/O decoder for server-sent events: bytes in, events out.

Fed the body as it arrives, in pieces split anywhere (inside a line, inside a UTF-8 sequence,
between CR and LF), it returns each event once its blank line has arrived, following the line
rules of the HTML standard's event-stream format as the openai SDK and httpx-sse read them: LF,
CRLF and CR all end a line, lines starting with ``:`` are comments, ``data`` lines are joined with
LF, and one space after the colon is dropped. Events with no ``data`` line are not dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its ``data`` (lines joined) and ``event`` name, if it had one."""

    data: str
    event: str | None = None


class SSEDecoder:
    """Turns the bytes of an event stream into `ServerSentEvent`s as they complete."""

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._pending = b""  # an unfinished line (possibly ending in a ``\r`` awaiting its ``\n``)
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """The events completed by ``data``."""
        buf = self._pending + data if self._pending else data
        if b"\r" in buf:
            # A trailing "\r" may be the first half of "\r\n": held until the next byte decides.
            held = buf.endswith(b"\r")
            if held:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buf += b"\r"
        lines = buf.split(b"\n")
        self._pending = lines.pop()
        out: list[ServerSentEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    out.append(ServerSentEvent("\n".join(self._data), self._event))
                    self._data = []
                self._event = None
            elif line[0] != 0x3A:  # ":" starts a comment
                self._field(line)
        return out

    def close(self) -> bool:
        """The body has ended. True when it ended inside an event, whose data is then dropped:
        the format dispatches an event only at its blank line."""
        cut = bool(self._data or self._pending.strip(b"\r"))
        self._pending, self._data, self._event = b"", [], None
        return cut

    def _field(self, line: bytes) -> None:
        if not line:
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
