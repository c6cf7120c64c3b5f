"""An ADK `LlmRequest` as OpenAI-format messages and LiteLLM options, the way ADK's `LiteLlm` sends it.

ADK's own converters are private and change between versions, so the mapping is written here against
the public `google.genai` types: system instruction, text / image / function-call / function-response
parts, function declarations, generation settings, a response schema (strict ``json_schema``), the
tool-calling mode and the thinking settings.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from typing import Any

from google.adk.models.llm_request import LlmRequest
from google.genai import types
from pydantic import BaseModel

from cllm import _provider

__all__ = ["build_messages", "build_options"]

MISSING_TOOL_RESULT = (
    "Error: Missing tool result (tool execution may have been interrupted before a response was recorded)."
)
_FALLBACK_PROMPT = "Handle the requests as specified in the System Instruction."
_STRUCTURED_TYPES = {"json_object", "json_schema"}
_MAX_TOOL_DESCRIPTION = 1024

# GenerateContentConfig field -> LiteLLM (OpenAI) parameter.
_GENERATION_PARAMS = {
    "temperature": "temperature",
    "max_output_tokens": "max_completion_tokens",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "stop_sequences": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


def _json_text(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return str(value)


# -- messages -------------------------------------------------------------------------------------


def system_text(config: types.GenerateContentConfig | None) -> str | None:
    instruction = config.system_instruction if config is not None else None
    if instruction is None:
        return None
    if isinstance(instruction, str):
        return instruction
    if isinstance(instruction, types.Content):
        texts = [part.text for part in instruction.parts or () if part.text]
        return "\n".join(texts) if texts else None
    return None


def _has_payload(part: types.Part) -> bool:
    return bool(
        part.text or part.inline_data or part.file_data or part.function_call or part.function_response
    )


def ensure_user_turn(request: LlmRequest) -> None:
    """What `LiteLlm` does before sending: the last user turn must say something."""
    for content in reversed(request.contents):
        if content.role == "user":
            parts = list(content.parts or [])
            if not any(_has_payload(part) for part in parts):
                parts.append(types.Part.from_text(text=_FALLBACK_PROMPT))
                content.parts = parts
            return
    request.contents.append(types.Content(role="user", parts=[types.Part.from_text(text=_FALLBACK_PROMPT)]))


def _media_block(blob: types.Blob) -> dict[str, Any]:
    mime = (blob.mime_type or "").split(";")[0].strip().lower()
    data = blob.data or b""
    if mime.startswith("text/"):
        return {"type": "text", "text": data.decode("utf-8", errors="replace")}
    encoded = base64.b64encode(data).decode("ascii")
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{encoded}"}}
    if mime.startswith("audio/"):
        return {"type": "input_audio", "input_audio": {"data": encoded, "format": mime.split("/", 1)[1]}}
    return {"type": "file", "file": {"file_data": f"data:{mime};base64,{encoded}"}}


def _content(parts: list[types.Part]) -> str | list[dict[str, Any]] | None:
    """One text part is a string; anything else a list of content blocks."""
    if not parts:
        return None
    if len(parts) == 1 and parts[0].text:
        return parts[0].text
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if part.text:
            blocks.append({"type": "text", "text": part.text})
        elif part.inline_data is not None and part.inline_data.data:
            blocks.append(_media_block(part.inline_data))
        elif part.file_data is not None and part.file_data.file_uri:
            uri = part.file_data.file_uri
            if (part.file_data.mime_type or "").startswith("image/") or uri.startswith("http"):
                blocks.append({"type": "image_url", "image_url": {"url": uri}})
            else:
                blocks.append({"type": "file", "file": {"file_id": uri}})
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return str(blocks[0]["text"])
    return blocks or None


def _model_message(parts: list[types.Part]) -> dict[str, Any]:
    tool_calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    rest: list[types.Part] = []
    for part in parts:
        call = part.function_call
        if call is not None:
            if not call.name:
                raise ValueError("a function_call part without a name cannot be sent to the model")
            tool_calls.append(
                {
                    "type": "function",
                    "id": call.id or "",
                    "function": {"name": call.name, "arguments": _json_text(call.args)},
                }
            )
        elif part.thought:
            if part.text:
                reasoning.append(part.text)
        else:
            rest.append(part)
    content = _content(rest)
    if isinstance(content, list):
        texts = [str(block["text"]) for block in content if block["type"] == "text"]
        if texts:
            content = "\n".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": content, "tool_calls": tool_calls or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return message


def _messages_of(content: types.Content) -> list[dict[str, Any]]:
    parts = list(content.parts or [])
    if not parts:
        return []
    tool_messages = []
    others = []
    for part in parts:
        response = part.function_response
        if response is not None:
            value = response.response
            tool_messages.append(
                {
                    "role": "tool",
                    "tool_call_id": response.id or "",
                    "content": value if isinstance(value, str) else _json_text(value),
                }
            )
        else:
            others.append(part)
    if tool_messages:
        if not others:
            return tool_messages
        return tool_messages + _messages_of(types.Content(role=content.role, parts=others))
    if content.role in ("model", "assistant"):
        return [_model_message(parts)]
    return [{"role": "user", "content": _content([part for part in parts if not part.thought])}]


def _fill_missing_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Providers reject a tool call not answered before the next message: answer it with an error."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []

    def flush() -> None:
        out.extend({"role": "tool", "tool_call_id": i, "content": MISSING_TOOL_RESULT} for i in pending)
        pending.clear()

    for message in messages:
        role = message.get("role")
        if pending and role != "tool":
            flush()
        if role == "assistant":
            pending[:] = [c["id"] for c in message.get("tool_calls") or () if c.get("id")]
        elif role == "tool" and message.get("tool_call_id") in pending:
            pending.remove(message["tool_call_id"])
        out.append(message)
    flush()
    return out


def build_messages(request: LlmRequest) -> list[dict[str, Any]]:
    """The OpenAI-format conversation for a request."""
    messages: list[dict[str, Any]] = []
    for content in request.contents or ():
        messages.extend(_messages_of(content))
    system = system_text(request.config)
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return _fill_missing_tool_results(messages)


# -- schemas and tools ----------------------------------------------------------------------------

_RENAMES = {
    "any_of": "anyOf",
    "ref": "$ref",
    "defs": "$defs",
    "additional_properties": "additionalProperties",
}


def _schema_dict(schema: Any) -> Any:
    """A `types.Schema` (or a JSON-schema dict) as plain JSON Schema: lower-case types, ``$ref``/``$defs``."""
    if isinstance(schema, types.Schema):
        schema = schema.model_dump(by_alias=True, exclude_none=True, mode="json")
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        key = _RENAMES.get(key, key)
        if isinstance(value, str) and key == "$ref" and value.startswith("#/defs"):
            value = "#/$defs" + value[len("#/defs") :]
        out[key] = value
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = kind.lower()
    elif isinstance(kind, list):
        out["type"] = [k.lower() if isinstance(k, str) else k for k in kind]
    if isinstance(out.get("enum"), list):
        out["enum"] = [v for v in out["enum"] if v is not None]
    for key in ("properties", "$defs", "definitions"):
        if isinstance(out.get(key), Mapping):
            out[key] = {name: _schema_dict(sub) for name, sub in out[key].items()}
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [_schema_dict(sub) for sub in out[key]]
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), Mapping | types.Schema):
            out[key] = _schema_dict(out[key])
    return out


def _strict(schema: Any) -> None:
    """OpenAI's strict structured outputs: closed objects, every property required, bare ``$ref``s."""
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        for key in [k for k in schema if k != "$ref"]:
            del schema[key]
        return
    if schema.get("type") == "object" and "properties" in schema:
        schema["additionalProperties"] = False
        schema["required"] = sorted(schema["properties"])
    for sub in (*schema.get("$defs", {}).values(), *schema.get("properties", {}).values()):
        _strict(sub)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, ()):
            _strict(sub)
    if isinstance(schema.get("items"), dict):
        _strict(schema["items"])


