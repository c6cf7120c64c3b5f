"""Time-ordered ids and timestamps for stored rows.

An id is a ULID: 26 characters of Crockford base32 (``0-9A-Z`` without ``I L O U``), the first 10
encoding the milliseconds since the Unix epoch and the last 16 an 80-bit number drawn at random
(from `secrets`, below 2**79 to leave room to count up). Ids sort as text in the order they were
made, to the millisecond; within one millisecond one process counts the random part up, so the ids
a process makes never tie or go backwards.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

__all__ = ["ALPHABET", "new_id", "utc_after", "utc_now"]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(now_ms: int | None = None) -> str:
    """A new 26-character ULID, greater than every id this process made before."""
    global _last_ms, _last_random
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            # Same millisecond (or the clock stepped back): stay ordered by counting up.
            ms = _last_ms
            random = _last_random + 1
            if random >= 1 << _RANDOM_BITS:
                ms, random = ms + 1, secrets.randbits(_RANDOM_BITS - 1)
        else:
            # One spare bit keeps room to count up within the millisecond.
            random = secrets.randbits(_RANDOM_BITS - 1)
        _last_ms, _last_random = ms, random
    return _encode(ms, 10) + _encode(random, 16)


def utc_now() -> str:
    """The current time as fixed-width ISO-8601 UTC text, which sorts as it reads."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def utc_after(previous: str | None) -> str:
    """The current time, or one microsecond after `previous` when the clock has not passed it.

    Keeps ``updated`` strictly increasing across writers so "the latest conversation" is always the
    last one written to.
    """
    now = utc_now()
    if previous is None or now > previous:
        return now
    later = datetime.fromisoformat(previous) + timedelta(microseconds=1)
    return later.astimezone(UTC).isoformat(timespec="microseconds")
