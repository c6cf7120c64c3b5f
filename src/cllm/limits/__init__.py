"""Limits on many requests at once: concurrency, requests and tokens per minute, per model.

`Limits` is the public face. Its state lives in a `LimiterStore`: `MemoryStore` (this process, the
default) or another implementation of the same few atomic operations (a shared store lets several
processes keep one budget). `Limited` is the stream layer that applies a `Limits` to one attempt.
"""

from cllm.limits._limits import Limits, Permit
from cllm.limits._source import Limited, estimate_tokens
from cllm.limits.store import Bucket, LimiterStore, MemoryStore, default_store

__all__ = [
    "Bucket",
    "Limited",
    "LimiterStore",
    "Limits",
    "MemoryStore",
    "Permit",
    "default_store",
    "estimate_tokens",
]