_TYPE_LABELS = {
    "object": "a JSON object",
    "array": "a JSON array",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "null": "a null value",
}


def _description(declaration: types.FunctionDeclaration) -> str:
    """The description, with the result's schema appended (chat tools have no field for it)."""
    description = declaration.description or ""
    if declaration.response_json_schema:
        result = _schema_dict(copy.deepcopy(declaration.response_json_schema))
    elif declaration.response is not None:
        result = _schema_dict(declaration.response)
    else:
        return description
    if not isinstance(result, dict) or set(result) <= {"type"}:
        return description
    kind = result.get("type")
    if isinstance(kind, str):
        label = _TYPE_LABELS.get(kind.lower()) or f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"
    else:
        label = "a value"
    rendered = json.dumps(result, sort_keys=True, separators=(",", ":"))
    suffix = f"Returns {label} conforming to this schema: {rendered}"
    candidate = f"{description}\n{suffix}" if description else suffix
    return description if len(candidate) > _MAX_TOOL_DESCRIPTION else candidate


def tool_param(declaration: types.FunctionDeclaration) -> dict[str, Any]:
    """A function declaration as an OpenAI ``tools`` entry."""
    if not declaration.name:
        raise ValueError("a function declaration needs a name")
    if declaration.parameters_json_schema:
        parameters = _schema_dict(copy.deepcopy(declaration.parameters_json_schema))
    elif declaration.parameters is not None:
        parameters = _schema_dict(declaration.parameters)
        parameters.setdefault("type", "object")
        parameters.setdefault("properties", {})
    else:
        parameters = {"type": "object", "properties": {}}
    return {
        "type": "function",
        "function": {
            "name": declaration.name,
            "description": _description(declaration),
            "parameters": parameters,
        },
    }


