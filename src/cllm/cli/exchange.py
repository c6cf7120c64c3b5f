"""One exchange: the user's message, the model's answer and any tool-call rounds, each call logged.

Shared by the one-shot prompt and the chat. The loop: stream → tool calls → (ask) → run them →
send the results → stream again, until the model answers without tools or the chain limit is hit.
Ctrl-C stops the call in progress: what was shown is kept and logged as interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cllm
from cllm.cli.display import OutputClosed, Ui, quiet_terminal
from cllm.cli.endings import Ending, ending_of
from cllm.cli.errors import describe_error
from cllm.cli.tools import Toolbox, ToolResult
from cllm.core.events import ReasoningDelta, TextDelta, ToolCallEnd
from cllm.core.finish import FinishReason
from cllm.core.response import Response, ToolCall
from cllm.errors import CllmError, StreamInterrupted

if TYPE_CHECKING:
    from cllm.store import Store

__all__ = ["ConversationLog", "Outcome", "Settings", "run_exchange", "usage_line", "with_tool_results"]

Message = dict[str, Any]
Approver = Callable[[ToolCall], bool]


@dataclass
class Settings:
    """How to call the model."""

    model: str
    options: dict[str, Any] = field(default_factory=dict)
    stream: bool = True
    toolbox: Toolbox | None = None
    approve: Approver | None = None
    chain_limit: int = 5
    tool_choice_rounds: int = 1

    def options_for(self, round_: int) -> dict[str, Any]:
        """The call's options for tool-call round ``round_`` (0: the first call).

        A forced ``tool_choice`` ("required", "any" or a named function) applies to the first
        ``tool_choice_rounds`` calls only (0: to every call): sent again after the tools have run,
        it would make the model call a tool every time and never answer.
        """
        options = dict(self.options)
        if self.toolbox is not None:
            options["tools"] = self.toolbox.schemas
        if (
            forced_tool_choice(options.get("tool_choice"))
            and self.tool_choice_rounds
            and round_ >= self.tool_choice_rounds
        ):
            options.pop("tool_choice")
        return options


def forced_tool_choice(choice: Any) -> bool:
    """Whether a ``tool_choice`` makes the model call a tool (rather than leaving it free)."""
    if isinstance(choice, str):
        return choice.lower() in ("required", "any")
    return isinstance(choice, dict)


@dataclass
class Outcome:
    """What an exchange gave: every response (one per model call), and how it ended."""

    responses: list[Response] = field(default_factory=list)
    interrupted: bool = False
    error: BaseException | None = None
    stopped: bool = False  # the chain limit was reached
    declined: bool = False  # the user declined a tool call
    ending: Ending | None = None  # the final reply did not end normally

    @property
    def final(self) -> Response | None:
        return self.responses[-1] if self.responses else None


class ConversationLog:
    """Logs each response to the store; the conversation is created with the first one.

    A store that fails is reported once on stderr and then left alone: the answer matters more.
    """

    def __init__(self, store: Store | None, ui: Ui, conversation_id: str | None = None) -> None:
        self.store = store
        self.ui = ui
        self.conversation_id = conversation_id

    def log(
        self,
        response: Response,
        *,
        model: str,
        messages_in: list[Message],
        prompt: str | None,
        system: str | None,
        options: dict[str, Any],
    ) -> None:
        if self.store is None:
            return
        from cllm.store import StoreError

        try:
            if self.conversation_id is None:
                conversation = self.store.create_conversation(model=model, system=system)
                self.conversation_id = conversation.id
            self.store.log_response(
                self.conversation_id,
                response,
                model=model,
                messages_in=messages_in,
                prompt=prompt,
                system=system,
                options=options,
            )
        except StoreError as e:
            self.ui.note(f"cllm: warning: the reply was not saved: {e}", dim=False)
            self.store = None


def with_tool_results(messages: list[Message]) -> list[Message]:
    """The messages with a result for every tool call that has none (a chain stopped by the limit,
    or interrupted), so that providers accept the history."""
    out: list[Message] = []
    pending: list[str] = []
    for message in messages:
        if message.get("role") != "tool" and pending:
            out.extend(_not_run(call_id) for call_id in pending)
            pending = []
        if message.get("role") == "tool" and message.get("tool_call_id") in pending:
            pending.remove(message["tool_call_id"])
        out.append(message)
        if message.get("role") == "assistant":
            pending = [call.get("id") for call in message.get("tool_calls") or [] if call.get("id")]
    out.extend(_not_run(call_id) for call_id in pending)
    return out


def _not_run(call_id: str) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": "This tool call was not run."}


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Let a second Ctrl-C not cut short the saving of an interrupted answer."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _cancelled(model: str) -> Response:
    return Response(
        model=model,
        finish_reason=FinishReason.CANCELLED,
        interrupted=True,
        error="cancelled before the answer began",
    )


def _interrupted(response: Response) -> Response:
    # The library's wording is about its consumer closing the stream; here the user pressed Ctrl-C.
    if response.interrupted and response.finish_reason is FinishReason.CANCELLED:
        return dataclasses.replace(response, error="interrupted")
    return response


def _call(
    settings: Settings, messages: list[Message], ui: Ui, round_: int = 0
) -> tuple[Response | None, BaseException | None, bool]:
    """One model call shown live: (response, error, interrupted)."""
    options = settings.options_for(round_)
    view = ui.call(settings.model)
    view.start()
    stream: cllm.Stream | None = None
    try:
        if not settings.stream:
            response = cllm.complete(settings.model, messages, stream=False, **options)
            if response.reasoning:
                view.event(ReasoningDelta(response.reasoning))
            view.event(TextDelta(response.text))
            for i, call in enumerate(response.tool_calls):
                view.event(
                    ToolCallEnd(i, call.id, call.name, call.arguments, call.arguments_json, call.error)
                )
            return response, None, False
        stream = cllm.stream(settings.model, messages, **options)
        for event in stream:
            view.event(event)
        return stream.response, None, False
    except (KeyboardInterrupt, OutputClosed) as e:
        with _sigint_deferred():
            if stream is not None:
                stream.close()
            view.finish()
        response = _interrupted(stream.response) if stream is not None else _cancelled(settings.model)
        return response, (e if isinstance(e, OutputClosed) else None), True
    except StreamInterrupted as e:
        return e.response, e, False
    except (CllmError, ValueError) as e:
        return None, e, False
    finally:
        view.finish()


def run_exchange(
    settings: Settings,
    messages: list[Message],
    user_message: Message,
    *,
    prompt: str | None,
    system: str | None,
    ui: Ui,
    log: ConversationLog,
) -> Outcome:
    """Send ``user_message`` after ``messages`` and run the tool loop; ``messages`` grows with the
    exchange (user message, assistant messages, tool results)."""
    outcome = Outcome()
    messages.append(user_message)
    messages_in = [user_message]
    rounds = 0
    while True:
        with quiet_terminal(ui.stdout) if ui.stdout_tty else contextlib.nullcontext():
            response, error, interrupted = _call(settings, with_tool_results(messages), ui, rounds)
        if response is not None:
            outcome.responses.append(response)
            messages.append(response.message())
            with _sigint_deferred():
                log.log(
                    response,
                    model=settings.model,
                    messages_in=messages_in,
                    prompt=prompt if rounds == 0 else None,
                    system=system if rounds == 0 else None,
                    options=settings.options,
                )
        if interrupted:
            if not isinstance(error, OutputClosed):  # a closed stdout is no interruption to report
                outcome.interrupted = True
                ui.note(
                    "cllm: interrupted (the partial answer was saved)" if log.store else "cllm: interrupted"
                )
            return outcome
        if error is not None:
            outcome.error = error
            if ui.debug:
                ui.output.end()
                traceback.print_exception(error, file=ui.stderr)
            ui.note(f"cllm: error: {describe_error(error, settings.model, settings.options)}", dim=False)
            return outcome
        assert response is not None
        calls = response.tool_calls
        if not calls or settings.toolbox is None or response.finish_reason is not FinishReason.TOOL_CALLS:
            outcome.ending = ending_of(response, settings.model, settings.options)
            if outcome.ending is not None:
                ui.note(outcome.ending.message, dim=False)
            return outcome
        if rounds >= settings.chain_limit:
            outcome.stopped = True
            ui.note(
                f"cllm: stopped after {_rounds(rounds)} of tool calls (the chain limit; raise it with "
                f"--chain-limit N); {_calls(len(calls))} not run",
                dim=False,
            )
            return outcome
        try:
            results = _run_tools(settings, calls, ui)
        except KeyboardInterrupt:
            outcome.interrupted = True
            ui.note("cllm: interrupted while running tools")
            return outcome
        if any(result.declined for result in results):
            messages.extend(result.message() for result in results)
            outcome.declined = True
            names = ", ".join(dict.fromkeys(r.call.name for r in results if r.declined))
            ui.note(f"cllm: stopped: you declined {names}; the model was not asked again", dim=False)
            return outcome
        messages_in = [result.message() for result in results]
        messages.extend(messages_in)
        rounds += 1


def _run_tools(settings: Settings, calls: list[ToolCall], ui: Ui) -> list[ToolResult]:
    assert settings.toolbox is not None
    results = []
    for call in calls:
        if settings.approve is not None and not settings.approve(call):
            # The run ends here: the calls after this one are not asked about.
            results.append(ToolResult(call, "The user declined to run this tool call.", False, declined=True))
            ui.note(f"  ↳ {call.name}: declined")
            break
        result = settings.toolbox.run(call)
        results.append(result)
        preview = " ".join(result.content.split())
        if len(preview) > 100:
            preview = preview[:99] + "…"
        ui.note(f"  ↳ {call.name}: {preview}" if result.ok else f"  ↳ {call.name} failed: {preview}")
    return results


def _rounds(n: int) -> str:
    return f"{n} round" if n == 1 else f"{n} rounds"


def _calls(n: int) -> str:
    return "the last call was" if n == 1 else f"the last {n} calls were"


def usage_line(responses: list[Response]) -> str:
    """Tokens and cost of an exchange, for ``-u``."""
    prompt = completion = reasoning = 0
    reported = False
    cost: float | None = 0.0
    for r in responses:
        if r.usage is not None:
            reported = True
            prompt += r.usage.prompt_tokens or 0
            completion += r.usage.completion_tokens or 0
            reasoning += r.usage.reasoning_tokens or 0
        cost = None if cost is None or r.cost is None else cost + r.cost
    calls = f" · {len(responses)} calls" if len(responses) > 1 else ""
    if not reported:
        return f"usage: not reported by the provider{calls}"
    parts = [f"usage: {prompt} input + {completion} output tokens"]
    if reasoning:
        parts.append(f"({reasoning} reasoning)")
    price = format_cost(cost) if cost is not None else "cost unknown"
    return " ".join(parts) + f" · {price}{calls}"


def format_cost(cost: float) -> str:
    """Dollars with three significant digits for small amounts (``$0.0000975``), cents otherwise."""
    if cost <= 0:
        return "$0"
    digits = max(2, 2 - math.floor(math.log10(cost)))
    text = f"{cost:.{digits}f}"
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.rstrip('0').ljust(2, '0')}"
