"""The retry policy: which failures are retried, how long to wait, how options are read."""

from __future__ import annotations

import email.utils

import pytest

from cllm.retry.policy import Retries, failure_category, parse_retry_after, take_options


@pytest.mark.parametrize(
    ("status", "kind", "message", "category"),
    [
        (429, "RateLimitError", "slow down", "rate_limit"),
        (503, "BadRequestError", "overloaded", "overloaded"),  # LiteLLM 1.106's name for it
        (529, "APIError", "Overloaded", "overloaded"),
        (500, "InternalServerError", "boom", "server"),
        (502, None, "bad gateway", "server"),
        (500, "APIConnectionError", "Connection reset by peer", "connection"),
        (None, "ReadError", "peer closed connection", "connection"),
        (None, "Timeout", "read timed out", "timeout"),
        (400, "BadRequestError", "connection overloaded", None),
        (401, "AuthenticationError", "bad key", None),
        (403, None, "", None),
        (404, "NotFoundError", "", None),
        (422, None, "", None),
        (None, "ContextWindowExceededError", "too long", None),
        (None, "ValueError", "weird", None),
    ],
)
def test_categories(status: int | None, kind: str | None, message: str, category: str | None) -> None:
    assert failure_category(status, kind, message) == category


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    policy = Retries(attempts=5, backoff=0.5, max_delay=3)
    assert [policy.delay(n, None, 0.0) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 1.5]
    assert [policy.delay(n, None, 0.999999) for n in (1, 2)] == pytest.approx([0.5, 1.0])
    assert policy.delay(1, 2.0, 0.5) == 2.0
    assert policy.delay(1, 5.0, 0.5) is None  # longer than max_delay: move on


def test_retry_after_headers() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(1000.0 + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1000.0) == pytest.approx(30, abs=1)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after(None) is None


def test_options() -> None:
    options = {"retries": 2, "fallbacks": ["b", {"model": "c", "max_tokens": 5}], "temperature": 0}
    policy = take_options(options)
    assert options == {"temperature": 0}
    assert policy is not None and policy.retries.attempts == 3
    assert list(policy.fallbacks) == [("b", {}), ("c", {"max_tokens": 5})]
    assert policy.mid_stream == "continue"
    assert take_options({}) is None
    assert take_options({"mid_stream": "raise"}) is None
    restart = take_options({"mid_stream": "restart"})
    assert restart is not None and restart.retries == Retries()
    only_fallback = take_options({"fallbacks": "b"})
    assert only_fallback is not None and only_fallback.retries.attempts == 1
    assert take_options({"retries": {"attempts": 2, "backoff": 0}}).retries == Retries(attempts=2, backoff=0)  # type: ignore[union-attr]
    for bad in ({"retries": True}, {"retries": "3"}, {"fallbacks": [3]}, {"mid_stream": "again"}):
        with pytest.raises(ValueError):
            take_options(dict(bad))
    with pytest.raises(ValueError):
        Retries(on={"sometimes"})
    with pytest.raises(ValueError):
        Retries(attempts=0)
