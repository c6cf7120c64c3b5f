"""Retries, fallbacks and streams that survive failing halfway.

`take_options` reads the ``retries``, ``fallbacks`` and ``mid_stream`` options into a `Policy`;
`Resilient` is the source that applies it around a factory of per-attempt sources.
"""

from cllm.retry.policy import MidStream, Policy, Retries, take_options
from cllm.retry.resilient import Resilient, fallback_request

__all__ = ["MidStream", "Policy", "Resilient", "Retries", "fallback_request", "take_options"]
