"""The LiteLLM adapter: the only module that imports litellm.

It builds requests, opens streams, turns LiteLLM's chunk objects into core `Chunk`s, reads usage
and cost, and turns LiteLLM's exceptions into cllm's. litellm is imported on first use, so
``import cllm`` stays fast.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import importlib
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from cllm.core.accumulator import Chunk, ToolCallChunk
from cllm.core.openai_chunks import read_usage
from cllm.core.response import Usage
from cllm.errors import CllmError, ProviderError

__all__ = [
    "ChunkReader",
    "Request",
    "accepts_prefix",
    "aload",
    "clean_message",
    "cost",
    "count_tokens",
    "drop_boilerplate",
    "end_of_stream_consumers",
    "litellm",
    "non_stream_chunk",
    "preload",
    "prepare",
    "provider_error",
    "reasoning_params",
    "resolve",
    "response_model",
    "retry_after",
    "stream_delivered",
    "text_counter",
]

_lock = threading.Lock()
_litellm: ModuleType | None = None
# Its own lock: taking `_lock` here would wait out an import already running on another thread.
_loading_lock = threading.Lock()
_loading: concurrent.futures.Future[ModuleType] | None = None


def litellm() -> ModuleType:
    """Import and configure litellm once (blocking: seconds on the first call).

    LiteLLM downloads its price table at import unless told not to; the bundled copy is used
    unless the caller set ``LITELLM_LOCAL_MODEL_COST_MAP`` themselves.
    """
    global _litellm
    if _litellm is None:
        with _lock:
            if _litellm is None:
                _litellm = _import_litellm()
    return _litellm


# What LiteLLM's first call imports lazily, hundreds of milliseconds of it: tiktoken's encoding for
# its token estimate, and the openai SDK's resources, on first use of a client.
_FIRST_CALL_MODULES = ("litellm.litellm_core_utils.default_encoding", "openai.resources")


def _import_litellm() -> ModuleType:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # The import makes about a million objects. With the collector on, it runs full collections
    # over them while importing, each holding the GIL for up to a few hundred milliseconds, which
    # stalls every other thread (an event loop waiting for this import among them).
    collecting = gc.isenabled()
    gc.disable()
    try:
        import litellm as module

        for name in _FIRST_CALL_MODULES:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
        # Left young, these objects would all be scanned by the next collection on whatever
        # thread comes next (about 200 ms holding the GIL): moved out of the collector's reach.
        if os.environ.get("CLLM_GC_FREEZE", "1") != "0":
            gc.freeze()
    finally:
        if collecting:
            gc.enable()
    # Unknown models make LiteLLM print a provider list to stdout.
    module.suppress_debug_info = True
    if module.disable_hf_tokenizer_download is None:
        # Otherwise a pre-call token estimate for some model names downloads a tokenizer
        # (tens of seconds of retries offline) before the request is even sent.
        module.disable_hf_tokenizer_download = True
    # `local/...` models (llama.cpp is loaded on their first request, not here).
    from cllm.local._handler import register

    register(module)
    return module


def preload() -> concurrent.futures.Future[ModuleType]:
    """Start importing litellm on a worker thread (once); the future gives the module or the error."""
    global _loading
    with _loading_lock:
        if _loading is None:
            _loading = concurrent.futures.Future()
            threading.Thread(target=_run_load, args=(_loading,), name="cllm-import", daemon=True).start()
        return _loading


def _run_load(future: concurrent.futures.Future[ModuleType]) -> None:
    try:
        future.set_result(litellm())
    except BaseException as exc:  # handed to whoever awaits the import
        future.set_exception(exc)


async def aload() -> ModuleType:
    """litellm, imported on a worker thread the first time, so a running event loop never waits on it."""
    if _litellm is not None:
        return _litellm
    return await asyncio.wrap_future(preload())


CLLM_OPTIONS = ("first_token_timeout", "idle_timeout", "total_timeout")


@dataclass(slots=True)
class Request:
    """A prepared LiteLLM call plus cllm's own options."""

    model: str
    kwargs: dict[str, Any]
    first_token_timeout: float | None = None
    idle_timeout: float | None = None
    total_timeout: float | None = None
    provider: str | None = None
    resolved: bool = False
    fast_path: bool = True
    """Whether cllm may read an OpenAI-format stream itself (`cllm._fast`) rather than through
    LiteLLM's stream wrapper; the request is LiteLLM's either way."""