def _tools(config: types.GenerateContentConfig) -> list[dict[str, Any]] | None:
    tools: list[dict[str, Any]] = []
    for tool in config.tools or ():
        if not isinstance(tool, types.Tool):
            continue
        if tool.function_declarations:
            tools.extend(tool_param(declaration) for declaration in tool.function_declarations)
        elif dumped := tool.model_dump(by_alias=True, exclude_none=True):
            tools.append(dumped)  # a built-in tool (google_search...): passed on as it is
    return tools or None


def response_format(schema: Any) -> dict[str, Any] | None:
    """A response schema as a strict ``json_schema`` response format."""
    name = "response"
    if isinstance(schema, Mapping):
        kind = schema.get("type")
        if isinstance(kind, str) and kind.lower() in _STRUCTURED_TYPES:
            return dict(schema)
        body: Any = copy.deepcopy(dict(schema))
        name = str(body.get("title", name))
    elif isinstance(schema, type) and issubclass(schema, BaseModel):
        body, name = schema.model_json_schema(), schema.__name__
    elif isinstance(schema, types.Schema):
        body = schema.model_dump(by_alias=True, exclude_none=True, mode="json")
        name = str(body.get("title", name))
    elif isinstance(schema, BaseModel):
        body, name = type(schema).model_json_schema(), type(schema).__name__
    else:
        raise ValueError(f"unsupported response_schema: {type(schema).__name__}")
    body = _schema_dict(body)
    _strict(body)
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": body}}


# -- thinking -------------------------------------------------------------------------------------


def _thinking_options(model: str, thinking: types.ThinkingConfig, max_tokens: int | None) -> dict[str, Any]:
    """The thinking settings as LiteLLM's ``reasoning_effort`` or ``thinking``, where the model takes them."""
    supported = _provider.reasoning_params(model)
    if not supported:
        return {}
    anthropic = "claude" in model.lower() or model.startswith("anthropic/")
    level = thinking.thinking_level
    budget = thinking.thinking_budget
    if level is not None and str(getattr(level, "value", level)) != "THINKING_LEVEL_UNSPECIFIED":
        if "reasoning_effort" in supported:
            return {"reasoning_effort": str(getattr(level, "value", level)).lower()}
        return {}
    if budget == 0:
        if "thinking" in supported and "gemini" not in model.lower():
            return {"thinking": {"type": "disabled"}}
        return {}
    if budget is not None and budget > 0:
        if "thinking" in supported:
            tokens = max(1024, budget) if anthropic else budget
            if anthropic and max_tokens is not None:
                if max_tokens <= 1024:
                    return {}
                tokens = min(tokens, max_tokens - 1)
            return {"thinking": {"type": "enabled", "budget_tokens": tokens}}
        if "reasoning_effort" in supported:
            return {"reasoning_effort": "low" if budget <= 1024 else "medium" if budget <= 2048 else "high"}
        return {}
    if thinking.include_thoughts and "thinking" in supported:
        if anthropic:
            return {"thinking": {"type": "enabled", "budget_tokens": 1024}}
        return {"thinking": {"type": "enabled"}}
    return {}


# -- options --------------------------------------------------------------------------------------


def build_options(request: LlmRequest, model: str, base: Mapping[str, Any]) -> dict[str, Any]:
    """LiteLLM/cllm options for a request: the constructor's ``base`` options, overridden by the request's
    tools, response format, generation settings and tool-calling mode."""
    options: dict[str, Any] = dict(base)
    config = request.config
    if config is None:
        return options
    tools = _tools(config)
    if tools and "functions" not in options:
        options["tools"] = tools
    if config.response_schema is not None:
        options["response_format"] = response_format(config.response_schema)
    settings = config.model_dump(exclude_none=True)
    generation = {_GENERATION_PARAMS[key]: settings[key] for key in _GENERATION_PARAMS if key in settings}
    if config.thinking_config is not None:
        max_tokens = generation.get("max_completion_tokens", options.get("max_completion_tokens"))
        max_tokens = max_tokens if max_tokens is not None else options.get("max_tokens")
        generation.update(_thinking_options(model, config.thinking_config, max_tokens))
    if "max_completion_tokens" in generation:
        options.pop("max_tokens", None)
    if "thinking" in generation:
        options.pop("reasoning_effort", None)
    if "reasoning_effort" in generation:
        options.pop("thinking", None)
    options.update(generation)
    calling = config.tool_config.function_calling_config if config.tool_config else None
    if options.get("tools") and calling is not None:
        if calling.mode == types.FunctionCallingConfigMode.ANY:
            options["tool_choice"] = "required"
        elif calling.mode == types.FunctionCallingConfigMode.NONE:
            options["tool_choice"] = "none"
    http = config.http_options
    if http is not None:
        if http.headers:
            options["extra_headers"] = {**dict(options.get("extra_headers") or {}), **http.headers}
        if http.timeout is not None:
            # ADK's timeout bounds each read: cllm's idle timeout, unless one was given.
            options.setdefault("idle_timeout", http.timeout / 1000)
        if http.extra_body is not None:
            options["extra_body"] = http.extra_body
    return options
