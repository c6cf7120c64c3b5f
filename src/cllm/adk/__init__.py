"""cllm for Google's Agent Development Kit: `CllmLlm`, a drop-in for ADK's ``LiteLlm``.

Needs the ``adk`` extra (``pip install 'cllm[adk]'``). ``import cllm`` never imports ADK; this
package does.

Example::

    from google.adk.agents import LlmAgent
    from cllm.adk import CllmLlm

    agent = LlmAgent(name="helper", model=CllmLlm(model="openai/gpt-4o-mini"))
"""

from __future__ import annotations

try:
    from google.adk.models.registry import LLMRegistry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("cllm.adk needs Google's Agent Development Kit: pip install 'cllm[adk]'") from exc

from cllm.adk._model import PREFIX, CllmLlm
from cllm.adk._response import INCOMPLETE_CALLS_KEY

__all__ = ["INCOMPLETE_CALLS_KEY", "PREFIX", "CllmLlm", "register"]


def register() -> None:
    """Register `CllmLlm` in ADK's model registry, so that ``LlmAgent(model="cllm/openai/gpt-4o")``
    uses it. Only ``cllm/...`` names are claimed: ``openai/...`` and the other provider names stay
    with ADK's ``LiteLlm``. Safe to call more than once."""
    LLMRegistry.register(CllmLlm)