def to_messages(prompt_or_messages: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A string becomes one user message; a message list is taken as it is."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    messages = [dict(m) for m in prompt_or_messages]
    for m in messages:
        if "role" not in m:
            raise ValueError(f"message without a role: {m!r}")
    return messages


def _timeout(options: dict[str, Any], name: str) -> float | None:
    value = options.pop(name, None)
    if value is None:
        return None
    value = float(value)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def prepare(
    model: str,
    prompt_or_messages: str | Sequence[Mapping[str, Any]],
    options: Mapping[str, Any],
    *,
    stream: bool,
) -> Request:
    """Build the LiteLLM keyword arguments for one call."""
    if not model:
        raise ValueError("no model given")
    opts = dict(options)
    timeouts = {name: _timeout(opts, name) for name in CLLM_OPTIONS}
    fast_path = opts.pop("fast_path", True)
    if not isinstance(fast_path, bool):
        raise TypeError(f"fast_path must be True or False, got {fast_path!r}")
    kwargs: dict[str, Any] = {"model": model, "messages": to_messages(prompt_or_messages), **opts}
    # The openai SDK client LiteLLM builds retries twice by default: one call would become three
    # requests behind the caller's back. Retrying is the caller's decision.
    kwargs.setdefault("max_retries", 0)
    if stream:
        kwargs["stream"] = True
    return Request(
        model=model,
        kwargs=kwargs,
        first_token_timeout=timeouts["first_token_timeout"],
        idle_timeout=timeouts["idle_timeout"],
        total_timeout=timeouts["total_timeout"],
        fast_path=fast_path,
    )


def resolve(request: Request) -> Request:
    """Fill in what needs litellm loaded: the provider, and usage reporting for streams."""
    if request.resolved:
        return request
    kwargs = request.kwargs
    provider = request.provider = _provider_of(request.model, kwargs)
    if (
        kwargs.get("stream")
        and "stream_options" not in kwargs
        and provider is not None
        and _accepts_stream_options(request.model, provider)
    ):
        # Without this, OpenAI-compatible servers other than OpenAI's own send no usage.
        kwargs["stream_options"] = {"include_usage": True}
    request.resolved = True
    return request


def _provider_of(model: str, options: Mapping[str, Any]) -> str | None:
    try:
        _, provider, _, _ = litellm().get_llm_provider(
            model, custom_llm_provider=options.get("custom_llm_provider"), api_base=options.get("api_base")
        )
    except Exception:
        return None  # litellm will say what is wrong when the call is made
    return str(provider)


def _accepts_stream_options(model: str, provider: str) -> bool:
    try:
        params = litellm().get_supported_openai_params(model=model, custom_llm_provider=provider)
    except Exception:
        return False
    return bool(params) and "stream_options" in params


def reasoning_params(model: str) -> frozenset[str]:
    """Which of ``reasoning_effort`` and ``thinking`` LiteLLM accepts for a model that reasons (none
    for a model that does not). Needs litellm loaded (`aload`)."""
    lib = litellm()
    try:
        if not lib.supports_reasoning(model=model):
            return frozenset()
        params = lib.get_supported_openai_params(model=model) or ()
    except Exception:
        return frozenset()
    return frozenset(params) & {"reasoning_effort", "thinking"}


# -- chunks ---------------------------------------------------------------------------------------


def _choice0(choices: Any) -> Any:
    if not choices:
        return None
    for choice in choices:
        if getattr(choice, "index", 0) in (0, None):
            return choice
    return None


def _tool_chunks(tool_calls: Any) -> list[ToolCallChunk] | None:
    if not tool_calls:
        return None
    out = []
    for tc in tool_calls:
        function = tc.get("function") if isinstance(tc, dict) else getattr(tc, "function", None)
        if isinstance(function, dict):
            name, arguments = function.get("name"), function.get("arguments")
        else:
            name, arguments = getattr(function, "name", None), getattr(function, "arguments", None)
        if isinstance(tc, dict):
            index, call_id = tc.get("index"), tc.get("id")
        else:
            index, call_id = getattr(tc, "index", None), getattr(tc, "id", None)
        if arguments is not None and not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        out.append(ToolCallChunk(index, call_id or None, name or None, arguments))
    return out


_SERVER_TOOL_ID = "srvtoolu_"  # Anthropic's ids for the calls it runs itself


class ChunkReader:
    """Turns one stream's LiteLLM chunks into core `Chunk`s (choice 0 only).

    LiteLLM moves the finish reason onto a trailing chunk, makes one up ("stop") when the provider
    never sent any, and from 1.110 rewrites a "stop" after tool calls to "tool_calls";
    ``upstream.received_finish_reason`` keeps what the provider really sent, on every version.

    Anthropic's server tool use (calls Anthropic runs itself) comes out of LiteLLM 1.106 as ordinary
    tool-call fragments with ``srvtoolu_`` ids, and from 1.110 whole, in the delta's
    ``provider_specific_fields["server_tool_calls"]`` (the list so far, on each update). Both become
    ``server`` fragments, so the caller is never asked to run them and they are never lost.
    """

    __slots__ = ("_scanned", "_server_ids", "_server_indexes", "_with_usage", "upstream")

    def __init__(self, upstream: Any) -> None:
        self.upstream = upstream
        self._server_indexes: set[int] = set()
        self._server_ids: set[str] = set()
        self._scanned = 0
        self._with_usage: list[Any] = []

    def usage(self) -> Usage | None:
        """The usage the provider reported during the stream, or None if it reported none.

        LiteLLM strips usage from the chunks it yields and, at the end, estimates it when the
        provider sent none; the chunks it keeps tell what the provider really sent. They are
        looked at as they come (see `_scan`), so the end of a long stream costs nothing extra.
        """
        self._scan()
        if not self._with_usage:
            return None
        from litellm.litellm_core_utils.streaming_handler import calculate_total_usage

        return read_usage(calculate_total_usage(chunks=self._with_usage))

    def _scan(self) -> None:
        kept = getattr(self.upstream, "chunks", None)
        if not isinstance(kept, list):
            return
        with_usage = self._with_usage
        for index in range(self._scanned, len(kept)):
            kept_chunk = kept[index]
            if getattr(kept_chunk, "usage", None) is not None:
                with_usage.append(kept_chunk)
        self._scanned = len(kept)

    def __call__(self, chunk: Any) -> Chunk:
        self._scan()
        out = Chunk(model=getattr(chunk, "model", None))
        choice = _choice0(chunk.choices)
        if choice is None:
            return out
        delta = choice.delta
        if delta is not None:
            out.text = delta.content
            out.reasoning = getattr(delta, "reasoning_content", None)
            out.refusal = getattr(delta, "refusal", None)
            calls = _tool_chunks(delta.tool_calls)
            if calls:
                self._mark_server_calls(calls)
            specific = getattr(delta, "provider_specific_fields", None)
            if specific and specific.get("server_tool_calls"):
                calls = [*(calls or ()), *self._new_server_calls(specific["server_tool_calls"])]
            out.tool_calls = calls or None
        if choice.finish_reason:
            upstream = self.upstream
            out.finish_reason = getattr(upstream, "received_finish_reason", None) or getattr(
                upstream, "intermittent_finish_reason", None
            )
        return out

    def _mark_server_calls(self, calls: list[ToolCallChunk]) -> None:
        for call in calls:
            if call.id and call.id.startswith(_SERVER_TOOL_ID):
                if call.index is not None:
                    self._server_indexes.add(call.index)
                call.server = True
            elif call.id is None and call.index in self._server_indexes:
                call.server = True
            elif call.index is not None:
                self._server_indexes.discard(call.index)

    def _new_server_calls(self, listed: Any) -> list[ToolCallChunk]:
        out = []
        for entry in _tool_chunks(listed) or ():
            if entry.id is None or entry.id in self._server_ids:
                continue
            self._server_ids.add(entry.id)
            entry.server, entry.index = True, None
            out.append(entry)
        return out


def end_of_stream_consumers(wrapper: Any) -> bool:
    """Whether anything uses what LiteLLM does once a stream has ended: success callbacks (global or
    per call), a response cache, or the budget it tracks."""
    lib = _litellm
    if lib is None:
        return True
    # "cache" is listed whenever a `litellm.Cache` exists, even one LiteLLM makes for itself (its
    # Vertex context caching module makes one at import, after any gemini/ call): it acts only
    # through `litellm.cache`, checked below.
    listed = (*lib.callbacks, *lib.success_callback, *lib._async_success_callback)
    if any(callback != "cache" for callback in listed):
        return True
    if lib.cache is not None or getattr(lib, "max_budget", None):
        return True
    logging_obj = getattr(wrapper, "logging_obj", None)
    return bool(
        getattr(logging_obj, "dynamic_success_callbacks", None)
        or getattr(logging_obj, "dynamic_async_success_callbacks", None)
    )


def stream_delivered(wrapper: Any) -> bool:
    """Whether LiteLLM has handed over everything a stream holds, with nothing left for cllm.

    After its trailing usage chunk, a LiteLLM stream only assembles the whole response again and
    runs its success logging (cost, callbacks, cache). When none of that has a consumer, reading
    on costs CPU for nothing; when something does, the stream is read to its end as usual.
    """
    return getattr(wrapper, "sent_stream_usage", False) is True and not end_of_stream_consumers(wrapper)


def non_stream_chunk(response: Any) -> Chunk:
    """A non-streaming LiteLLM `ModelResponse` as one core `Chunk`."""
    choice = _choice0(response.choices)
    out = Chunk(model=getattr(response, "model", None), usage=read_usage(getattr(response, "usage", None)))
    if choice is None:
        return out
    message = choice.message
    out.text = message.content
    out.reasoning = getattr(message, "reasoning_content", None)
    out.refusal = getattr(message, "refusal", None)
    out.tool_calls = _tool_chunks(message.tool_calls)
    out.finish_reason = choice.finish_reason
    return out


def response_model(requested: str, reported: str | None) -> str:
    """The model name a response carries: the provider's, unless it is only the requested name
    without its provider prefix (``gemma-3-270m`` for ``local/gemma-3-270m``), which streamed and
    non-streamed calls would otherwise spell differently."""
    if not reported:
        return requested
    _, slash, rest = requested.partition("/")
    if slash and reported in (rest, requested):
        return requested
    return reported


# (model, provider) pairs LiteLLM has no price for, per size of its price table (registering a
# model grows it). Looking one up again walks all of LiteLLM's fallback name patterns: about a
# millisecond per stream, for every stream of a self-hosted model.
_unpriced: set[tuple[str, str | None, int]] = set()


def cost(model: str, provider: str | None, usage: Usage | None) -> float | None:
    """USD cost from LiteLLM's price table, or None when the price is unknown."""
    if usage is None or (not usage.prompt_tokens and not usage.completion_tokens):
        return None
    if provider == "local" or model.startswith("local/"):
        return 0.0  # the embedded model runs on this machine
    lib = litellm()
    key = (model, provider, len(getattr(lib, "model_cost", ()) or ()))
    if key in _unpriced:
        return None
    try:
        prompt_cost, completion_cost = lib.cost_per_token(
            model=model,
            custom_llm_provider=provider,
            prompt_tokens=usage.prompt_tokens or 0,
            completion_tokens=usage.completion_tokens or 0,
        )
    except Exception:
        prompt_cost = completion_cost = 0.0
    total = float(prompt_cost) + float(completion_cost)
    if total > 0:
        return total
    if len(_unpriced) < 10_000:
        _unpriced.add(key)
    return None


# Counting a prompt this long in the model's tokens would hold the event loop for tens of milliseconds.
_COUNT_AT_MOST = 50_000


def _chars(messages: Sequence[Mapping[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif content is not None:
            total += len(json.dumps(content, default=str))
        if message.get("tool_calls"):
            total += len(json.dumps(message["tool_calls"], default=str))
    return total


def count_tokens(model: str, messages: Sequence[Mapping[str, Any]], tools: Any = None) -> int:
    """The prompt's size in the model's tokens where LiteLLM can count them cheaply, else characters/4.

    Each message's text is counted with the tokenizer LiteLLM picks for the model, plus a few
    tokens of framing per message: an estimate made before the call, settled after it with what
    the provider reports.
    """
    chars = _chars(messages) + (len(json.dumps(tools, default=str)) if tools else 0)
    count = _counter_for(model) if chars <= _COUNT_AT_MOST and _litellm is not None else None
    if count is None:
        return chars // 4 + 4 * len(messages)
    total = 4 * len(messages)
    try:
        for message in messages:
            content = message.get("content")
            if isinstance(content, str):
                total += count(content)
            elif content is not None:
                total += count(json.dumps(content, default=str))
            if message.get("tool_calls"):
                total += count(json.dumps(message["tool_calls"], default=str))
        if tools:
            total += count(json.dumps(tools, default=str))
    except Exception:
        return chars // 4 + 4 * len(messages)
    return total


_counters: dict[str, Callable[[str], int] | None] = {}


def _counter_for(model: str) -> Callable[[str], int] | None:
    if model not in _counters:
        _counters[model] = text_counter(model)
    return _counters[model]


def text_counter(model: str) -> Callable[[str], int] | None:
    """Counts a text's tokens with the tokenizer LiteLLM picks for ``model`` (None when it has none)."""
    litellm()
    from litellm.utils import _select_tokenizer

    try:
        selected = _select_tokenizer(model)
    except Exception:
        return None
    tokenizer: Any = selected.get("tokenizer")
    if tokenizer is None:
        return None
    if selected.get("type") == "huggingface_tokenizer":
        return lambda text: len(tokenizer.encode(text).ids)
    return lambda text: len(tokenizer.encode(text, disallowed_special=()))


def retry_after(exc: BaseException) -> float | None:
    """The seconds a provider's 429 asks to wait (``Retry-After`` / ``retry-after-ms``), when it says."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 6:
        seen.add(id(current))
        status = getattr(current, "status_code", None)
        if status == 429:
            for headers in _headers_of(current):
                seconds = _retry_after_value(headers)
                if seconds is not None:
                    return seconds
            return None
        original = getattr(current, "original_exception", None)
        current = (
            original if isinstance(original, BaseException) else current.__cause__ or current.__context__
        )
    return None


def _headers_of(exc: BaseException) -> list[Any]:
    found = []
    for name in ("litellm_response_headers", "headers"):
        value = getattr(exc, name, None)
        if value:
            found.append(value)
    response = getattr(exc, "response", None)
    with contextlib.suppress(Exception):
        if response is not None and response.headers:
            found.append(response.headers)
    return found


def _retry_after_value(headers: Any) -> float | None:
    def get(name: str) -> Any:
        with contextlib.suppress(Exception):
            value = headers.get(name)
            if value is None:
                value = headers.get(name.title())
            return value
        return None

    millis = get("retry-after-ms")
    with contextlib.suppress(TypeError, ValueError):
        if millis is not None and float(millis) >= 0:
            return float(millis) / 1000
    seconds = get("retry-after")
    if seconds is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        value = float(seconds)
        return value if value >= 0 else None
    from email.utils import parsedate_to_datetime

    with contextlib.suppress(TypeError, ValueError, IndexError):
        import datetime

        when = parsedate_to_datetime(str(seconds))
        return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
    return None


# -- errors ---------------------------------------------------------------------------------------

_PREFIX = re.compile(r"^(?:litellm\.)?\w*(?:Error|Exception|Timeout)\s*[:\-]\s*")


# What LiteLLM adds to the provider's message: advice about its own debugging switches and proxy,
# links to its docs and tracker, the model groups of its router.
_BOILERPLATE = [
    re.compile(p, re.IGNORECASE | re.DOTALL)
    for p in (
        r"\s*All fallback attempts failed\.",
        r"\s*Enable verbose logging with `?litellm\.set_verbose=True`?(?: for details)?\.?",
        r"\s*LiteLLM\.Info: If you need to debug this error.*?(?:\.|$)(?=\s|$)",
        r"\s*If you need to debug this error, use `litellm\._turn_on_debug\(\)'?\.?",
        r"\s*Give Feedback / Get Help: \S+",
        r"\s*Learn more: https?://docs\.litellm\.ai\S*",
        r"\s*LiteLLM Retried: \d+ times?,? ?",
        r"\s*LiteLLM Max Retries: \d+",
        r"\s*Received Model Group=\S*",
        r"\s*Available Model Group Fallbacks=\S*",
        r",? ?or for proxy:? `?litellm_settings: ?drop_params: ?true`?",
        r"\s*Pass model as E\.g\. For 'Huggingface' inference endpoints.*",
    )
]
_PROVIDER_NOT_PROVIDED = re.compile(
    r"LLM Provider NOT provided\..*?You passed model=(?P<model>\S+?)(?:\s|$).*", re.IGNORECASE | re.DOTALL
)
UNKNOWN_PROVIDER = "no provider known for model {model!r}: name it as provider/model (openai/gpt-4o)"
"""The message for a model name LiteLLM cannot route (``gpt4o``, ``nonsense/xyz``)."""


def drop_boilerplate(message: str) -> str:
    """A LiteLLM error message with the provider's words only: LiteLLM's advice about its own
    switches, links and router details removed."""
    if match := _PROVIDER_NOT_PROVIDED.search(message):
        return UNKNOWN_PROVIDER.format(model=match.group("model").rstrip(".,"))
    for pattern in _BOILERPLATE:
        message = pattern.sub("", message)
    message = re.sub(r"\.{2,}(?=\s|$)", ".", message.strip())
    return message.strip()


def clean_message(exc: BaseException) -> str:
    """The provider's message without LiteLLM's repeated class-name prefixes and boilerplate."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = str(message).strip()
    for _ in range(4):
        stripped = _PREFIX.sub("", message, count=1)
        if stripped == message:
            break
        message = stripped
    return drop_boilerplate(message) or type(exc).__name__


def root_cause(exc: BaseException) -> BaseException:
    """The exception under LiteLLM's mid-stream wrapper, when there is one."""
    original = getattr(exc, "original_exception", None)
    return original if isinstance(original, BaseException) else exc


def _error_fields(exc: BaseException) -> tuple[str | None, str | None]:
    """The provider's own error ``type`` and ``code``, from the error body it sent, when it sent one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 6:
        seen.add(id(current))
        body = getattr(current, "body", None)
        if isinstance(body, dict):
            error = body.get("error", body)
            if isinstance(error, dict) and (error.get("type") or error.get("code")):
                kind, code = error.get("type"), error.get("code")
                return (str(kind) if kind else None), (str(code) if code is not None else None)
        original = getattr(current, "original_exception", None)
        current = (
            original if isinstance(original, BaseException) else current.__cause__ or current.__context__
        )
    return None, None


_MISSING_KEY = re.compile(r"missing credentials|api_key client option must be set|missing .*api.?key", re.I)


def _missing_key_message(model: str, message: str) -> str | None:
    """When the call failed for want of an API key: a message naming the variable to set."""
    if not _MISSING_KEY.search(message):
        return None
    try:
        missing = litellm().validate_environment(model).get("missing_keys") or []
    except Exception:
        missing = []
    if missing:
        return f"no API key for {model}: set {' or '.join(missing)} (or pass api_key)"
    return f"no API key for {model}: {message}"


def provider_error(exc: BaseException, model: str) -> CllmError:
    """A LiteLLM (or httpx/aiohttp) exception raised before any output, as a `ProviderError`."""
    if isinstance(exc, CllmError):
        return exc
    cause = root_cause(exc)
    status = getattr(exc, "status_code", None) or getattr(cause, "status_code", None)
    lib = _litellm
    kind = type(exc).__name__
    if lib is not None and isinstance(exc, lib.exceptions.MidStreamFallbackError):
        kind = type(cause).__name__
        status = getattr(cause, "status_code", None)
    message = clean_message(cause if cause is not exc else exc)
    error_type, code = _error_fields(exc)
    if (missing := _missing_key_message(model, message)) is not None:
        # LiteLLM reports it as a 500 from the provider; it is the caller's configuration.
        message, status, kind = missing, 401, "AuthenticationError"
    return ProviderError(
        message,
        status_code=int(status) if isinstance(status, int) else None,
        provider=getattr(exc, "llm_provider", None),
        model=model,
        kind=kind,
        error_type=error_type,
        code=code,
        retry_after=_retry_after(exc),
    )


def _retry_after(exc: BaseException) -> float | None:
    """The provider's ``Retry-After``, from the response headers LiteLLM keeps on its exceptions."""
    from cllm.retry.policy import parse_retry_after

    for current in (exc, root_cause(exc)):
        headers = getattr(current, "litellm_response_headers", None)
        if headers is None:
            headers = getattr(getattr(current, "response", None), "headers", None)
        if headers is not None and hasattr(headers, "items"):
            with contextlib.suppress(Exception):
                seconds = parse_retry_after(dict(headers.items()))
                if seconds is not None:
                    return seconds
    return None


def accepts_prefix(request: Request) -> bool:
    """Whether the request's model continues a trailing assistant message (an assistant prefill),
    as LiteLLM's model table says; cllm's local models continue from any prefix."""
    model = request.model
    if model.startswith("local/") or request.provider == "local":
        return True
    lib = litellm()
    check = getattr(getattr(lib, "utils", None), "supports_assistant_prefill", None)
    with contextlib.suppress(Exception):
        if check is not None:  # LiteLLM 1.110 on
            return bool(check(model=model, custom_llm_provider=request.provider))
    try:
        info = lib.get_model_info(model, custom_llm_provider=request.provider)
    except Exception:
        return False
    return info.get("supports_assistant_prefill") is True
