"""The one-line error messages, for failures that need no provider to reproduce."""

from __future__ import annotations

import pytest

from cllm import ProviderError
from cllm.cli.errors import describe_error


def test_a_remote_failure_shows_its_http_status() -> None:
    e = ProviderError("upstream overloaded", status_code=529, provider="anthropic")
    assert (
        describe_error(e, "anthropic/claude-sonnet-4-5")
        == "anthropic/claude-sonnet-4-5 (529): upstream overloaded"
    )


@pytest.mark.parametrize("provider", ["local", None])
def test_the_local_model_shows_no_http_status(provider: str | None) -> None:
    e = ProviderError("the local model needs the 'local' extra", status_code=500, provider=provider)
    assert (
        describe_error(e, "local/gemma-3-270m")
        == "local/gemma-3-270m: the local model needs the 'local' extra"
    )
