"""Incremental parser for JSON text that arrives in small fragments.

Tool-call arguments stream in as fragments of a few characters. `PartialJsonParser` keeps its place between
fragments (a stack of open containers plus the token in progress), so the cost of each `feed` depends only on
the size of that fragment, never on how much text came before it.

What "the value so far" means:

- Open strings, arrays and objects are taken as they stand: ``{"a": "hel`` gives ``{"a": "hel"}`` and
  ``[1, {"b": [`` gives ``[1, {"b": []}]``.
- An object member appears once its value has started: ``{"a": 1, "b`` and ``{"a": 1, "b":`` both give
  ``{"a": 1}``.
- Literals (``true``, ``false``, ``null``) appear only once complete: ``{"a": tr`` gives ``{}``.
- A number in progress shows the value of its longest complete prefix, so ``12`` gives ``12`` (more digits
  may follow), ``1.`` and ``1e+`` give ``1``, ``1.5e`` gives ``1.5``; a lone ``-`` is left out until a digit
  follows. The type can change as digits arrive (``1`` then ``1.5``).
- An escape sequence split across fragments is held back until it is whole; a ``\\uXXXX`` high surrogate waits
  for the next escape so a surrogate pair always comes out as one character, never as half a pair.
- Nothing fed yet, or only whitespace, gives ``None``. Whitespace around the top-level value is ignored.

The returned value is the parser's live object: later feeds mutate it in place (and it is the same object
every time). Take ``copy.deepcopy`` of it to keep a snapshot. Strings inside containers are extended in place,
which relies on nobody else holding a reference to the string being extended; a caller that does hold one (or
keeps a top-level string value) just costs a copy of that string per feed.

Text that can never become valid JSON makes `feed` raise `PartialJsonError` (a `ValueError`) carrying the
position in the whole text fed so far. The parser then stays failed: every later `feed` raises the same error
again and ignores its input, and `value` keeps what was parsed before the error position.

Arrays and objects nested more than `MAX_DEPTH` levels deep (``max_depth=``) raise `PartialJsonError`.

Acceptance follows `json.loads`: control characters inside strings are rejected, ``NaN``, ``Infinity`` and
``-Infinity`` are accepted, duplicate keys keep the last value, and numbers use ``int``/``float`` semantics.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["MAX_DEPTH", "PartialJsonError", "PartialJsonParser", "parse_partial_json"]

MAX_DEPTH: Final = 256
"""Containers nested deeper than this are an error: no tool schema needs them, and the parsed value
must stay serializable (``json.dumps`` and ``copy.deepcopy`` recurse once per level)."""

# Parser states.
_VALUE: Final = 0  # a value must come next (top level, after ':' or after ',' in an array)
_VALUE_OR_END: Final = 1  # just after '['
_KEY_OR_END: Final = 2  # just after '{'
_KEY: Final = 3  # after ',' in an object
_COLON: Final = 4
_COMMA_OR_END: Final = 5  # after a value inside a container
_STRING: Final = 6  # inside a string value
_KEY_STRING: Final = 7  # inside an object key
_NUMBER: Final = 8
_LITERAL: Final = 9
_DONE: Final = 10  # the top-level value is complete; only whitespace may follow

_WHITESPACE: Final = " \t\n\r"
_WS_RUN: Final = re.compile(r"[ \t\n\r]*")
_NUMBER_RUN: Final = re.compile(r"[-+.eE0-9]*")
_NUMBER_FULL: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NUMBER_PREFIX: Final = re.compile(
    r"-?(?:(?:0|[1-9][0-9]*)(?:\.(?:[0-9]+(?:[eE][-+]?[0-9]*)?)?|[eE][-+]?[0-9]*)?)?"
)
# A run of string content whose escapes are all complete, stopping before '"', a control character, an escape
# cut off by the end of the fragment, or a high surrogate escape not followed by its low half (it may still
# arrive in the next fragment).
_STRING_RUN: Final = re.compile(
    r'(?:[^"\\\x00-\x1f]+'
    r'|\\["\\/bfnrt]'
    r"|\\u(?![dD][89abAB])[0-9a-fA-F]{4}"
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})*"
)
_ONE_ESCAPE: Final = re.compile(
    r'\\(?:["\\/bfnrt]|u(?![dD][89abAB])[0-9a-fA-F]{4}|u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})'
)
_ESCAPE: Final = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[0-9a-fA-F]{4}|\\u[0-9a-fA-F]{4}|\\.")
_HEX_RUN: Final = re.compile(r"[0-9a-fA-F]*")
_SIMPLE_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_LITERALS: Final[dict[str, tuple[str, Any]]] = {
    "t": ("true", True),
    "f": ("false", False),
    "n": ("null", None),
    "N": ("NaN", float("nan")),
    "I": ("Infinity", float("inf")),
}


class PartialJsonError(ValueError):
    """The text fed so far can never become valid JSON.

    Attributes:
        msg: What is wrong.
        pos: Index of the offending character in the whole text fed so far.
    """

    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(f"{msg} at position {pos}")
        self.msg = msg
        self.pos = pos

    def __reduce__(self) -> tuple[type[PartialJsonError], tuple[str, int]]:
        return type(self), (self.msg, self.pos)


def _unescape(match: re.Match[str]) -> str:
    esc = match.group()
    if len(esc) == 2:
        return _SIMPLE_ESCAPES[esc[1]]
    if len(esc) == 6:
        return chr(int(esc[2:], 16))
    high, low = int(esc[2:6], 16), int(esc[8:], 16)
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def _escape_step(esc: str, pos: int) -> tuple[str, str, bool] | None:
    """Decode a pending escape `esc` (starting with a backslash), one character after another.

    Returns None while more characters are needed, else ``(text, rest, push_back)``: the decoded text, a
    following escape still to be decoded (a high surrogate turned out not to be followed by its low half), and
    whether the last character of `esc` is not part of the escape and must be read again as string content.
    """
    n = len(esc)
    if n < 2:
        return None
    if esc[1] != "u":
        text = _SIMPLE_ESCAPES.get(esc[1])
        if text is None:
            raise PartialJsonError("Invalid \\escape", pos)
        return text, "", False
    if _HEX_RUN.fullmatch(esc, 2, min(n, 6)) is None:
        raise PartialJsonError("Invalid \\uXXXX escape", pos)
    if n < 6:
        return None
    code = int(esc[2:6], 16)
    if not 0xD800 <= code <= 0xDBFF:
        return chr(code), "", False
    # A high surrogate pairs with an immediately following \uDC00-\uDFFF, as in json.loads, else stands alone.
    if n == 6:
        return None
    if esc[6] != "\\":
        return chr(code), "", True
    if n == 7:
        return None
    if esc[7] != "u":
        return chr(code), esc[6:], False
    if _HEX_RUN.fullmatch(esc, 8, min(n, 12)) is None:
        raise PartialJsonError("Invalid \\uXXXX escape", pos)
    if n < 12:
        return None
    low = int(esc[8:12], 16)
    if 0xDC00 <= low <= 0xDFFF:
        return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), "", False
    return chr(code), esc[6:], False


def _to_number(text: str) -> Any:
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


class PartialJsonParser:
    """Parses JSON text fed in fragments, keeping the value parsed so far up to date.

    Example:
        >>> parser = PartialJsonParser()
        >>> parser.feed('{"path": "src/ma')
        {'path': 'src/ma'}
        >>> parser.feed('in.py", "n": 1')
        {'path': 'src/main.py', 'n': 1}
        >>> parser.done
        False
    """

    __slots__ = (
        "_error",
        "_esc",
        "_key",
        "_key_parts",
        "_literal",
        "_literal_len",
        "_literal_value",
        "_max_depth",
        "_number",
        "_number_placed",
        "_number_start",
        "_offset",
        "_root",
        "_stack",
        "_state",
    )

    def __init__(self, max_depth: int | None = None) -> None:
        self._max_depth = MAX_DEPTH if max_depth is None else max_depth
        self._root: Any = None
        self._stack: list[list[Any] | dict[str, Any]] = []
        self._state: int = _VALUE
        self._key = ""  # key of the member being parsed in the innermost object
        self._key_parts: list[str] = []
        self._esc = ""  # escape sequence cut off by the end of a fragment
        self._number = ""
        self._number_start = 0
        self._number_placed = False
        self._literal = ""
        self._literal_len = 0
        self._literal_value: Any = None
        self._offset = 0  # characters fed before the current fragment
        self._error: PartialJsonError | None = None

    @property
    def value(self) -> Any:
        """The value parsed so far: the live object, mutated by later feeds. None before any value starts."""
        return self._root

    @property
    def done(self) -> bool:
        """Whether a whole top-level value has been read (a top-level number: once something follows it)."""
        return self._state == _DONE

    @property
    def error(self) -> PartialJsonError | None:
        """The error that stopped the parser, if any."""
        return self._error

    def feed(self, delta: str) -> Any:
        """Parse the next fragment of text and return the value parsed from all text fed so far.

        Args:
            delta: The next fragment, of any length (empty is fine).

        Returns:
            The live value (see `value`); the same object on every call once a container has started.

        Raises:
            PartialJsonError: The text can never become valid JSON. Raised again by every later call.
        """
        error = self._error
        if error is not None:
            raise PartialJsonError(error.msg, error.pos)
        try:
            self._consume(delta)
        except PartialJsonError as exc:
            self._error = exc
            raise
        self._offset += len(delta)
        return self._root

    # -- parsing ---------------------------------------------------------------------------------------------

    def _consume(self, buf: str) -> None:
        n = len(buf)
        i = 0
        while i < n:
            state = self._state
            if state in (_STRING, _KEY_STRING):
                i = self._string(buf, i, n)
                continue
            if state == _NUMBER:
                i = self._number_run(buf, i, n)
                continue
            if state == _LITERAL:
                i = self._literal_run(buf, i)
                continue
            c = buf[i]
            if c in _WHITESPACE:
                i = _WS_RUN.match(buf, i).end()  # type: ignore[union-attr]  # `*` always matches
                continue
            if state in (_VALUE, _VALUE_OR_END):
                i = self._start_value(c, i)
            elif state == _COMMA_OR_END:
                container = self._stack[-1]
                is_list = isinstance(container, list)
                if c == ",":
                    self._state = _VALUE if is_list else _KEY
                elif c == ("]" if is_list else "}"):
                    self._close()
                else:
                    raise self._fail("Expecting ',' delimiter" if c not in "]}" else f"Unexpected {c!r}", i)
                i += 1
            elif state in (_KEY, _KEY_OR_END):
                if c == '"':
                    self._key_parts = []
                    self._state = _KEY_STRING
                elif c == "}" and state == _KEY_OR_END:
                    self._close()
                else:
                    raise self._fail("Expecting property name enclosed in double quotes", i)
                i += 1
            elif state == _COLON:
                if c != ":":
                    raise self._fail("Expecting ':' delimiter", i)
                self._state = _VALUE
                i += 1
            else:  # _DONE
                raise self._fail("Extra data", i)
        if self._state == _NUMBER:
            # Show the longest complete prefix of the number in progress, once per fragment.
            match = _NUMBER_FULL.match(self._number)
            if match is not None:
                self._set_number(self._parse_number(match.group()))

    def _start_value(self, c: str, i: int) -> int:
        if c == '"':
            self._put("")
            self._state = _STRING
        elif c in "{[" and len(self._stack) >= self._max_depth:
            raise self._fail(f"nested deeper than {self._max_depth} levels", i)
        elif c == "{":
            obj: dict[str, Any] = {}
            self._put(obj)
            self._stack.append(obj)
            self._state = _KEY_OR_END
        elif c == "[":
            arr: list[Any] = []
            self._put(arr)
            self._stack.append(arr)
            self._state = _VALUE_OR_END
        elif c == "-" or "0" <= c <= "9":
            self._number = ""
            self._number_start = self._offset + i
            self._number_placed = False
            self._state = _NUMBER
            return i  # the number state reads it
        elif c in _LITERALS:
            self._literal, self._literal_value = _LITERALS[c]
            self._literal_len = 0
            self._state = _LITERAL
            return i
        elif c == "]" and self._state == _VALUE_OR_END:
            self._close()
        else:
            raise self._fail("Expecting value", i)
        return i + 1

    def _string(self, buf: str, i: int, n: int) -> int:
        # Collect this fragment's text and extend the string once: one in-place append per fragment.
        out = ""
        try:
            while True:
                if self._esc:
                    i, text = self._finish_escape(buf, i, n)
                    out += text
                    if self._esc:
                        return i
                j = _STRING_RUN.match(buf, i).end()  # type: ignore[union-attr]  # `*` always matches
                if j > i:
                    text = buf[i:j]
                    if "\\" in text:
                        text = _ESCAPE.sub(_unescape, text)
                    out += text
                if j == n:
                    return n
                c = buf[j]
                if c == "\\":
                    self._esc = "\\"
                    i = j + 1
                    continue
                if c != '"':
                    raise self._fail("Invalid control character in string", j)
                if out:
                    self._append(out)
                    out = ""
                if self._state == _KEY_STRING:
                    self._key = "".join(self._key_parts)
                    self._key_parts = []
                    self._state = _COLON
                else:
                    self._end_value()
                return j + 1
        finally:
            if out:
                self._append(out)

    def _finish_escape(self, buf: str, i: int, n: int) -> tuple[int, str]:
        # Slow path: an escape cut by a fragment boundary, an invalid escape, or a lone high surrogate.
        esc = self._esc
        match = _ONE_ESCAPE.match(esc + buf[i : i + 12])
        if match is not None:  # the common case: the rest of a valid escape is here
            self._esc = ""
            return i + match.end() - len(esc), _unescape(match)
        # Escapes are at most 12 characters, so going one character at a time costs nothing.
        out = ""
        while i < n:
            esc += buf[i]
            i += 1
            step = _escape_step(esc, self._offset + i - 1)
            if step is None:
                continue
            text, esc, push_back = step
            if push_back:
                i -= 1
            while esc:
                step = _escape_step(esc, self._offset + i - 1)
                if step is None:
                    break
                more, esc, _ = step
                text += more
            out += text
            if not esc:
                break
        self._esc = esc
        return i, out

    def _append(self, text: str) -> None:
        if self._state == _KEY_STRING:
            self._key_parts.append(text)
            return
        # CPython extends a str in place when `s += t` finds the only reference in the local `s`, so the
        # container's reference is dropped around the `+=`: a long string grows in amortised linear time.
        stack = self._stack
        if not stack:
            s = self._root
            self._root = ""
            s += text
            self._root = s
            return
        container = stack[-1]
        if isinstance(container, list):
            s = container[-1]
            container[-1] = ""
            s += text
            container[-1] = s
        else:
            key = self._key
            s = container[key]
            container[key] = ""
            s += text
            container[key] = s

    def _number_run(self, buf: str, i: int, n: int) -> int:
        j = _NUMBER_RUN.match(buf, i).end()  # type: ignore[union-attr]  # `*` always matches
        number = self._number + buf[i:j]
        self._number = number
        if j == n:
            if _NUMBER_PREFIX.fullmatch(number) is None:
                raise PartialJsonError(f"Invalid number {number!r}", self._number_start)
            return n
        if _NUMBER_FULL.fullmatch(number) is None:
            if number == "-" and buf[j] == "I":
                self._literal, self._literal_value = "-Infinity", float("-inf")
                self._literal_len = 1
                self._state = _LITERAL
                return j
            raise PartialJsonError(f"Invalid number {number!r}", self._number_start)
        self._set_number(self._parse_number(number))
        self._end_value()
        return j

    def _parse_number(self, text: str) -> Any:
        try:
            return _to_number(text)
        except ValueError as exc:  # an integer longer than sys.get_int_max_str_digits(), as json.loads
            raise PartialJsonError(str(exc), self._number_start) from None

    def _literal_run(self, buf: str, i: int) -> int:
        word = self._literal
        have = self._literal_len
        need = word[have:]
        got = buf[i : i + len(need)]
        if not need.startswith(got):
            bad = next(k for k, (a, b) in enumerate(zip(need, got, strict=False)) if a != b)
            raise self._fail("Expecting value", i + bad)
        have += len(got)
        if have == len(word):
            self._put(self._literal_value)
            self._end_value()
        else:
            self._literal_len = have
        return i + len(got)

    # -- building the value ----------------------------------------------------------------------------------

    def _put(self, value: Any) -> None:
        stack = self._stack
        if not stack:
            self._root = value
            return
        container = stack[-1]
        if isinstance(container, list):
            container.append(value)
        else:
            container[self._key] = value

    def _set_number(self, value: Any) -> None:
        if not self._number_placed:
            self._number_placed = True
            self._put(value)
            return
        stack = self._stack
        if not stack:
            self._root = value
            return
        container = stack[-1]
        if isinstance(container, list):
            container[-1] = value
        else:
            container[self._key] = value

    def _end_value(self) -> None:
        self._state = _COMMA_OR_END if self._stack else _DONE

    def _close(self) -> None:
        self._stack.pop()
        self._end_value()

    def _fail(self, msg: str, i: int) -> PartialJsonError:
        return PartialJsonError(msg, self._offset + i)


def parse_partial_json(text: str) -> Any:
    """Parse possibly incomplete JSON text in one go.

    Args:
        text: A prefix of a JSON document.

    Returns:
        The value so far, with the semantics described in this module; None if no value has started.

    Raises:
        PartialJsonError: The text can never become valid JSON.
    """
    return PartialJsonParser().feed(text)
