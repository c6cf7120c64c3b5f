"""One request to a local model: a prepared prompt, then chunks generated one token at a time.

`Generation.chunks` is a plain iterator that yields LiteLLM ``GenericStreamingChunk`` dicts while it
holds the model's lock; closing it or calling `Generation.cancel` (from any thread) stops llama.cpp
before its next token and frees the lock. `astream` runs it on a worker thread and hands each
chunk to the event loop as it is made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import random
import threading
import uuid
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cllm.local import SECTIONS_ADVICE, report
from cllm.local._model import LoadedModel, import_llama
from cllm.local._output import CallOutput, TextOutput
from cllm.local._prompt import (
    TRANSCRIPT_STOP,
    LocalModelError,
    Sampling,
    _text_of,
    call_schema,
    plan_tools,
    render_transcript,
    template_messages,
    to_turns,
    tools_instruction,
)

__all__ = ["Collected", "Generation", "astream", "collect"]

Chunk = dict[str, Any]

# In "auto" mode, at most this many leading whitespace tokens are read before deciding.
_PEEK_TOKENS = 4
# The fewest reply tokens a prompt must leave room for (fewer when max_tokens asks for fewer).
ANSWER_ROOM = 256
# Prompt tokens read between two progress reports (and two looks at a cancellation): about a
# second on a small CPU.
PROGRESS_BATCH = 256


@dataclass(slots=True)
class _Prompt:
    text: str
    stop: list[str]
    add_bos: bool
    special: bool


class Generation:
    """A validated request for a loaded model. Raises `LocalModelError` for bad input."""

    def __init__(self, model: LoadedModel, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]):
        self.model = model
        self.sampling = Sampling.from_params(params)
        self.plan = plan_tools(params.get("tools"), params.get("tool_choice"))
        self.seed = self.sampling.seed if self.sampling.seed is not None else random.randrange(2**31)
        self.call_id = f"call_{uuid.uuid4().hex[:24]}"
        self.completion_tokens = 0
        self._cancelled = threading.Event()
        self.continues = False  # from an assistant prefix
        llm = model.llm
        prompt = self._render(messages)
        self.prompt_tokens: list[int] = llm.tokenize(
            prompt.text.encode("utf-8"), add_bos=prompt.add_bos, special=prompt.special
        )
        limit = model.context_tokens
        # Room for at least the start of an answer: a prompt that leaves less is refused, not
        # answered with a few words cut off at the window's end.
        room = min(self.sampling.max_tokens, ANSWER_ROOM)
        if len(self.prompt_tokens) + room > limit:
            raise LocalModelError(
                f"the prompt is {len(self.prompt_tokens)} tokens, more than local/{model.name} can read: "
                f"its context window is {limit} tokens (prompt and reply together, {room} kept for the "
                f"reply). Use a model with a bigger window (-m), or {SECTIONS_ADVICE}"
            )
        self.stop_strings = prompt.stop + list(self.sampling.stop)
        self._grammar = self._call_grammar() if self.plan.mode != "text" else None

    # -- preparation ------------------------------------------------------------------------------

    def _render(self, messages: Sequence[Mapping[str, Any]]) -> _Prompt:
        last = messages[-1] if messages else None
        if last is not None and last.get("role") == "assistant" and last.get("prefix") is True:
            # An assistant prefix: the reply goes on from it, whatever it is.
            self.continues = True
            prompt = self._render(messages[:-1])
            text = _text_of(last.get("content"))
            joiner = " " if not prompt.special and text and not prompt.text.endswith((" ", "\n")) else ""
            return _Prompt(prompt.text + joiner + text, prompt.stop, prompt.add_bos, prompt.special)
        turns = to_turns(messages)
        instructions = tools_instruction(self.plan.offered) if self.plan.offered else None
        template = self.model.chat_template
        if template is None:
            return _Prompt(render_transcript(turns, instructions), list(TRANSCRIPT_STOP), True, False)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self.model.llm
        eos, bos = llm.token_eos(), llm.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llm.detokenize([eos], special=True).decode("utf-8", "ignore") if eos != -1 else "",
            bos_token=llm.detokenize([bos], special=True).decode("utf-8", "ignore") if bos != -1 else "",
            stop_token_ids=[eos],
        )
        try:
            messages_in: Any = template_messages(turns, instructions)
            result = formatter(messages=messages_in)
        except Exception as exc:  # a template is a program: any error is the template's
            raise LocalModelError(f"the chat template of {self.model.path.name} failed: {exc}") from exc
        stop = [result.stop] if isinstance(result.stop, str) else list(result.stop or [])
        return _Prompt(result.prompt, stop, not result.added_special, True)

    def _call_grammar(self) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

        loose: set[str] = set()
        for function in self.plan.tools:
            try:
                json_schema_to_gbnf(json.dumps(call_schema([function])), prop_order=["name", "arguments"])
            except Exception:  # a schema feature the converter lacks: any JSON object will do
                loose.add(str(function["name"]))
        schema = call_schema(self.plan.tools, loose=frozenset(loose))
        return LlamaGrammar.from_string(
            json_schema_to_gbnf(json.dumps(schema), prop_order=["name", "arguments"]), verbose=False
        )

    # -- control ----------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop generating before the next token, or stop waiting for the model (any thread)."""
        self._cancelled.set()
        self.model.lock.wake()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # -- generation -------------------------------------------------------------------------------

    def chunks(self) -> Generator[Chunk]:
        """Wait for the model (FIFO), then generate. Nothing is yielded once cancelled."""
        if not self.model.lock.acquire(self._cancelled.is_set):
            return
        try:
            if not self._read_prompt():
                return
            mode = self.plan.mode
            if mode == "auto":
                mode = "call" if self._opens_call() else "text"
            yield from self._call() if mode == "call" else self._text()
        finally:
            self.model.lock.release()

    def _read_prompt(self) -> bool:
        """Evaluate the prompt a batch at a time, reporting progress; False when cancelled.

        llama.cpp would read it in one call that can be neither watched nor stopped. What the
        context already holds of it (the conversation so far) is kept, not read again; the
        generation that follows finds the whole prompt there and starts sampling at once.
        """
        llm = self.model.llm
        tokens = self.prompt_tokens
        held = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens], tokens, strict=False):
            if a != b:
                break
            held += 1
        held = min(held, len(tokens) - 1)  # the last token is read again, for fresh logits
        if held > 0 and llm._ctx.kv_cache_seq_rm(-1, held, -1):
            llm.n_tokens = held
        else:
            llm.reset()
            held = 0
        total, batch = len(tokens), max(1, min(int(llm.n_batch), PROGRESS_BATCH))
        for start in range(held, total, batch):
            if self.cancelled:
                return False
            report("reading the prompt", start, total)
            llm.eval(tokens[start : start + batch])
        report("reading the prompt", total, total)
        return not self.cancelled

    def _text(self) -> Iterator[Chunk]:
        output, finish = TextOutput(keep_space=self.continues), "length"
        for text, reason in self._complete(None, self.stop_strings):
            if self.cancelled:
                return
            if piece := output.feed(text):
                yield _chunk(text=piece)
            finish = reason or finish
        yield self._last(finish)

    def _call(self) -> Iterator[Chunk]:
        output, finish = CallOutput(), "length"
        # No stop strings here: they could cut the JSON, which the grammar ends by itself.
        for text, reason in self._complete(self._grammar, []):
            if self.cancelled:
                return
            for piece in output.feed(text):
                call: dict[str, Any]
                if piece.kind == "name":
                    call = {"id": self.call_id, "name": piece.value, "arguments": ""}
                else:
                    call = {"id": None, "name": None, "arguments": piece.value}
                yield _chunk(tool_use=_tool_use(**call))
            finish = reason or finish
        if output.name is not None and (output.complete or finish == "stop"):
            finish = "tool_calls"
        yield self._last(finish)

    def _complete(self, grammar: Any, stop: list[str]) -> Iterator[tuple[str, str | None]]:
        llama_cpp = import_llama()
        self.completion_tokens = 0
        stream = self.model.llm.create_completion(
            self.prompt_tokens,
            max_tokens=self.sampling.max_tokens,
            temperature=self.sampling.temperature,
            seed=self.seed,
            stop=stop,
            grammar=grammar,
            stream=True,
            stopping_criteria=llama_cpp.StoppingCriteriaList([self._after_token]),
            **self._sampler(),
        )
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                yield choice["text"], choice["finish_reason"]
        finally:
            stream.close()

    def _after_token(self, input_ids: Any, _logits: Any) -> bool:
        # Called by llama-cpp-python after each sampled token (and once more at the end) with the
        # tokens evaluated so far, which are all but the one just sampled: the count for usage, and
        # the point where a cancelled request stops.
        sampled = len(input_ids) - len(self.prompt_tokens) + 1
        self.completion_tokens = max(self.completion_tokens, sampled)
        return self._cancelled.is_set()

    def _opens_call(self) -> bool:
        """Whether the unconstrained reply would open with ``{`` (a tool call).

        Sampling is seeded, so the reply generated next starts with the same tokens.
        """
        llama_cpp = import_llama()
        llm = self.model.llm
        llm.set_seed(self.seed)
        tokens = llm.generate(self.prompt_tokens, temp=self.sampling.temperature, **self._sampler())
        text = b""
        try:
            for count, token in enumerate(tokens, 1):
                if self.cancelled or llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                    return False
                text += llm.detokenize([token])
                if text.strip() or count >= _PEEK_TOKENS:
                    break
        finally:
            tokens.close()
        return text.lstrip().startswith(b"{")

    def _sampler(self) -> dict[str, Any]:
        # The settings both llama.cpp calls take (temperature aside: they spell it differently), from
        # one place, since `_opens_call` predicts the reply only if it samples exactly as `_complete`.
        s = self.sampling
        return {
            "top_k": s.top_k,
            "top_p": s.top_p,
            "min_p": s.min_p,
            "repeat_penalty": s.repeat_penalty,
            "frequency_penalty": s.frequency_penalty,
            "presence_penalty": s.presence_penalty,
        }

    def _last(self, finish: str) -> Chunk:
        prompt, completion = len(self.prompt_tokens), self.completion_tokens
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return _chunk(finish_reason=finish, usage=usage)


