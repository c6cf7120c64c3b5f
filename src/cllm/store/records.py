"""The store's value types and the pure rules between them and database rows.

Nothing here touches SQLite: conversions, secret stripping, search-query quoting and the rebuilding
of a conversation's messages are plain functions so they can be tested without a database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from cllm.core.response import Response, ToolCall
from cllm.errors import CllmError

__all__ = [
    "Conversation",
    "LoggedResponse",
    "StoreError",
    "clean_title",
    "fts_query",
    "history_messages",
    "is_secret_option",
    "strip_secrets",
    "title_from_prompt",
    "to_json",
]

TITLE_MAX = 80
TITLE_LIMIT = 200


class StoreError(CllmError):
    """The conversation database cannot be opened, read or written. The message names the file."""


@dataclass(frozen=True)
class Conversation:
    """A conversation: a sequence of logged responses. Times are ISO-8601 UTC."""

    id: str
    title: str | None
    model: str | None
    system: str | None
    created: str
    updated: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


@dataclass(frozen=True)
class LoggedResponse:
    """One model call as it was logged: what went in, what came out, and what it cost.

    ``messages_in`` are the OpenAI-format messages added to the conversation just before this call
    (the user's message, or tool results), in order. ``model`` is the model asked for;
    ``response_model`` the one the provider reported, when it did.
    """

    id: str
    conversation_id: str
    model: str
    prompt: str | None
    system: str | None
    messages_in: list[dict[str, Any]]
    text: str
    reasoning: str
    tool_calls: list[dict[str, Any]]
    finish_reason: str | None
    usage: dict[str, Any] | None
    cost: float | None
    interrupted: bool
    error: str | None
    options: dict[str, Any]
    ttft: float | None
    duration: float | None
    created: str
    raw_finish_reason: str | None = None
    refusal: str | None = None
    response_model: str | None = None
    #: One record per attempt (`cllm.AttemptRecord` as a dict) when there were retries or fallbacks.
    attempts: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    def message(self) -> dict[str, Any]:
        """The assistant message (OpenAI format) this response added to the conversation.

        The same as `cllm.Response.message` gave when the response was logged.
        """
        return _assistant_message(self.text, self.tool_calls)


def _assistant_message(text: str, tool_calls: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    # Made by `Response.message` itself so that a logged turn is replayed as it was first sent.
    calls = [ToolCall(c["id"], c["name"], c.get("arguments"), c["arguments_json"]) for c in tool_calls]
    return Response(text=text, tool_calls=calls).message()


def tool_call_dict(call: ToolCall) -> dict[str, Any]:
    """A tool call as stored: id, name, arguments, arguments_json (and error when set)."""
    stored = asdict(call)
    if stored["error"] is None:
        del stored["error"]
    return stored


def history_messages(system: str | None, turns: Iterable[LoggedResponse]) -> list[dict[str, Any]]:
    """A conversation as OpenAI messages: the system message, then each turn's messages in and reply.

    Tool calls that were never answered and never will be are left out of the assistant message,
    because a provider rejects a request with a tool call that no tool result follows: a call is
    dropped when the next turn's messages do not answer it, or when its response was interrupted and
    is the last one. The last turn's calls are otherwise kept: the caller may be about to send their
    results.
    """
    turns = list(turns)
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(turns):
        messages.extend(turn.messages_in)
        calls = turn.tool_calls
        if calls:
            if i + 1 < len(turns):
                answered = {
                    m.get("tool_call_id") for m in turns[i + 1].messages_in if m.get("role") == "tool"
                }
                calls = [c for c in calls if c["id"] in answered]
            elif turn.interrupted:
                calls = []
        messages.append(_assistant_message(turn.text, calls))
    return messages


# Option names whose words mark a credential. Matched word by word so that `max_tokens` stays
# and `api_key`, `aws_session_token`, `client_secret`, `extra_headers` go.
_SECRET_WORDS = frozenset(
    {
        "apikey",
        "auth",
        "authorization",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "headers",
        "key",
        "passwd",
        "password",
        "secret",
        "token",
    }
)


def is_secret_option(name: str) -> bool:
    """Whether an option's name says it holds a credential (``api_key``, ``*_token``, ``headers``...)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return any(word in _SECRET_WORDS for word in re.findall(r"[a-z0-9]+", spaced))


def strip_secrets(value: Any) -> Any:
    """`value` with every credential-named key dropped, in nested dicts and lists too."""
    if isinstance(value, Mapping):
        return {
            str(k): strip_secrets(v)
            for k, v in value.items()
            if not (isinstance(k, str) and is_secret_option(k))
        }
    if isinstance(value, list | tuple):
        return [strip_secrets(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """JSON text for a stored column; values JSON cannot represent are stored as their repr."""
    return json.dumps(value, ensure_ascii=False, default=repr)


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression finding rows that contain every word of `text` (as a prefix).

    Each whitespace-separated word becomes a quoted string, so operators, quotes, colons and stars
    in user input are searched for as text and never parsed as query syntax. None when `text` has
    no words.
    """
    words = text.split()
    if not words:
        return None
    return " ".join('"' + word.replace('"', '""') + '"*' for word in words)


def title_from_prompt(prompt: str | None) -> str | None:
    """A conversation title from its first prompt: the first non-empty line, shortened."""
    if not prompt:
        return None
    for line in prompt.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1].rstrip() + "…"
    return None


def clean_title(title: str) -> str:
    """A title a user gave, on one line; `ValueError` when it is empty or longer than
    ``TITLE_LIMIT`` characters."""
    cleaned = " ".join(title.split())
    if not cleaned:
        raise ValueError("a title must not be empty")
    if len(cleaned) > TITLE_LIMIT:
        raise ValueError(f"a title must be at most {TITLE_LIMIT} characters")
    return cleaned


def response_values(
    response: Response,
    *,
    model: str,
    messages_in: list[dict[str, Any]],
    prompt: str | None,
    system: str | None,
    options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The column values (without id, conversation_id and created) for logging `response`."""
    usage = asdict(response.usage) if response.usage is not None else None
    return {
        "model": model,
        "response_model": response.model,
        "prompt": prompt,
        "system": system,
        "messages_in": to_json(list(messages_in)),
        "text": response.text,
        "reasoning": response.reasoning,
        "refusal": response.refusal,
        "tool_calls": to_json([tool_call_dict(call) for call in response.tool_calls]),
        "finish_reason": response.finish_reason.value if response.finish_reason else None,
        "raw_finish_reason": response.raw_finish_reason,
        "usage": to_json(usage) if usage is not None else None,
        "cost": response.cost,
        "interrupted": int(response.interrupted),
        "error": response.error,
        "options": to_json(strip_secrets(dict(options or {}))),
        "ttft": response.ttft,
        "duration": response.duration,
        "attempts": to_json([asdict(a) for a in response.attempts]) if response.attempts else None,
    }


JSON_COLUMNS = ("messages_in", "tool_calls", "usage", "options", "attempts")
"""The columns holding JSON text."""


def logged_response(row: Mapping[str, Any]) -> LoggedResponse:
    """A `LoggedResponse` from a `responses` row."""
    values = {f.name: row[f.name] for f in fields(LoggedResponse)}
    for name in JSON_COLUMNS:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    values["interrupted"] = bool(values["interrupted"])
    return LoggedResponse(**values)


def conversation(row: Mapping[str, Any]) -> Conversation:
    """A `Conversation` from a `conversations` row."""
    return Conversation(**{f.name: row[f.name] for f in fields(Conversation)})
