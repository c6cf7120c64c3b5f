"""What to do when an attempt fails: the options, the kinds of failure worth another try, the delays.

No I/O and no provider library: the source that applies this lives in `cllm.retry.resilient`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CATEGORIES",
    "NEVER_RETRIED",
    "MidStream",
    "Policy",
    "Retries",
    "failure_category",
    "parse_retry_after",
    "short_connection_error",
    "take_options",
]

MidStream = Literal["continue", "restart", "raise", "continue-or-raise"]
#: ``continue-or-raise``: continue where possible, raise where the answer would have to start
#: over (for a relay that cannot take back what it already sent on).
MID_STREAM_MODES: tuple[MidStream, ...] = ("continue", "restart", "raise", "continue-or-raise")

#: Kinds of failure another attempt can cure.
CATEGORIES = ("rate_limit", "overloaded", "server", "connection", "timeout")
#: A bad request is not made better by sending it again.
NEVER_RETRIED = frozenset({400, 401, 403, 404, 422})

# LiteLLM's names for failures of the request itself.
_CLIENT_KINDS = frozenset(
    {
        "AuthenticationError",
        "BadRequestError",
        "BudgetExceededError",
        "ContentPolicyViolationError",
        "ContextWindowExceededError",
        "InvalidRequestError",
        "NotFoundError",
        "PermissionDeniedError",
        "UnprocessableEntityError",
        "UnsupportedParamsError",
    }
)
_CONNECTION_WORDS = ("connection", "protocol", "payload", "disconnect", "reset", "eof", "network", "socket")


@dataclass(frozen=True, slots=True)
class Retries:
    """How many times to try each model, and how long to wait between tries.

    Args:
        attempts: tries per model, the first included (``retries=2`` is ``Retries(attempts=3)``).
        backoff: the first delay in seconds; it doubles on each retry, with jitter (a delay is
            drawn between half and all of it), and a ``Retry-After`` from the provider is honoured.
        max_delay: the longest delay. A provider asking for a longer wait moves on to the next
            fallback instead.
        on: the kinds of failure to retry: ``"rate_limit"``, ``"overloaded"``, ``"server"`` (5xx),
            ``"connection"``, ``"timeout"`` (cllm's first-token and idle timeouts), and HTTP status
            codes. 400, 401, 403, 404 and 422 are never retried.
    """

    attempts: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0
    on: frozenset[str | int] = field(default_factory=lambda: frozenset(CATEGORIES))

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"Retries.attempts must be an integer of at least 1, got {self.attempts!r}")
        for name in ("backoff", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"Retries.{name} must be a number of seconds >= 0, got {value!r}")
        on = frozenset(self.on) if not isinstance(self.on, str) else frozenset({self.on})
        for item in on:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise ValueError(f"Retries.on: {item!r} is neither a kind of failure nor a status code")
            if isinstance(item, str) and item not in CATEGORIES:
                raise ValueError(f"Retries.on: unknown kind {item!r} (known: {', '.join(CATEGORIES)})")
            if isinstance(item, int) and item in NEVER_RETRIED:
                raise ValueError(f"Retries.on: status {item} is never retried")
        object.__setattr__(self, "on", on)

    def retries(self, category: str | None, status: int | None) -> bool:
        """Whether a failure of this kind (and status) is worth another try."""
        if status in NEVER_RETRIED:
            return False
        return (status is not None and status in self.on) or (category is not None and category in self.on)

    def delay(self, retry: int, retry_after: float | None, draw: float) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based); ``draw`` is uniform in [0, 1).

        None when the provider asks for a longer wait than ``max_delay``.
        """
        if retry_after is not None and retry_after > self.max_delay:
            return None
        base = min(float(self.max_delay), float(self.backoff) * 2.0 ** (retry - 1))
        delay = base * (0.5 + 0.5 * draw)
        return delay if retry_after is None else max(delay, retry_after)


def _coerce_retries(value: Any) -> Retries | None:
    if value is None:
        return None
    if isinstance(value, Retries):
        return value
    if isinstance(value, Mapping):
        return Retries(**dict(value))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"retries must be a count of retries (0 or more) or cllm.Retries, got {value!r}")
    return Retries(attempts=value + 1)


