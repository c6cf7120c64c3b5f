"""The web chat page in headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest
from playwright.sync_api import Page
from support.replay_server import ReplayServer, stream_response

from .conftest import CHROMIUM, Running, ServerFactory, text_stream

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def test_reply_grows_while_streaming(page: Page, server: Running, provider: ReplayServer) -> None:
    words = [f"word{i} " for i in range(25)]
    provider.add(text_stream(words, delay=0.06))
    page.goto(server.url + "/")
    send(page, "Tell me something")
    reply = page.locator(".message.assistant").last
    reply.wait_for()
    samples: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = reply.get_attribute("data-state")
        samples.append(reply.locator(".body").inner_text())
        if state == "done":
            break
        time.sleep(0.03)
    assert reply.get_attribute("data-state") == "done"
    growing = [s for s in dict.fromkeys(samples) if s.strip()]
    # Seen at several lengths before the end, each a prefix of the next.
    assert len(growing) >= 4, growing
    assert all(b.startswith(a.strip()) for a, b in itertools.pairwise(growing))
    assert growing[-1].strip() == "".join(words).strip()
    meta = reply.locator(".meta").inner_text()
    assert "finish" not in meta and "7 in / 5 out tokens" in meta
    page.locator("#conversations li").first.wait_for()
    assert page.locator("#conversations li .title").first.inner_text() == "Tell me something"


def test_model_output_cannot_inject_markup(
    page: Page, dialogs: list[str], server: Running, provider: ReplayServer
) -> None:
    evil = [
        "**bold** and <img src=x onerror=alert(1)> ",
        "<script>alert(2)</script> ",
        "[click](javascript:alert(3)) ",
        "[ok](https://example.org/x) ",
        "`<b>code</b>`",
    ]
    provider.add(text_stream(evil, delay=0.01))
    page.goto(server.url + "/")
    send(page, "be evil")
    reply = page.locator('.message.assistant[data-state="done"]')
    reply.wait_for(timeout=10000)
    body = reply.locator(".body")
    assert body.locator("img, script, b").count() == 0
    assert body.locator("strong").inner_text() == "bold"
    text = body.inner_text()
    assert "<img src=x onerror=alert(1)>" in text and "<script>alert(2)</script>" in text
    links = body.locator("a")
    assert links.count() == 1
    assert links.first.get_attribute("href") == "https://example.org/x"
    assert "noopener" in links.first.get_attribute("rel")
    assert body.locator("code").inner_text() == "<b>code</b>"
    assert dialogs == []


def test_page_asks_for_the_token(page: Page, make_server: ServerFactory, provider: ReplayServer) -> None:
    server = make_server(token="page-token-123")
    provider.add(text_stream(["hello"]))
    page.goto(server.url + "/")
    page.locator("#token-dialog[open]").wait_for()
    page.fill("#token", "page-token-123")
    page.press("#token", "Enter")
    send(page, "hi")
    reply = page.locator('.message.assistant[data-state="done"]')
    reply.wait_for(timeout=10000)
    assert reply.locator(".body").inner_text().strip() == "hello"


RENDER = """(text) => {
  const started = performance.now();
  const fragment = window.renderMarkdown(text);
  const elapsed = performance.now() - started;
  const box = document.createElement("div");
  box.append(fragment);
  return {elapsed, html: box.innerHTML.length, text: box.textContent.length};
}"""

PATHOLOGICAL = {
    "backticks": "see " + "`" * 3000,
    "backtick runs": "`` ` " * 3000,
    "open brackets": "[" * 20000,
    "links without a url": "[a](x " * 5000 + ")",
    "stars": "*a " * 10000,
    "unclosed strong": "** a" * 5000,
    "underscores": "_a" * 10000,
    "urls": "http://" * 5000,
    "fence with spaces": "```" + " " * 20000 + "x y",
    "heading": "# a" + " " * 20000 + "#" * 20000 + "x",
    "long list item": "- item\n" + "  more\n" * 5000,
    "table row of pipes": "| a |\n| - |\n" + "|" * 20000,
    "delimiter of dashes": "a | b\n" + "-" * 20000 + "|" + " " * 20000 + "x",
    "escaped pipes": "| a |\n|---|\n" + "\\|" * 10000,
    "many rows": "| a | b |\n|---|---|\n" + "| `x | *y |\n" * 5000,
    "many header candidates": "a | b\n" * 10000,
}


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_markdown_renders_pathological_text_in_linear_time(page: Page, server: Running, name: str) -> None:
    page.goto(server.url + "/")
    text = PATHOLOGICAL[name]
    result = page.evaluate(RENDER, text)
    # The old regular expression took 4.4 s on the 3,000 backticks alone.
    assert result["elapsed"] < 500, (name, result)
    assert result["text"] > 0


def test_markdown_spans(page: Page, server: Running) -> None:
    page.goto(server.url + "/")
    html = page.evaluate(
        """(text) => { const box = document.createElement("div");
        box.append(window.renderMarkdown(text)); return box.innerHTML; }""",
        "``a`b`` and `x` **b _c_** ~~d~~ *e* snake_case_name [t](https://e.org/p) http://x.org/a.\n"
        "# Title ##\n```py\ncode\n```",
    )
    assert "<code>a`b</code>" in html and "<code>x</code>" in html
    assert "<strong>b <em>c</em></strong>" in html and "<del>d</del>" in html and "<em>e</em>" in html
    assert "snake_case_name" in html
    assert html.count("<a ") == 2 and 'href="http://x.org/a"' in html and "</a>." in html
    assert "<h1>Title</h1>" in html and 'data-lang="py"' in html


def test_another_origin_cannot_drive_the_server(page: Page, server: Running, provider: ReplayServer) -> None:
    # A page on another origin (another port of this machine), with no CSP of its own.
    evil = ReplayServer()
    evil.add(stream_response(b"<!doctype html><title>evil</title>", content_type="text/html"), repeat=True)
    with evil:
        page.goto(evil.url + "/")
        outcome = page.evaluate(
            """async (target) => {
              const result = {};
              try {
                await fetch(target + "/api/chat", {method: "POST", mode: "no-cors",
                  headers: {"content-type": "text/plain"}, body: JSON.stringify({content: "hi"})});
                result.fetch = "sent";
              } catch (e) { result.fetch = "failed"; }
              result.ws = await new Promise((resolve) => {
                const ws = new WebSocket(target.replace("http", "ws") + "/ws");
                ws.onopen = () => { ws.close(); resolve("open"); };
                ws.onerror = () => resolve("refused");
              });
              return result;
            }""",
            server.url,
        )
    assert outcome["ws"] == "refused"
    time.sleep(0.2)
    assert provider.requests == []  # the chat never ran
    conversations = httpx.get(server.url + "/api/conversations").json()["conversations"]
    assert conversations == []


TABLE_HTML = """(text) => { const box = document.createElement("div");
  box.append(window.renderMarkdown(text)); return box.innerHTML; }"""


def test_markdown_tables(page: Page, server: Running) -> None:
    page.goto(server.url + "/")
    html = page.evaluate(
        TABLE_HTML,
        "Before\n| a | b | c |\n|:--|:-:|--:|\n| 1 | **2** | `x\\|y` |\n| only one |\n"
        "| <img src=x onerror=alert(1)> | [l](javascript:x) | 3 | extra |\n\nAfter",
    )
    assert html.startswith("<p>Before</p>") and html.endswith("<p>After</p>")
    assert '<div class="table-wrap"><table><thead><tr>' in html
    assert (
        '<th class="align-left">a</th><th class="align-center">b</th><th class="align-right">c</th>' in html
    )
    assert '<td class="align-center"><strong>2</strong></td>' in html
    assert "<code>x|y</code>" in html
    # A short row is filled, a long one cut to the header's columns; markup stays text.
    assert (
        '<tr><td class="align-left">only one</td><td class="align-center"></td><td class="align-right"></td></tr>'
        in html
    )
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html and "extra" not in html
    assert "href" not in html
    # Not tables: no delimiter row, a column count that differs, a delimiter row without pipes.
    for text in ["a | b\nc | d", "| a | b |\n|---|\n| 1 | 2 |", "a | b\n---\n"]:
        assert "<table>" not in page.evaluate(TABLE_HTML, text), text
    # While a table streams in, its header row is a paragraph until the delimiter row arrives.
    assert "<table>" not in page.evaluate(TABLE_HTML, "| a | b |\n|--")
    assert "<table>" in page.evaluate(TABLE_HTML, "| a | b |\n|--|--")
