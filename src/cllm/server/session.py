"""One chat turn for ``/api/chat`` and ``/ws``: validate the request, load the conversation, stream
the reply with cllm, save the exchange in the `ConversationStore`, report every step as an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

import cllm
from cllm.core.events import Finish
from cllm.core.response import Response
from cllm.errors import CllmError, StreamInterrupted
from cllm.server.settings import ModelTable, RequestError, Scrubber
from cllm.server.streams import Emit
from cllm.server.wire import error_data, event_data, partial_response, scrubbed_response
from cllm.store import Store

__all__ = ["ChatRequest", "ChatService", "ChatTurn", "check_messages", "filter_options", "parse_chat_request"]

logger = logging.getLogger("cllm.server")

# Request parameters a client may set. Anything that would change where the request goes or which
# credentials it carries (api_base, api_key, headers...) is the server's business, never the client's.
CLIENT_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "seed",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "thinking",
        "top_k",
        "first_token_timeout",
        "idle_timeout",
        "total_timeout",
        "retries",
        "fallbacks",
        "mid_stream",
    }
)


def filter_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The client-settable options among ``options`` (None values dropped)."""
    return {k: v for k, v in options.items() if k in CLIENT_OPTIONS and v is not None}


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """``messages`` if it is a non-empty list of objects with a ``role``, else `RequestError` (400)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list", param="messages")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError(400, "each message must be an object with a 'role'", param="messages")
    return messages


@dataclass
class ChatRequest:
    """A validated ``/api/chat`` or ``/ws`` message."""

    model: str | None
    messages_in: list[dict[str, Any]]
    prompt: str | None = None
    conversation_id: str | None = None
    system: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a request body: ``model``, ``content`` (one user message) or ``messages``,
    ``conversation_id``, ``system``, ``options``. Raises `RequestError` (400) when it is wrong."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, "'model' must be a string", param="model")
    content = body.get("content")
    messages = body.get("messages")
    if (content is None) == (messages is None):
        raise RequestError(400, "give either 'content' (a string) or 'messages' (a list)", param="content")
    if content is not None:
        if not isinstance(content, str) or not content.strip():
            raise RequestError(400, "'content' must be a non-empty string", param="content")
        messages_in = [{"role": "user", "content": content}]
    else:
        messages_in = check_messages(messages)
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise RequestError(400, "'conversation_id' must be a string", param="conversation_id")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        raise RequestError(400, "'system' must be a string", param="system")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise RequestError(400, "'options' must be an object", param="options")
    unknown = sorted(set(options) - CLIENT_OPTIONS)
    if unknown:
        raise RequestError(400, f"options not allowed: {', '.join(unknown)}", param="options")
    return ChatRequest(
        model=model or None,
        messages_in=messages_in,
        prompt=content,
        conversation_id=conversation_id or None,
        system=system,
        options=filter_options(options),
    )


@dataclass
class ChatTurn:
    """A request bound to its conversation, ready to run."""

    service: ChatService
    request: ChatRequest
    model: str
    conversation_id: str
    history: list[dict[str, Any]]

    async def run(self, emit: Emit) -> Response | None:
        """Stream the reply, emitting each event; save the exchange; return the final response.

        Every outcome ends with one last event, which names the ``model`` asked to answer:
        ``finish`` (saved), ``error`` (a partial answer is saved, marked interrupted; so is a reply
        whose events could not be encoded) or, when cancelled, ``error`` of kind ``cancelled`` (the
        partial answer is saved too) before `asyncio.CancelledError` propagates.
        """
        service, request = self.service, self.request
        scrub = service.scrubber
        try:
            litellm_model, kwargs = service.models.call(self.model, request.options)
        except RequestError as e:
            emit(
                "error",
                {"message": e.message, "kind": "bad_request", "status_code": e.status, "model": self.model},
            )
            return None
        messages = [*self.history, *request.messages_in]
        stream: cllm.AsyncStream | None = None
        saved: str | None = None
        try:
            stream = cllm.astream(litellm_model, messages, **kwargs)
            async for event in stream:
                if isinstance(event, Finish):
                    response = stream.response
                    saved = await self._save(response)
                    data = event_data(event)
                    data["response"] = scrubbed_response(response, scrub)
                    data["conversation_id"] = self.conversation_id
                    data["response_id"] = saved
                    data["model"] = self.model
                    emit("finish", data)
                    return response
                emit(event.type, event_data(event))
            return stream.response
        except asyncio.CancelledError:
            if stream is None:
                raise
            await _shielded(stream.aclose())
            response = stream.response
            response_id = await _shielded(self._save(response)) if _has_output(response) else None
            emit(
                "error",
                {
                    "message": "cancelled",
                    "kind": "cancelled",
                    "status_code": None,
                    "response": partial_response(response, scrub),
                    "response_id": response_id,
                    "model": self.model,
                },
            )
            raise
        except Exception as e:
            if stream is not None:
                await _shielded(stream.aclose())
            if not isinstance(e, CllmError | ValueError):
                logger.error("chat turn failed: %s", scrub(repr(e)))
            data = error_data(e, scrub)
            partial = e.response if isinstance(e, StreamInterrupted) else None
            if partial is None and stream is not None and saved is None and _has_output(stream.response):
                partial = stream.response  # the reply broke, not the provider: keep what it said
            if saved is None and partial is not None:
                saved = await self._save(partial)
            if saved is not None:
                data["response_id"] = saved
            data["model"] = self.model
            emit("error", data)
            return partial

    async def _save(self, response: Response) -> str | None:
        """Log the exchange; a failure to save is logged and loses only the log, never the reply."""
        request = self.request
        try:
            logged = await run_in_threadpool(
                self.service.store.log_response,
                self.conversation_id,
                response,
                model=self.model,
                messages_in=request.messages_in,
                prompt=request.prompt,
                system=request.system,
                options=request.options,
            )
        except Exception as e:
            logger.error("could not save the response: %s", self.service.scrubber(str(e)))
            return None
        return logged.id


def _has_output(response: Response) -> bool:
    return bool(response.text or response.reasoning or response.tool_calls)


async def _shielded(coro: Any) -> Any:
    task = asyncio.ensure_future(coro)
    with contextlib.suppress(asyncio.CancelledError):
        return await asyncio.shield(task)
    return await task


class ChatService:
    """What ``/api/chat`` and ``/ws`` share: the store, the model table and the scrubber."""

    def __init__(self, store: Store, models: ModelTable, scrubber: Scrubber) -> None:
        self.store = store
        self.models = models
        self.scrubber = scrubber

    async def turn(self, request: ChatRequest) -> ChatTurn:
        """Bind a request to its conversation (created when the request names none).

        Raises `RequestError`: 404 for an unknown conversation, 400 when no model can be chosen.
        """
        model = request.model
        if request.conversation_id is not None:
            conversation = await run_in_threadpool(self.store.get_conversation, request.conversation_id)
            if conversation is None:
                raise RequestError(404, f"no conversation {request.conversation_id}", param="conversation_id")
            model = model or conversation.model
            history = await run_in_threadpool(self.store.history, conversation.id)
            conversation_id = conversation.id
        else:
            history = [{"role": "system", "content": request.system}] if request.system else []
            conversation_id = ""
        model = self.models.choose(model)
        if not conversation_id:
            created = await run_in_threadpool(
                # Titled now, so a conversation whose first reply failed is still listed by its prompt.
                self.store.create_conversation,
                model=model,
                system=request.system,
                title=request.prompt,
            )
            conversation_id = created.id
        return ChatTurn(self, request, model, conversation_id, history)