Fallback = tuple[str, dict[str, Any]]


def _coerce_fallbacks(value: Any) -> list[Fallback]:
    if value is None:
        return []
    if isinstance(value, str | Mapping):
        value = [value]
    if not isinstance(value, Iterable):
        raise ValueError(f"fallbacks must be a list of models, got {value!r}")
    out: list[Fallback] = []
    for item in value:
        if isinstance(item, str) and item.strip():
            out.append((item.strip(), {}))
        elif isinstance(item, Mapping) and isinstance(item.get("model"), str) and item["model"].strip():
            options = {k: v for k, v in item.items() if k != "model"}
            out.append((item["model"].strip(), options))
        else:
            raise ValueError(f'a fallback is a model name or {{"model": ..., options}}, got {item!r}')
    return out


@dataclass(frozen=True, slots=True)
class Policy:
    """Retries per model, the fallbacks in order, and what to do when a stream fails after output."""

    retries: Retries
    fallbacks: Sequence[Fallback] = ()
    mid_stream: MidStream = "continue"


def take_options(options: dict[str, Any]) -> Policy | None:
    """Pop ``retries``, ``fallbacks`` and ``mid_stream`` from ``options``; None when none asks for anything.

    ``mid_stream`` defaults to ``"raise"`` when neither retries nor fallbacks are given and to
    ``"continue"`` when they are. ``mid_stream`` alone (continue or restart) tries each model
    ``Retries()``'s default number of times.
    """
    retries = _coerce_retries(options.pop("retries", None))
    fallbacks = _coerce_fallbacks(options.pop("fallbacks", None))
    mode = options.pop("mid_stream", None)
    if mode is not None and mode not in MID_STREAM_MODES:
        raise ValueError(f"mid_stream must be one of {', '.join(MID_STREAM_MODES[:3])}, got {mode!r}")
    if retries is None and not fallbacks:
        if mode in (None, "raise"):
            return None
        retries = Retries()
    return Policy(retries or Retries(attempts=1), tuple(fallbacks), mode or "continue")


def failure_category(status: int | None, kind: str | None, message: str = "") -> str | None:
    """The kind of failure (one of `CATEGORIES`), or None for one no retry can cure.

    The HTTP status decides when there is one: LiteLLM's exception names vary between versions
    (1.106 calls a non-streaming 503 a ``BadRequestError``).
    """
    text = f"{kind or ''} {message}".lower()
    if status in NEVER_RETRIED:
        return None
    if kind == "APIConnectionError" or (
        status in (None, 500) and kind not in ("InternalServerError", "APIError") and _connection(text)
    ):
        # LiteLLM gives a dropped connection the status 500.
        return "connection"
    if status == 429 or (status is None and kind == "RateLimitError"):
        return "rate_limit"
    if status in (503, 529) or (status is None and kind == "ServiceUnavailableError") or "overloaded" in text:
        return "overloaded"
    if status is not None and status >= 500:
        return "server"
    if status == 408:
        return "timeout"
    if status is not None or kind in _CLIENT_KINDS:
        return None
    if kind in ("InternalServerError", "APIError"):
        return "server"
    if "timeout" in (kind or "").lower():
        return "timeout"
    return None


def _connection(text: str) -> bool:
    return any(word in text for word in _CONNECTION_WORDS)


_SHORT_CONNECTION = (
    ("reset by peer", "connection reset"),
    ("connection reset", "connection reset"),
    ("connectionreseterror", "connection reset"),
    ("refused", "connection refused"),
    ("not completed", "connection closed mid-response"),
    ("incomplete chunked read", "connection closed mid-response"),
    ("peer closed connection", "connection closed mid-response"),
    ("disconnect", "server disconnected"),
    ("closed", "connection closed"),
)


def short_connection_error(message: str) -> str:
    """A dropped connection in a few words (LiteLLM's messages run to several lines)."""
    lowered = message.lower()
    for needle, words in _SHORT_CONNECTION:
        if needle in lowered:
            return words
    first = message.split(" | ", 1)[0]
    return first if len(first) <= 80 else first[:77] + "..."


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds from a ``retry-after-ms`` or ``retry-after`` header (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    value = lowered.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
