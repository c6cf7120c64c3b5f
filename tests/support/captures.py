"""The real streaming captures in ``../shared/fixtures/streams`` and what each one says.

Every capture becomes a :class:`Capture`: the bytes to put on the wire, how to point LiteLLM at a local
server to replay them, and :class:`Expected` values read from the capture itself by the small,
independent parsers below (one per wire format). Those parsers know nothing of LiteLLM or cllm, so a
test can hold either of them to what the provider actually sent.

The fixtures directory is ``<repo>/../shared/fixtures/streams``; ``CLLM_FIXTURES`` overrides it.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from .replay_server import Piece, ScriptedResponse, sse_events, stream_response

__all__ = [
    "API_KEY",
    "ROUTES",
    "SKIP_JSON_ARRAY",
    "Capture",
    "Expected",
    "ExpectedToolCall",
    "ExpectedUsage",
    "Route",
    "WireFormat",
    "all_captures",
    "capture",
    "fixtures_dir",
    "parse_anthropic",
    "parse_gemini",
    "parse_openai",
    "sse_data",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES_ENV = "CLLM_FIXTURES"
API_KEY = "sk-test"

WireFormat = Literal["openai", "anthropic", "gemini"]


def fixtures_dir() -> Path:
    """Where the capture files are: ``$CLLM_FIXTURES`` or ``<repo>/../shared/fixtures/streams``."""
    override = os.environ.get(FIXTURES_ENV)
    return Path(override) if override else REPO_ROOT.parent / "shared" / "fixtures" / "streams"


# --------------------------------------------------------------------------------------------------
# Expectations


@dataclass(frozen=True)
class ExpectedToolCall:
    """A tool call as the capture spells it.

    ``arguments`` is the parsed JSON of the joined argument text, or that raw text when it is not
    valid JSON (e.g. a stream cut off by max_tokens). ``raw_arguments`` is always the joined text (for
    Gemini, whose arguments arrive as objects, their ``json.dumps``).
    """

    name: str
    arguments: Any
    raw_arguments: str
    id: str | None = None


@dataclass(frozen=True)
class ExpectedUsage:
    """Token counts exactly as the wire reports them (last report wins).

    OpenAI: ``usage`` (or Groq's ``x_groq.usage``). Anthropic: ``input_tokens`` / ``output_tokens`` /
    ``cache_read_input_tokens`` from message_start, overridden by message_delta. Gemini:
    ``promptTokenCount`` / ``candidatesTokenCount`` (thoughts not included) / ``totalTokenCount`` /
    ``thoughtsTokenCount`` / ``cachedContentTokenCount``.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None


@dataclass(frozen=True)
class Expected:
    """What the capture contains, for choice 0 only.

    ``text`` is the visible answer text; ``reasoning`` the reasoning/thinking text; ``refusal`` OpenAI's
    ``delta.refusal`` text (kept apart from ``text``). ``server_tool_calls`` are Anthropic
    ``server_tool_use`` blocks, which the provider runs itself. ``finish_reason`` is the provider's raw
    value (``None`` if the capture never gives one); ``usage`` is ``None`` if it reports none.
    """

    text: str = ""
    reasoning: str = ""
    refusal: str = ""
    tool_calls: tuple[ExpectedToolCall, ...] = ()
    server_tool_calls: tuple[ExpectedToolCall, ...] = ()
    finish_reason: str | None = None
    usage: ExpectedUsage | None = None
    errors: tuple[Any, ...] = ()

    @property
    def tool_names(self) -> list[str]:
        return [call.name for call in self.tool_calls]


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sse_data(body: bytes) -> Iterator[tuple[str | None, str]]:
    """Yield ``(event name, data)`` for each SSE event, following the SSE line rules."""
    for raw_event in sse_events(body):
        name: str | None = None
        data: list[str] = []
        for line in re.split(r"\r\n|\r|\n", raw_event.decode("utf-8")):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        if data:
            yield name, "\n".join(data)


@dataclass
class _OpenAICall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def _openai_call(call: _OpenAICall) -> ExpectedToolCall:
    raw = "".join(call.arguments)
    return ExpectedToolCall(call.name, _arguments(raw), raw, call.id)


def parse_openai(payloads: Iterable[str]) -> Expected:
    """Chat-completions chunks (``data:`` payloads, ``[DONE]`` ignored).

    Tool-call deltas belong to the call with the same ``index``; without an index, to the call with the
    same non-empty id, else they start a new call. The id and name are taken once (providers that repeat
    them on every delta would otherwise read as ``namename``); arguments are concatenated.
    """
    text: list[str] = []
    reasoning: list[str] = []
    refusal: list[str] = []
    calls: list[_OpenAICall] = []
    by_index: dict[int, _OpenAICall] = {}
    finish: str | None = None
    usage: ExpectedUsage | None = None
    errors: list[Any] = []
    for payload in payloads:
        if payload.strip() == "[DONE]":
            continue
        chunk = json.loads(payload)
        if "error" in chunk:
            errors.append(chunk["error"])
        raw_usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
        if isinstance(raw_usage, dict):
            completion_details = raw_usage.get("completion_tokens_details") or {}
            prompt_details = raw_usage.get("prompt_tokens_details") or {}
            usage = ExpectedUsage(
                prompt_tokens=_int(raw_usage.get("prompt_tokens")),
                completion_tokens=_int(raw_usage.get("completion_tokens")),
                total_tokens=_int(raw_usage.get("total_tokens")),
                reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
                cached_tokens=_int(prompt_details.get("cached_tokens")),
            )
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            refusal.append(delta.get("refusal") or "")
            # DeepSeek says reasoning_content, Groq/OpenRouter say reasoning; never both in one delta here.
            reasoning.append(delta.get("reasoning_content") or delta.get("reasoning") or "")
            for tool_delta in delta.get("tool_calls") or ():
                index = tool_delta.get("index")
                call_id = tool_delta.get("id") or None
                call = by_index.get(index) if index is not None else None
                if call is None and index is None and call_id is not None:
                    call = next((c for c in calls if c.id == call_id), None)
                if call is None:
                    call = _OpenAICall()
                    calls.append(call)
                    if index is not None:
                        by_index[index] = call
                function = tool_delta.get("function") or {}
                call.id = call.id or call_id
                call.name = call.name or (function.get("name") or "")
                call.arguments.append(function.get("arguments") or "")
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    return Expected(
        text="".join(text),
        reasoning="".join(reasoning),
        refusal="".join(refusal),
        tool_calls=tuple(_openai_call(call) for call in calls),
        finish_reason=finish,
        usage=usage,
        errors=tuple(errors),
    )


@dataclass
class _AnthropicBlock:
    type: str
    id: str | None
    name: str
    start_input: Any
    partial_json: list[str] = field(default_factory=list)

    def call(self) -> ExpectedToolCall:
        raw = "".join(self.partial_json)
        if not raw.strip():
            # No input deltas (or only ""): the input is the one given in content_block_start.
            return ExpectedToolCall(self.name, self.start_input, json.dumps(self.start_input), self.id)
        return ExpectedToolCall(self.name, _arguments(raw), raw, self.id)


def parse_anthropic(payloads: Iterable[str]) -> Expected:
    """Messages-API events (the ``data:`` payloads; the event name is repeated in ``type``)."""
    text: list[str] = []
    reasoning: list[str] = []
    blocks: dict[int, _AnthropicBlock] = {}
    order: list[_AnthropicBlock] = []
    finish: str | None = None
    counts: dict[str, int | None] = {}
    errors: list[Any] = []
    for payload in payloads:
        event = json.loads(payload)
        kind = event.get("type")
        if kind == "message_start":
            counts.update(_anthropic_counts(event["message"].get("usage") or {}))
        elif kind == "content_block_start":
            block = event["content_block"]
            if block["type"] == "text":
                text.append(block.get("text") or "")
            elif block["type"] == "thinking":
                reasoning.append(block.get("thinking") or "")
            elif block["type"] in ("tool_use", "server_tool_use"):
                state = _AnthropicBlock(block["type"], block.get("id"), block["name"], block.get("input", {}))
                blocks[event["index"]] = state
                order.append(state)
        elif kind == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                text.append(delta["text"])
            elif delta["type"] == "thinking_delta":
                reasoning.append(delta["thinking"])
            elif delta["type"] == "input_json_delta":
                blocks[event["index"]].partial_json.append(delta["partial_json"])
        elif kind == "message_delta":
            finish = event["delta"].get("stop_reason") or finish
            counts.update(_anthropic_counts(event.get("usage") or {}))
        elif kind == "error":
            errors.append(event.get("error"))
    usage = None
    if counts:
        usage = ExpectedUsage(
            prompt_tokens=counts.get("input_tokens"),
            completion_tokens=counts.get("output_tokens"),
            cached_tokens=counts.get("cache_read_input_tokens"),
        )
    return Expected(
        text="".join(text),
        reasoning="".join(reasoning),
        tool_calls=tuple(b.call() for b in order if b.type == "tool_use"),
        server_tool_calls=tuple(b.call() for b in order if b.type == "server_tool_use"),
        finish_reason=finish,
        usage=usage,
        errors=tuple(errors),
    )


def _anthropic_counts(usage: dict[str, Any]) -> dict[str, int | None]:
    keys = ("input_tokens", "output_tokens", "cache_read_input_tokens")
    return {key: _int(usage[key]) for key in keys if _int(usage.get(key)) is not None}


_JSON_PATH_STEP = re.compile(r"\.([A-Za-z_$][\w$-]*)|\[(\d+)\]|\['([^']*)'\]")


def _set_json_path(root: dict[str, Any], path: str, value: Any, *, append: bool) -> None:
    """Set (or, for streamed strings, append to) ``root`` at a ``$.a.b[0].c`` path, creating containers."""
    steps: list[str | int] = []
    for match in _JSON_PATH_STEP.finditer(path, pos=1 if path.startswith("$") else 0):
        name, number, quoted = match.groups()
        steps.append(int(number) if number is not None else (name if name is not None else quoted))
    node: Any = root
    for step, following in itertools.pairwise(steps):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(step, int):
            while len(node) <= step:
                node.append(None)
            if node[step] is None:
                node[step] = empty
        else:
            node.setdefault(step, empty)
        node = node[step]
    last = steps[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
        node[last] = (node[last] or "") + value if append else value
    else:
        node[last] = (node.get(last) or "") + value if append else value


def _apply_partial_args(args: dict[str, Any], partial_args: Iterable[dict[str, Any]]) -> None:
    for partial in partial_args:
        path = partial["jsonPath"]
        if "stringValue" in partial:
            _set_json_path(args, path, partial["stringValue"], append=True)
        elif "numberValue" in partial:
            _set_json_path(args, path, partial["numberValue"], append=False)
        elif "boolValue" in partial:
            _set_json_path(args, path, partial["boolValue"], append=False)
        elif "nullValue" in partial:
            _set_json_path(args, path, None, append=False)


def parse_gemini(responses: Iterable[dict[str, Any]]) -> Expected:
    """GenerateContentResponse objects (one per SSE event, or the elements of a JSON-array body).

    ``thought: true`` parts are reasoning. A ``functionCall`` with ``args`` is a whole call; Vertex's
    streamed form opens a call with ``{name, willContinue: true}``, fills it with ``partialArgs``
    (``jsonPath`` + value, strings appended) and closes it with a ``functionCall`` without
    ``willContinue``.
    """
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[tuple[str, dict[str, Any], str | None]] = []
    open_call: tuple[str, dict[str, Any], str | None] | None = None
    finish: str | None = None
    usage: ExpectedUsage | None = None
    errors: list[Any] = []
    for response in responses:
        if "error" in response:
            errors.append(response["error"])
        meta = response.get("usageMetadata")
        if isinstance(meta, dict):
            usage = ExpectedUsage(
                prompt_tokens=_int(meta.get("promptTokenCount")),
                completion_tokens=_int(meta.get("candidatesTokenCount")),
                total_tokens=_int(meta.get("totalTokenCount")),
                reasoning_tokens=_int(meta.get("thoughtsTokenCount")),
                cached_tokens=_int(meta.get("cachedContentTokenCount")),
            )
        for candidate in response.get("candidates") or ():
            if candidate.get("index", 0) != 0:
                continue
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "text" in part:
                    (reasoning if part.get("thought") else text).append(part["text"])
                call = part.get("functionCall")
                if call is None:
                    continue
                if open_call is not None and "name" not in call:
                    _apply_partial_args(open_call[1], call.get("partialArgs") or ())
                    if not call.get("willContinue"):
                        calls.append(open_call)
                        open_call = None
                elif call.get("willContinue"):
                    open_call = (call["name"], dict(call.get("args") or {}), call.get("id"))
                    _apply_partial_args(open_call[1], call.get("partialArgs") or ())
                else:
                    calls.append((call["name"], call.get("args") or {}, call.get("id")))
            if candidate.get("finishReason"):
                finish = candidate["finishReason"]
    if open_call is not None:
        calls.append(open_call)
    return Expected(
        text="".join(text),
        reasoning="".join(reasoning),
        tool_calls=tuple(ExpectedToolCall(name, args, json.dumps(args), id_) for name, args, id_ in calls),
        finish_reason=finish,
        usage=usage,
        errors=tuple(errors),
    )


# --------------------------------------------------------------------------------------------------
# Captures


@dataclass(frozen=True)
class Route:
    """How LiteLLM reaches a vendor: model prefix, where ``api_base`` points, what path it then requests."""

    prefix: str
    base_path: str
    request_path: str
    options: tuple[tuple[str, Any], ...] = ()


# The LiteLLM provider a user of each vendor would pick. Every OpenAI-compatible one also replays
# unchanged through "openai/" (checked); Ollama's capture is from its OpenAI-compatible endpoint, which
# "ollama_chat/" does not speak. "vertex_ai/" needs google-auth and Google credentials before it sends
# anything (even with api_base), so the Vertex capture goes through "gemini/", which shares LiteLLM's
# Gemini stream parser (ModelResponseIterator in vertex_and_google_ai_studio_gemini.py).
_OPENAI_ROUTE = Route("openai", "/v1", "/v1/chat/completions")
_GEMINI_ROUTE = Route("gemini", "/v1beta", "/v1beta/models/{model}:streamGenerateContent")
ROUTES: dict[str, Route] = {
    "openai": _OPENAI_ROUTE,
    "ollama": _OPENAI_ROUTE,
    "gemini-openai-compat": _OPENAI_ROUTE,
    "azure-openai": Route(
        "azure", "", "/openai/deployments/{model}/chat/completions", (("api_version", "2024-10-21"),)
    ),
    "deepseek": Route("deepseek", "/v1", "/v1/chat/completions"),
    "groq": Route("groq", "/openai/v1", "/openai/v1/chat/completions"),
    "mistral": Route("mistral", "/v1", "/v1/chat/completions"),
    "openrouter-novita": Route("openrouter", "/api/v1", "/api/v1/chat/completions"),
    "vllm-nim": Route("nvidia_nim", "/v1", "/v1/chat/completions"),
    "anthropic": Route("anthropic", "", "/v1/messages"),
    "gemini": _GEMINI_ROUTE,
    "vertex-gemini": _GEMINI_ROUTE,
}


@dataclass(frozen=True)
class Capture:
    """One capture file, ready to replay.

    ``wire_format`` is the protocol on the wire (``"openai"`` for every OpenAI-compatible vendor);
    ``vendor`` is the file's prefix (``"deepseek"``, ``"vertex-gemini"``, ...). ``wire`` is the HTTP body
    to serve: the file itself, or for ``.chunks.txt`` the SSE body rebuilt from its payload lines.
    ``request_path`` is the path LiteLLM requests for it (for :meth:`ReplayServer.add` ``path=``).
    ``skip_reason`` says why LiteLLM's provider code cannot carry the capture at all, if it cannot.
    """

    name: str
    path: Path
    vendor: str
    wire_format: WireFormat
    model: str
    wire: bytes
    content_type: str
    expected: Expected
    route: Route
    skip_reason: str | None = None

    @property
    def provider(self) -> WireFormat:
        """Alias of ``wire_format``."""
        return self.wire_format

    @property
    def litellm_model(self) -> str:
        return f"{self.route.prefix}/{self.model}"

    @property
    def request_path(self) -> str:
        return self.route.request_path.format(model=self.model)

    @property
    def is_sse(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def pieces(self) -> list[bytes]:
        """The body split where the provider flushed it: one SSE event per piece (JSON arrays: per line)."""
        if self.is_sse:
            return sse_events(self.wire)
        return self.wire.splitlines(keepends=True)

    def response(
        self, *, delay: float = 0.0, pieces: Iterable[bytes | Piece] | None = None, **options: Any
    ) -> ScriptedResponse:
        """A scripted response replaying this capture (``options`` go to ``stream_response``)."""
        chosen = self.pieces() if pieces is None else pieces
        return stream_response(chosen, delay=delay, content_type=self.content_type, **options)

    def litellm_kwargs(self, server_url: str, *, tools: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``litellm.(a)completion`` that send this capture's request to
        ``server_url`` (``http://127.0.0.1:PORT``); add ``messages`` and ``stream=True``.

        No provider needs ``tools=`` to return tool calls. ``tools=True`` adds a schema per expected
        tool; note that LiteLLM 1.106 then imports the optional ``mcp`` package and fails without it
        (pass ``_skip_mcp_handler=True`` to avoid that).
        """
        kwargs: dict[str, Any] = {
            "model": self.litellm_model,
            "api_base": server_url + self.route.base_path,
            "api_key": API_KEY,
            # LiteLLM adds include_usage itself only for OpenAI's own URL; for Anthropic and Gemini it
            # turns the usage kept in _hidden_params into a trailing usage chunk. Never sent upstream
            # for those two.
            "stream_options": {"include_usage": True},
            **dict(self.route.options),
        }
        if tools:
            kwargs["tools"] = [_tool_schema(name) for name in dict.fromkeys(self.expected.tool_names)]
        return kwargs


def _tool_schema(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": name, "parameters": {"type": "object", "properties": {}}},
    }


SKIP_JSON_ARRAY = (
    "Gemini JSON-array body (streamGenerateContent without alt=sse): LiteLLM 1.106 always requests "
    "?alt=sse for gemini/ and vertex_ai/ streams; served this body anyway, it yields no content and "
    "finish_reason 'stop' without an error"
)


def _wire_format(vendor: str) -> WireFormat:
    if vendor.startswith("anthropic"):
        return "anthropic"
    if vendor in ("gemini", "vertex-gemini"):
        return "gemini"
    return "openai"


def _load(path: Path) -> Capture:
    name = path.name.split(".", 1)[0]
    vendor = name.split("__", 1)[0]
    suffix = "".join(path.suffixes)
    fmt = _wire_format(vendor)
    raw = path.read_bytes()
    skip_reason: str | None = None
    if suffix == ".chunks.txt":
        lines = [line for line in raw.decode("utf-8").splitlines() if line.strip()]
        if fmt == "openai":
            wire = "".join(f"data: {line}\n\n" for line in lines) + "data: [DONE]\n\n"
        elif fmt == "anthropic":
            wire = "".join(f"event: {json.loads(line)['type']}\ndata: {line}\n\n" for line in lines)
        else:
            wire = "".join(f"data: {line}\r\n\r\n" for line in lines)
        body, content_type, payloads = wire.encode("utf-8"), "text/event-stream", lines
    elif suffix == ".json":
        if fmt != "gemini":
            raise ValueError(f"unexpected JSON-array capture {path.name}")
        body, content_type = raw, "application/json"
        payloads = [json.dumps(item) for item in json.loads(raw)]
        skip_reason = SKIP_JSON_ARRAY
    else:
        body, content_type = raw, "text/event-stream"
        payloads = [data for _, data in sse_data(raw)]

    chunks = [json.loads(p) for p in payloads if p.strip() != "[DONE]"]
    if fmt == "openai":
        expected = parse_openai(payloads)
        model = next((c["model"] for c in chunks if c.get("model")), "unknown")
    elif fmt == "anthropic":
        expected = parse_anthropic(payloads)
        model = next(c["message"]["model"] for c in chunks if c.get("type") == "message_start")
    else:
        expected = parse_gemini(chunks)
        model = next((c["modelVersion"] for c in chunks if c.get("modelVersion")), "gemini-unknown")
    return Capture(
        name=name,
        path=path,
        vendor=vendor,
        wire_format=fmt,
        model=model,
        wire=body,
        content_type=content_type,
        expected=expected,
        route=ROUTES[vendor],
        skip_reason=skip_reason,
    )


@cache
def all_captures() -> tuple[Capture, ...]:
    """Every capture in :func:`fixtures_dir`, sorted by name."""
    directory = fixtures_dir()
    paths = sorted(p for p in directory.iterdir() if p.is_file() and p.name != "SOURCES.md")
    return tuple(_load(path) for path in paths)


def capture(name: str) -> Capture:
    """The capture called ``name`` (the file name without its extension)."""
    for item in all_captures():
        if item.name == name:
            return item
    raise KeyError(name)
