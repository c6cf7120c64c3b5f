"""cllm: real-time streaming for LiteLLM.

Text, reasoning and tool-call arguments as they arrive, and a final response with a normalized
finish reason, usage and cost, on every provider LiteLLM supports.
"""

from cllm._api import acomplete, astream, complete, stream
from cllm._batch import BatchInterrupted, BatchItem, BatchProgress, abatch, batch
from cllm._files import FilePart, aprocess_file, sections
from cllm._stream import AsyncStream
from cllm._sync import Stream
from cllm.core.events import (
    Attempt,
    Event,
    Finish,
    Queued,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from cllm.core.finish import FinishReason, normalize_finish_reason
from cllm.core.partial_json import PartialJsonParser, parse_partial_json
from cllm.core.response import AttemptRecord, Response, ToolCall, Usage
from cllm.core.sections import Section
from cllm.errors import CllmError, ProviderError, StreamInterrupted, StreamTimeout
from cllm.limits import Limits
from cllm.retry.policy import Retries

__version__ = "0.1.0"

__all__ = [
    "AsyncStream",
    "Attempt",
    "AttemptRecord",
    "BatchInterrupted",
    "BatchItem",
    "BatchProgress",
    "CllmError",
    "Event",
    "FilePart",
    "Finish",
    "FinishReason",
    "Limits",
    "PartialJsonParser",
    "ProviderError",
    "Queued",
    "ReasoningDelta",
    "Response",
    "Retries",
    "Section",
    "Stream",
    "StreamInterrupted",
    "StreamTimeout",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "Usage",
    "__version__",
    "abatch",
    "acomplete",
    "aprocess_file",
    "astream",
    "batch",
    "complete",
    "normalize_finish_reason",
    "parse_partial_json",
    "sections",
    "stream",
]