def _chunk(
    text: str = "",
    tool_use: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> Chunk:
    return {
        "text": text,
        "tool_use": tool_use,
        "is_finished": finish_reason is not None,
        "finish_reason": finish_reason or "",
        "usage": usage,
        "index": 0,
    }


def _tool_use(id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    return {"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


# -- the event loop's side ------------------------------------------------------------------------

_END = object()
# The longest `aclose` waits for the worker to let go of the model.
_CLOSE_WAIT = 1.0


async def astream(generation: Generation) -> AsyncIterator[Chunk]:
    """The chunks of `generation`, made on a worker thread and handed over as each is made.

    Closing this iterator cancels the generation and waits (about one token) for the worker to
    let go of the model, so the next request can start at once.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    finished: concurrent.futures.Future[None] = concurrent.futures.Future()

    def put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            generation.cancel()

    def work() -> None:
        chunks = generation.chunks()
        try:
            for chunk in chunks:
                if generation.cancelled:
                    break
                put(chunk)
            put(_END)
        except BaseException as exc:
            put(exc)
        finally:
            chunks.close()
            finished.set_result(None)

    threading.Thread(target=work, name="cllm-local-model", daemon=True).start()
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        generation.cancel()
        # The worker lets go within a token. Reading a long prompt cannot be interrupted, though,
        # and closing should not hang on it: then the model frees itself when the reading is done.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(finished)), _CLOSE_WAIT)


# -- non-streaming ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Collected:
    """A whole reply, gathered from its chunks."""

    text: str = ""
    tool_name: str | None = None
    tool_id: str | None = None
    arguments: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)

    def add(self, chunk: Chunk) -> None:
        self.text += chunk["text"]
        if call := chunk["tool_use"]:
            self.tool_id = self.tool_id or call["id"]
            self.tool_name = self.tool_name or call["function"]["name"]
            self.arguments += call["function"]["arguments"]
        if chunk["is_finished"]:
            self.finish_reason = chunk["finish_reason"]
            self.usage = chunk["usage"] or {}


def collect(chunks: Iterator[Chunk]) -> Collected:
    collected = Collected()
    for chunk in chunks:
        collected.add(chunk)
    return collected
