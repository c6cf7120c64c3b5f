"""cllm's exceptions. No provider-library exception reaches the caller: each is chained as ``__cause__``."""

from __future__ import annotations

from typing import Literal

from cllm.core.response import Response

__all__ = ["CllmError", "ProviderError", "StreamInterrupted", "StreamTimeout"]


class CllmError(Exception):
    """Base class of every error cllm raises."""


class ProviderError(CllmError):
    """The request failed before any output: authentication, bad request, unknown model, connection refused.

    Attributes:
        message: the provider's message.
        status_code: the HTTP status, when there was one.
        provider: LiteLLM's provider name (``openai``, ``anthropic``...), when known.
        model: the model asked for.
        kind: the kind of failure (LiteLLM's exception name: ``AuthenticationError``,
            ``RateLimitError``, ``APIConnectionError``, ``Timeout``...).
        error_type: the provider's own error ``type``, when its error body had one.
        code: the provider's own error ``code`` (``invalid_api_key``...), when its error body had one.
        retry_after: the seconds the provider asked to wait before trying again (its
            ``Retry-After`` header), when it said.

    A missing API key is a ``status_code`` 401 whose message names the variable to set.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        provider: str | None = None,
        model: str | None = None,
        kind: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.provider = provider
        self.model = model
        self.kind = kind
        self.error_type = error_type
        self.code = code
        self.retry_after = retry_after


class StreamInterrupted(CllmError):
    """The stream failed after it started. ``response`` holds everything received, ``interrupted=True``."""

    def __init__(self, message: str, response: Response) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class StreamTimeout(StreamInterrupted):
    """A timeout fired (``kind``: ``first_token``, ``idle`` or ``total``); ``response`` keeps what arrived."""

    def __init__(
        self, message: str, response: Response, kind: Literal["first_token", "idle", "total"]
    ) -> None:
        super().__init__(message, response)
        self.kind = kind
