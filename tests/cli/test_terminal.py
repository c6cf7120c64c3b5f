"""The terminal view, in a real terminal (tmux): spinner, live markdown, scrollback, chat, approval."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import DONE, MODEL, Cli, chunk, last_user_text, text_stream, tool_call_stream, usage_chunk
from support import faults
from support.replay_server import Piece, RecordedRequest, ScriptedResponse, stream_response

from cllm.cli.chat import PROMPT
from cllm.cli.display import SPINNER

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]

LONG_ANSWER = (
    "# Heading One\n\nSome **bold** text and `inline code`.\n\n```python\ndef f(x):\n    return x + 1\n```\n\n"
    + "".join(f"Line {i} of the long answer.\n\n" for i in range(60))
    + "The end."
)


class Terminal:
    """A tmux session of its own (own server socket) running one command."""

    def __init__(self, tmp: Path, command: list[str], env: dict[str, str]) -> None:
        self.socket = f"cllm-test-{id(self)}"
        script = tmp / "run.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        script.write_text(f'{exports}{shlex.join(command)}\necho "EXITED $?"\nsleep 120\n')
        self._tmux(
            "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", f"bash {shlex.quote(str(script))}"
        )

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def scrollback(self) -> str:
        return self._tmux("capture-pane", "-p", "-S", "-", "-t", "t")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, check: Callable[[str], bool], timeout: float = 20.0, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def close(self) -> None:
        self._tmux("kill-server")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_(command: list[str], env: dict[str, str]) -> Terminal:
        term = Terminal(tmp_path, command, env)
        opened.append(term)
        return term

    yield open_
    for term in opened:
        term.close()


def _cllm(cli: Cli, *args: str) -> list[str]:
    return [sys.executable, "-m", "cllm.cli", "-m", MODEL, "-o", "api_base", cli.api_base, *args]


def test_spinner_then_rendered_markdown_and_a_clean_scrollback(
    cli: Cli, terminal: Callable[..., Terminal]
) -> None:
    pieces = [LONG_ANSWER[i : i + 9] for i in range(0, len(LONG_ANSWER), 9)]
    cli.server.add(text_stream(pieces, delay=0.008, first_delay=1.5))
    term = terminal(_cllm(cli, "Tell me everything"), cli.env)
    # The spinner turns while waiting for the first token.
    term.wait_for(lambda s: any(c in s for c in SPINNER), what="the spinner")
    assert "Heading" not in term.screen()
    term.wait_for(lambda s: "EXITED" in s, what="the end")
    scrollback = term.scrollback()
    assert "EXITED 0" in scrollback
    lines = scrollback.splitlines()
    assert not any(c in scrollback for c in SPINNER)  # erased once the answer began
    assert "Heading One" in scrollback and "# Heading" not in scrollback
    assert "Some bold text and inline code." in scrollback and "**" not in scrollback
    assert "def f(x):" in scrollback and "```" not in scrollback
    # Taller than the terminal, yet every line is in the scrollback exactly once, in order.
    numbered = [line.strip() for line in lines if line.startswith("Line ")]
    assert numbered == [f"Line {i} of the long answer." for i in range(60)]
    assert [line.strip() for line in lines].count("The end.") == 1


def test_chat_streams_ctrl_c_stops_the_reply_and_exit_quits(
    cli: Cli, terminal: Callable[..., Terminal]
) -> None:
    def respond(request: RecordedRequest) -> ScriptedResponse:
        if last_user_text(request) == "count slowly":
            return text_stream([f"number {i}\n\n" for i in range(100)], delay=0.1)
        return text_stream(["Hello ", "**there**", "!"], delay=0.05)

    cli.server.add(respond, repeat=True)
    term = terminal(
        [sys.executable, "-m", "cllm.cli", "chat", "-m", MODEL, "-o", "api_base", cli.api_base], cli.env
    )
    term.wait_for(lambda s: PROMPT.strip() in s and "/exit" in s, what="the chat prompt")
    term.keys("hi", "Enter")
    term.wait_for(lambda s: "Hello there!" in s, what="the first reply")
    term.keys("count slowly", "Enter")
    term.wait_for(lambda s: "number 3" in s, what="the slow reply")
    term.keys("C-c")
    screen = term.wait_for(lambda s: "interrupted" in s, what="the interruption")
    assert "number 99" not in screen
    term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), what="the prompt again")
    term.keys("/exit", "Enter")
    term.wait_for(lambda s: "EXITED 0" in s, what="the chat to end")
    logs = cli.logs()
    assert [r["prompt"] for r in logs] == ["hi", "count slowly"]
    assert logs[0]["text"] == "Hello **there**!" and not logs[0]["interrupted"]
    assert logs[1]["interrupted"] and logs[1]["text"].startswith("number 0")
    assert logs[1]["error"] == "interrupted"  # the user's Ctrl-C, in the user's words
    assert len({r["conversation_id"] for r in logs}) == 1
    # The second turn carried the first one.
    assert [m["content"] for m in cli.server.requests[1].json["messages"]] == [
        "hi",
        "Hello **there**!",
        "count slowly",
    ]


def test_approve_asks_on_the_terminal(cli: Cli, terminal: Callable[..., Terminal], tmp_path: Path) -> None:
    functions = tmp_path / "f.py"
    functions.write_text("def get_weather(city: str) -> str:\n    return city + ': rain'\n")

    def respond(request: RecordedRequest) -> ScriptedResponse:
        if request.json["messages"][-1]["role"] == "tool":
            return text_stream(["Take an umbrella."])
        return tool_call_stream("get_weather", '{"city": "Oslo"}')

    cli.server.add(respond, repeat=True)
    term = terminal(_cllm(cli, "--functions", str(functions), "--approve", "Weather?"), cli.env)
    term.wait_for(
        lambda s: re.search(r'Run get_weather\(\{"city": "Oslo"\}\)\? \[y/N\]', s) is not None, what="ask"
    )
    term.keys("y", "Enter")
    screen = term.wait_for(lambda s: "EXITED" in s, what="the end")
    assert "Take an umbrella." in screen and "EXITED 0" in screen
    assert cli.server.requests[1].json["messages"][-1]["content"] == "Oslo: rain"


def test_tool_call_progress_is_live_while_the_arguments_are_written(
    cli: Cli, terminal: Callable[..., Terminal]
) -> None:
    arguments = '{"path": "notes.txt", "text": "' + "".join(f"word{i} " for i in range(40)) + '"}'
    parts = [arguments[i : i + 12] for i in range(0, len(arguments), 12)]
    start = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "write_file", "arguments": ""},
    }
    pieces = [Piece(chunk({"role": "assistant", "content": None, "tool_calls": [start]}))]
    pieces += [
        Piece(chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}), delay=0.12) for p in parts
    ]
    pieces += [Piece(chunk({}, "tool_calls")), Piece(usage_chunk()), Piece(DONE)]
    cli.server.add(stream_response(pieces))
    term = terminal(_cllm(cli, "Save my notes"), cli.env)
    # While the arguments stream, one status line shows the tool, a growing byte count and the
    # arguments as they form.
    seen: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "EXITED" not in (screen := term.screen()):
        match = re.search(r"⚙ write_file · (\d+) bytes · (.*)", screen)
        if match:
            if not seen or int(match.group(1)) > seen[-1]:
                seen.append(int(match.group(1)))
            assert match.group(2).strip().lstrip("…") in arguments  # the latest part of the arguments
        time.sleep(0.05)
    assert len(seen) >= 5, seen  # many distinct sizes: live, not a single line at the end
    assert seen[-1] <= len(arguments)
    screen = term.wait_for(lambda s: "EXITED" in s, what="the end")
    assert "EXITED 0" in screen
    assert "⚙" not in screen  # the status line is gone, replaced by the finished call
    assert re.search(r"tool call write_file\(.*notes\.txt.*\) · \d+ bytes", screen, re.DOTALL)


def test_a_restarted_answer_marks_the_partial_as_abandoned(
    cli: Cli, terminal: Callable[..., Terminal]
) -> None:
    cli.server.add(faults.text_stream(faults.WORDS, cut_after=6), text_stream(["Fresh ", "answer."]))
    term = terminal(_cllm(cli, "--retries", "1", "--mid-stream", "restart", "--no-log", "hi"), cli.env)
    term.wait_for(lambda s: "EXITED" in s, what="the end")
    scrollback = term.scrollback()
    assert "EXITED 0" in scrollback
    partial = scrollback.index("word5")
    abandoned = scrollback.index("the answer above was abandoned")
    restart = scrollback.index('restarting on openai/test-model after "connection reset"')
    assert partial < abandoned < restart < scrollback.index("Fresh answer.")


def test_answering_no_at_approve_ends_the_run(
    cli: Cli, terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    functions = tmp_path / "f.py"
    functions.write_text("def get_weather(city: str) -> str:\n    return city + ': rain'\n")
    cli.server.add(tool_call_stream("get_weather", '{"city": "Oslo"}'), repeat=True)
    term = terminal(_cllm(cli, "--functions", str(functions), "--approve", "Weather?"), cli.env)
    term.wait_for(lambda s: "[y/N]" in s, what="the question")
    term.keys("n", "Enter")
    screen = term.wait_for(lambda s: "EXITED" in s, what="the end")
    assert "EXITED 0" in screen
    assert "stopped: you declined get_weather" in screen
    assert screen.count("[y/N]") == 1  # not asked again
    assert len(cli.server.requests) == 1


def test_chat_on_a_pipe_in_a_terminal_has_no_warning_and_no_junk(
    cli: Cli, terminal: Callable[..., Terminal]
) -> None:
    cli.server.add(lambda request: text_stream(["Hello ", "**there**", "!"]), repeat=True)
    chat = shlex.join([sys.executable, "-m", "cllm.cli", "chat", "-m", MODEL, "-o", "api_base", cli.api_base])
    term = terminal(["bash", "-c", f"printf 'hi\\nbye\\n' | {chat}"], cli.env)
    screen = term.wait_for(lambda s: "EXITED" in s, what="the end")
    assert "EXITED 0" in screen
    assert screen.count("Hello there!") == 2  # both lines sent, each reply rendered
    assert "not a terminal" not in screen and "^M" not in screen and "Warning" not in screen
    assert len(cli.server.requests) == 2


def test_logs_are_rendered_on_a_terminal(cli: Cli, terminal: Callable[..., Terminal]) -> None:
    from cllm.core.finish import FinishReason
    from cllm.core.response import Response
    from cllm.store import ConversationStore

    with ConversationStore(cli.home / "cllm.db") as store:
        conversation = store.create_conversation(model=MODEL)
        store.log_response(
            conversation.id,
            Response(
                text="# Rivers\n\nThe **Nile** is long.\n\n- one\n- two", finish_reason=FinishReason.STOP
            ),
            model=MODEL,
            messages_in=[{"role": "user", "content": "Tell me about rivers"}],
            prompt="Tell me about rivers",
        )
    term = terminal([sys.executable, "-m", "cllm.cli", "logs"], cli.env)
    screen = term.wait_for(lambda s: "EXITED" in s, what="the end")
    assert "EXITED 0" in screen
    assert "The Nile is long." in screen and "**" not in screen
    assert "Rivers" in screen and "# Rivers" not in screen and "## " not in screen
    assert "• one" in screen and "Tell me about rivers" in screen
    assert f"{MODEL} · " in screen  # the header line
    piped = cli.run("logs", model=False)
    assert "The **Nile** is long." in piped.stdout  # raw markdown on a pipe


@pytest.mark.timeout(300)
def test_the_local_model_shows_it_is_reading_a_long_prompt(
    cli: Cli, terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    pytest.importorskip("llama_cpp", reason="needs the 'local' extra")
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(f"Note {i}: the river rose by {i % 7} cm." for i in range(120)))
    command = shlex.join(
        [sys.executable, "-m", "cllm.cli", "-m", "local/gemma-3-270m", "-o", "max_tokens", "4", "summarize"]
    )
    term = terminal(["bash", "-c", f"{command} < {shlex.quote(str(text))}"], cli.env)
    screen = term.wait_for(
        lambda s: re.search(r"reading the prompt: [\d,]+ of [\d,]+ tokens", s) is not None or "EXITED" in s,
        timeout=240,
        what="the progress",
    )
    match = re.search(r"reading the prompt: ([\d,]+) of ([\d,]+) tokens", screen)
    assert match, screen
    assert int(match.group(2).replace(",", "")) > 1000
    screen = term.wait_for(lambda s: "EXITED" in s, timeout=240, what="the end")
    assert "reading the prompt" not in screen  # the status line is gone once the answer began
    assert "cut off at the token limit (max_tokens 4" in screen and "EXITED 3" in screen
