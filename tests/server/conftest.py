"""A real uvicorn serving cllm's app on 127.0.0.1, in front of the scripted replay provider."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from support.replay_server import ReplayServer, ScriptedResponse, sse_events, stream_response

from cllm.server.app import create_app
from cllm.server.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PROVIDER_KEY = "sk-provider-secret-0123456789"


def chunk(delta: dict[str, Any], finish: str | None = None, *, model: str = "gpt-test") -> dict[str, Any]:
    return {
        "id": "chatcmpl-replay",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def sse_body(chunks: list[dict[str, Any]], *, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


USAGE = {
    "id": "chatcmpl-replay",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-test",
    "choices": [],
    "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
}


def text_chunks(words: list[str], finish: str = "stop", usage: bool = True) -> list[dict[str, Any]]:
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": w}) for w in words]
    chunks.append(chunk({}, finish))
    if usage:
        chunks.append(USAGE)
    return chunks


def text_stream(words: list[str], *, delay: float = 0.0, **kwargs: Any) -> ScriptedResponse:
    """The provider streams ``words`` (one chunk each), ``delay`` seconds apart."""
    return stream_response(sse_events(sse_body(text_chunks(words))), delay=delay, **kwargs)


def tool_chunks() -> list[dict[str, Any]]:
    first = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
    }
    pieces = ['{"city"', ': "Par', 'is", "unit"', ': "c"}']
    chunks = [chunk(first)]
    chunks += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces]
    chunks += [chunk({}, "tool_calls"), USAGE]
    return chunks


def text_then_tool_chunks() -> list[dict[str, Any]]:
    """ "Hi", then the tool call of `tool_chunks`."""
    return [chunk({"role": "assistant", "content": "Hi"}), *tool_chunks()]


def feed_failing_on_tool_calls(feed: Callable[..., Any]) -> Callable[..., Any]:
    """``StreamAccumulator.feed`` raising RecursionError on tool calls, as tool-call arguments
    nested thousands of levels deep once made it do: a failure inside a running stream that is
    no `cllm.CllmError`."""

    def failing(self: Any, chunk: Any) -> Any:
        if chunk.tool_calls:
            raise RecursionError("maximum recursion depth exceeded")
        return feed(self, chunk)

    return failing


@dataclass
class Running:
    url: str
    app: Any
    server: uvicorn.Server
    settings: Settings

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :] + "/ws"


def start_server(settings: Settings, **app_options: Any) -> tuple[Running, threading.Thread]:
    app = create_app(settings, **app_options)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", ws_max_size=settings.max_body, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return Running(f"http://127.0.0.1:{port}", app, server, settings), thread


def stop_server(running: Running, thread: threading.Thread) -> None:
    running.server.should_exit = True
    thread.join(10)


def write_config(path: Path, provider: ReplayServer, extra: str = "") -> Path:
    path.write_text(
        f"""default_model = "test"

[models.test]
model = "openai/gpt-test"
api_base = "{provider.url}/v1"
api_key = "{PROVIDER_KEY}"
{extra}
"""
    )
    return path


ServerFactory = Callable[..., Running]


@pytest.fixture
def make_server(tmp_path: Path, replay_server: ReplayServer) -> Iterator[ServerFactory]:
    """Start a server with options (token, max_body, max_streams_per_client, resume_ttl, cors_origins...);
    ``config_extra`` is appended to the config file (after the ``[models.test]`` alias)."""
    started: list[tuple[Running, threading.Thread]] = []

    def make(config_extra: str = "", **options: Any) -> Running:
        config = write_config(tmp_path / f"config{len(started)}.toml", replay_server, config_extra)
        options.setdefault("db", str(tmp_path / "cllm.db"))
        settings = Settings.load(options, config)
        running, thread = start_server(settings)
        started.append((running, thread))
        return running

    yield make
    for running, thread in started:
        stop_server(running, thread)


@pytest.fixture
def server(make_server: ServerFactory) -> Running:
    return make_server()


@pytest.fixture
def provider(replay_server: ReplayServer) -> ReplayServer:
    return replay_server


def read_sse(response: httpx.Response) -> Iterator[tuple[str | None, str, Any]]:
    """(id, event, data) for each event of a streamed httpx response."""
    event_id: str | None = None
    event = "message"
    data: list[str] = []
    for line in response.iter_lines():
        if not line:
            if data:
                yield event_id, event, json.loads("\n".join(data))
            event_id, event, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "event":
                event = value
            elif field == "data":
                data.append(value)


# -- the web page in headless Chromium (Debian's), driven by Playwright -----------------------------

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

SCREENS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 400, "height": 800}}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def dialogs() -> list[str]:
    """alert()/confirm() dialogs the page opened."""
    return []


@pytest.fixture
def page(browser: Browser, dialogs: list[str]) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


@pytest.fixture(params=list(SCREENS))
def screen(request: pytest.FixtureRequest) -> str:
    """Each test using it runs at a desktop width and at a phone width."""
    return str(request.param)


@pytest.fixture
def ui(browser: Browser, screen: str, dialogs: list[str]) -> Iterator[Page]:
    """A page at the `screen`'s size that may use the clipboard."""
    phone = screen == "phone"
    context = browser.new_context(
        viewport=SCREENS[screen], is_mobile=phone, has_touch=phone, device_scale_factor=1
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()
    assert errors == [], "the page's scripts failed"
