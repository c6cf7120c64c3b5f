"""Client JSON, read defensively: bounded nesting, and text that can be stored and sent on.

``json.loads`` accepts things the rest of the server cannot handle: a lone surrogate escape
(``"\\ud800"``) is valid JSON but no valid UTF-8, so SQLite, LiteLLM and every encoder after
it would fail on it; and a body nested a thousand levels deep exhausts the interpreter's stack.
Both are refused here, once, as a `RequestError` (400), before any handler looks at the value.
"""

from __future__ import annotations

import json
from typing import Any

from cllm.server.settings import RequestError

__all__ = ["MAX_DEPTH", "loads"]

MAX_DEPTH = 128
"""The deepest nesting of arrays and objects a client may send (tool schemas need a few dozen)."""

_NOT_UNICODE = (
    "the request holds text that is not valid Unicode (a lone surrogate such as \\ud800): "
    "it cannot be encoded as UTF-8"
)
_TOO_DEEP = f"the JSON is nested too deeply (at most {MAX_DEPTH} levels of arrays and objects)"


def loads(raw: bytes | str, what: str = "the request body") -> Any:
    """Parse client JSON; `RequestError` (400) when it is not JSON, too deep or not valid Unicode."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise RequestError(400, _TOO_DEEP, code="nested_too_deeply") from None
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise RequestError(400, f"{what} is not valid JSON", code="invalid_json") from None
    check(value)
    return value


def check(value: Any) -> None:
    """`RequestError` (400) when ``value`` nests deeper than `MAX_DEPTH` or holds a lone surrogate.

    Iterative, so it can look at any value without running out of stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise RequestError(400, _TOO_DEEP, code="nested_too_deeply")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise RequestError(400, _NOT_UNICODE, code="invalid_text") from None
