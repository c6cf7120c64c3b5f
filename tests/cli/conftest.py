"""Helpers for the command-line tests: a scripted OpenAI-compatible provider and a `cllm` runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.replay_server import Piece, ReplayServer, ScriptedResponse, stream_response

MODEL = "openai/test-model"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def usage_chunk(prompt: int = 11, completion: int = 7) -> bytes:
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "test-model",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def text_stream(
    pieces: Sequence[str],
    *,
    delay: float = 0.0,
    usage: bool = True,
    first_delay: float | None = None,
    reasoning: Sequence[str] = (),
) -> ScriptedResponse:
    """A streamed answer: one chunk per piece, ``delay`` seconds apart (after any reasoning pieces)."""
    out = [
        Piece(chunk({"role": "assistant", "content": ""}), first_delay if first_delay is not None else 0.0)
    ]
    out += [Piece(chunk({"reasoning_content": r}), delay) for r in reasoning]
    out += [Piece(chunk({"content": p}), delay) for p in pieces]
    out.append(Piece(chunk({}, "stop")))
    if usage:
        out.append(Piece(usage_chunk()))
    out.append(Piece(DONE))
    return stream_response(out)


def tool_call_stream(
    name: str, arguments: str, call_id: str = "call_1", fragments: int = 3
) -> ScriptedResponse:
    """A streamed tool call whose arguments arrive in a few fragments."""
    size = max(1, len(arguments) // fragments + 1)
    parts = [arguments[i : i + size] for i in range(0, len(arguments), size)]
    out = [
        chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ],
            }
        )
    ]
    out += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in parts]
    out += [chunk({}, "tool_calls"), usage_chunk(), DONE]
    return stream_response(out)


@dataclass
class Cli:
    """Runs `python -m cllm.cli` with its own CLLM_HOME, pointed at the scripted provider."""

    home: Path
    server: ReplayServer
    env: dict[str, str]

    @property
    def api_base(self) -> str:
        return self.server.url + "/v1"

    def args(self, *args: str, model: bool = True) -> list[str]:
        base = [sys.executable, "-m", "cllm.cli"]
        # The scripted model goes first, so a `--` in args still ends the options; an explicit -m wins.
        extra = ["-m", MODEL, "-o", "api_base", self.api_base] if model and "-m" not in args else []
        return [*base, *extra, *args]

    def run(
        self,
        *args: str,
        input: str | None = None,
        model: bool = True,
        timeout: float = 30,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(*args, model=model),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env or self.env,
            timeout=timeout,
        )

    def start(
        self, *args: str, model: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.args(*args, model=model),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or self.env,
        )

    def run_many(
        self, *runs: tuple[list[str], dict[str, str] | None], model: bool = True, timeout: float = 60
    ) -> list[subprocess.CompletedProcess[str]]:
        """Several independent runs at once (each start-up imports LiteLLM: this halves the wait)."""
        procs = [(args, self.start(*args, env=env, model=model)) for args, env in runs]
        results = []
        for args, proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
        return results

    def requests(self) -> list[dict[str, Any]]:
        return [e.request.json for e in self.server.exchanges if e.request.path.endswith("/chat/completions")]

    def logs(self, *args: str) -> list[dict[str, Any]]:
        result = self.run("logs", "--json", "-n", "0", *args, model=False)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def last_user_text(request: Any) -> str:
    """The text of the last user message of a recorded chat-completions request."""
    users = [m for m in request.json["messages"] if m["role"] == "user"]
    return str(users[-1]["content"]) if users else ""


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLLM_", "OPENAI_", "ANTHROPIC_"))}
    env.pop("PYTHONUNBUFFERED", None)
    env.update(CLLM_HOME=str(home), LITELLM_LOCAL_MODEL_COST_MAP="True", OPENAI_API_KEY="sk-test")
    return env


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    with ReplayServer() as server:
        home = tmp_path / "home"
        yield Cli(home, server, base_env(home))
