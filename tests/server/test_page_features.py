"""The web page as a daily chat user meets it, at a desktop and a phone width (headless Chromium).

Each test runs at both sizes (the ``screen`` fixture) and saves screenshots under its tmp_path.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect
from support.replay_server import ReplayServer, ScriptedResponse, sse_events, stream_response

from .conftest import CHROMIUM, USAGE, Running, ServerFactory, chunk, sse_body, text_stream

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

TABLE = (
    "Rivers:\n\n"
    "| River | Length (km) | Mouth |\n"
    "|:------|------------:|:-----:|\n"
    "| Danube | 2,850 | Black Sea |\n"
    "| Rhine | 1,230 | North Sea |\n"
    "| `a\\|b` | **bold** | <b>x</b> |\n"
)

CODE = "Run this:\n\n```python\nprint('hello, world')\n```\n\nDone."


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def finished_reply(page: Page) -> Locator:
    """The last reply, once it has ended (finished, failed or stopped)."""
    reply = page.locator(".message.assistant").last
    expect(reply).not_to_have_attribute("data-state", "streaming")
    return reply


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def stream_of(text: str, *, delay: float = 0.0, model: str = "gpt-test") -> ScriptedResponse:
    """The provider (reporting itself as ``model``) streams ``text`` in pieces of a few characters."""
    pieces = [text[i : i + 12] for i in range(0, len(text), 12)]
    chunks = [chunk({"role": "assistant", "content": ""}, model=model)]
    chunks += [chunk({"content": p}, model=model) for p in pieces]
    chunks += [chunk({}, "stop", model=model), {**USAGE, "model": model}]
    return stream_response(sse_events(sse_body(chunks)), delay=delay)


def chat_via_api(server: Running, provider: ReplayServer, prompt: str, answer: str = "ok") -> str:
    """A conversation made without the page; its id."""
    provider.add(text_stream([answer]))
    r = httpx.post(server.url + "/api/chat", json={"content": prompt}, timeout=10)
    assert r.status_code == 200 and "event: finish" in r.text  # read to the end: saved
    head = next(line for line in r.text.splitlines() if line.startswith("data: "))
    return str(json.loads(head[6:])["conversation_id"])


def open_sidebar(page: Page, screen: str) -> None:
    """On a phone the conversations are behind the menu button."""
    if screen == "phone":
        page.click("#sidebar-toggle")
        page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().left >= 0")


def new_chat(page: Page, screen: str) -> None:
    open_sidebar(page, screen)
    page.click("#new-chat")


def conversation_ids(server: Running) -> list[str]:
    return [c["id"] for c in httpx.get(server.url + "/api/conversations").json()["conversations"]]


# -- tables ---------------------------------------------------------------------------------------


def test_tables_are_rendered(
    ui: Page, screen: str, server: Running, provider: ReplayServer, tmp_path: Path
) -> None:
    provider.add(stream_of(TABLE))
    ui.goto(server.url + "/")
    send(ui, "Compare three rivers")
    reply = finished_reply(ui)
    table = reply.locator(".body table")
    expect(table).to_have_count(1)
    assert table.locator("thead th").all_inner_texts() == ["River", "Length (km)", "Mouth"]
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(3)
    assert rows.nth(0).locator("td").all_inner_texts() == ["Danube", "2,850", "Black Sea"]
    assert table.locator("thead th").nth(1).get_attribute("class") == "align-right"
    assert table.locator("thead th").nth(2).get_attribute("class") == "align-center"
    third = rows.nth(2).locator("td")
    assert third.nth(0).locator("code").inner_text() == "a|b"  # an escaped pipe stays in its cell
    assert third.nth(1).locator("strong").inner_text() == "bold"
    assert third.nth(2).inner_text() == "<b>x</b>" and reply.locator("b").count() == 0
    assert "|" not in reply.locator(".body").inner_text().replace("a|b", "")
    no_horizontal_scroll(ui)
    shot(ui, tmp_path, f"table-{screen}")


# -- phone-sized windows ------------------------------------------------------------------------------


def no_horizontal_scroll(page: Page) -> None:
    widths = page.evaluate(
        """() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,
                  view: document.documentElement.clientWidth,
                  messages: document.getElementById("messages").scrollWidth,
                  messagesView: document.getElementById("messages").clientWidth})"""
    )
    assert widths["doc"] <= widths["view"] and widths["body"] <= widths["view"], widths
    assert widths["messages"] <= widths["messagesView"], widths


def test_layout_fits_the_window_and_the_sidebar_folds_away(
    ui: Page, screen: str, server: Running, provider: ReplayServer, tmp_path: Path
) -> None:
    chat_via_api(server, provider, "An earlier conversation with a rather long title that goes on and on")
    wide = (
        "A long line: " + "x" * 300 + "\n\n```\n" + "y" * 300 + "\n```\n\n"
        "| " + " | ".join(f"column {i}" for i in range(12)) + " |\n"
        "|" + "---|" * 12 + "\n"
        "| " + " | ".join(f"value {i}" for i in range(12)) + " |\n"
    )
    provider.add(stream_of(wide))
    ui.goto(server.url + "/")
    send(ui, "Something wide " + "z" * 200)
    finished_reply(ui)
    no_horizontal_scroll(ui)
    viewport = ui.viewport_size
    assert viewport is not None
    for control in ("#send", "#stop", "#model", "#prompt", "#sidebar-toggle"):
        box = ui.locator(control).bounding_box()
        assert box is not None, control
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (control, box)
        assert box["y"] + box["height"] <= viewport["height"], (control, box)
    sidebar = ui.locator("#sidebar")
    toggle = ui.locator("#sidebar-toggle")
    if screen == "phone":
        # Folded away by default, over the conversation when opened, away again once one is picked.
        expect(sidebar).not_to_be_in_viewport()
        expect(toggle).to_have_attribute("aria-expanded", "false")
        shot(ui, tmp_path, "layout-phone")
        toggle.click()
        ui.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().left >= 0")
        expect(ui.locator("#backdrop")).to_be_visible()
        no_horizontal_scroll(ui)
        shot(ui, tmp_path, "layout-phone-sidebar-open")
        ui.locator("#conversations li .title").last.click()
        expect(sidebar).not_to_be_in_viewport()
        expect(ui.locator(".message.user").first).to_contain_text("An earlier conversation")
        ui.click("#sidebar-toggle")
        ui.locator("#backdrop").click(position={"x": viewport["width"] - 10, "y": 400})
        expect(sidebar).not_to_be_in_viewport()
    else:
        expect(sidebar).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        shot(ui, tmp_path, "layout-desktop")
        toggle.click()
        expect(sidebar).to_be_hidden()
        assert ui.locator("main").bounding_box()["width"] == viewport["width"]  # type: ignore[index]
        ui.reload()
        expect(ui.locator("#conversations li").first).to_be_attached()
        expect(sidebar).to_be_hidden()  # the choice is remembered
        shot(ui, tmp_path, "layout-desktop-sidebar-hidden")
        ui.click("#sidebar-toggle")
        expect(sidebar).to_be_visible()
    provider.add(text_stream(["fine"]))
    send(ui, "still usable")
    expect(ui.locator(".message.assistant").last).to_have_attribute("data-state", "done")


# -- the URL --------------------------------------------------------------------------------------------


def test_url_names_the_conversation_and_history_works(
    ui: Page, screen: str, server: Running, provider: ReplayServer, tmp_path: Path
) -> None:
    ui.goto(server.url + "/")
    provider.add(text_stream(["first ", "answer"]))
    send(ui, "First question")
    finished_reply(ui)
    first = conversation_ids(server)[0]
    expect(ui).to_have_url(re.compile(rf"/\?c={first}$"))
    new_chat(ui, screen)
    expect(ui).to_have_url(server.url + "/")
    expect(ui.locator(".message")).to_have_count(0)
    provider.add(text_stream(["second ", "answer"]))
    send(ui, "Second question")
    finished_reply(ui)
    second = next(c for c in conversation_ids(server) if c != first)
    expect(ui).to_have_url(re.compile(rf"/\?c={second}$"))
    expect(ui.locator("#title")).to_have_text("Second question")

    # The new chat's entry became the second conversation's: back goes to the first.
    ui.go_back()
    expect(ui).to_have_url(re.compile(rf"/\?c={first}$"))
    expect(ui.locator(".message.assistant .body")).to_have_text("first answer")
    expect(ui.locator("#title")).to_have_text("First question")
    ui.go_forward()
    expect(ui.locator(".message.assistant .body")).to_have_text("second answer")
    # Picking a conversation in the list is a step in the history too.
    open_sidebar(ui, screen)
    ui.locator(f'#conversations li[data-id="{first}"] .title').click()
    expect(ui).to_have_url(re.compile(rf"/\?c={first}$"))
    expect(ui.locator(".message.assistant .body")).to_have_text("first answer")
    ui.go_back()
    expect(ui).to_have_url(re.compile(rf"/\?c={second}$"))
    expect(ui.locator(".message.assistant .body")).to_have_text("second answer")

    ui.reload()
    expect(ui).to_have_url(re.compile(rf"/\?c={second}$"))
    expect(ui.locator(".message.user")).to_have_text("Second question")
    expect(ui.locator(".message.assistant .body")).to_have_text("second answer")
    expect(ui.locator("#conversations li.active .title")).to_have_text("Second question")
    shot(ui, tmp_path, f"url-after-reload-{screen}")
    # Carrying on after a reload continues the same conversation.
    provider.add(text_stream(["third"]))
    send(ui, "And then?")
    expect(ui.locator(".message.assistant")).to_have_count(2)
    expect(ui.locator(".message.assistant").last).to_have_attribute("data-state", "done")
    assert len(httpx.get(f"{server.url}/api/conversations/{second}").json()["responses"]) == 2
    # A link to a conversation that is gone says so and starts afresh.
    ui.goto(server.url + "/?c=nonexistent")
    expect(ui.locator("#notice")).to_contain_text("no longer exists")
    expect(ui).to_have_url(server.url + "/")


def test_reload_while_a_reply_streams_picks_it_up(
    ui: Page, screen: str, server: Running, provider: ReplayServer, tmp_path: Path
) -> None:
    words = [f"w{i} " for i in range(40)]
    provider.add(text_stream(words, delay=0.05))
    ui.goto(server.url + "/")
    send(ui, "Count slowly")
    expect(ui.locator(".message.assistant .body")).to_contain_text("w3")
    ui.reload()
    reply = ui.locator(".message.assistant")
    expect(reply).to_have_count(1)
    expect(reply).to_have_attribute("data-state", "done")
    assert reply.locator(".body").inner_text().strip() == "".join(words).strip()  # nothing lost or repeated
    expect(ui.locator(".message.user")).to_have_text("Count slowly")
    ui.reload()  # now saved: shown once, from the store
    expect(ui.locator(".message.assistant")).to_have_count(1)
    expect(ui.locator(".message.assistant .body")).to_have_text("".join(words).strip())
    assert len(provider.requests) == 1


# -- models and cost -------------------------------------------------------------------------------------


def test_model_picker_offers_the_servers_models_and_each_reply_names_its_model(
    ui: Page, screen: str, make_server: ServerFactory, provider: ReplayServer, tmp_path: Path
) -> None:
    server = make_server(
        f"""
[models.other]
model = "openai/gpt-other"
api_base = "{provider.url}/v1"
api_key = "sk-other"
"""
    )
    ui.goto(server.url + "/")
    picker = ui.locator("#model")
    expect(picker.locator("option")).to_have_count(4)
    assert picker.locator("option").all_inner_texts() == ["Default model", "test", "other", "Other…"]
    provider.add(stream_of("from the default", model="gpt-test"))
    send(ui, "one")
    expect(finished_reply(ui).locator(".meta")).to_contain_text("test (openai/gpt-test)")
    picker.select_option("other")
    provider.add(stream_of("from the other", model="gpt-other-2025"))
    send(ui, "two")
    meta = finished_reply(ui).locator(".meta")
    expect(meta).to_contain_text("other (openai/gpt-other)")
    assert provider.requests[-1].json["model"] == "gpt-other"
    shot(ui, tmp_path, f"models-{screen}")
    # Any other name can still be typed.
    picker.select_option(label="Other…")
    expect(ui.locator("#model-custom")).to_be_visible()
    ui.fill("#model-custom", "nonsense/nothing")
    send(ui, "three")
    expect(finished_reply(ui).locator(".error")).to_be_visible()
    # Reopened, the conversation shows the model that last answered, and each reply's.
    ui.reload()
    expect(picker).to_have_value("other")
    metas = ui.locator(".message.assistant .meta")
    expect(metas).to_have_count(2)
    expect(metas.nth(0)).to_contain_text("test (openai/gpt-test)")
    expect(metas.nth(1)).to_contain_text("other (openai/gpt-other)")


def test_cost_is_readable_and_absent_when_unknown(
    ui: Page, screen: str, make_server: ServerFactory, provider: ReplayServer, tmp_path: Path
) -> None:
    server = make_server(
        f"""
[models.priced]
model = "openai/gpt-4o-mini"
api_base = "{provider.url}/v1"
api_key = "sk-priced"
"""
    )
    ui.goto(server.url + "/")
    provider.add(text_stream(["unpriced"]))
    send(ui, "no price")
    meta = finished_reply(ui).locator(".meta")
    expect(meta).to_contain_text("7 in / 5 out tokens")
    assert "$" not in meta.inner_text()
    ui.locator("#model").select_option("priced")
    provider.add(stream_of("priced answer", model="gpt-4o-mini"))
    send(ui, "with a price")
    text = finished_reply(ui).locator(".meta").inner_text()
    # 7 tokens in and 5 out at gpt-4o-mini's price: about $0.000004, in two significant digits.
    assert re.search(r"\$0\.00000\d{2}(?![\d])", text), text
    assert "$0.000000" not in text.replace("$0.00000", "")
    shot(ui, tmp_path, f"cost-{screen}")
    # Formatting on its own.
    formatted = ui.evaluate(
        """() => { const out = [];
          for (const n of [0, 0.00000042, 0.0000041, 0.00123, 0.00999, 0.0123, 1.5, 12.3456, null, NaN, -1])
            out.push(window.cllmReply.formatCost(n));
          return out; }"""
    )
    assert formatted == [
        "$0",
        "<$0.000001",
        "$0.0000041",
        "$0.0012",
        "$0.01",
        "$0.01",
        "$1.50",
        "$12.35",
        None,
        None,
        None,
    ]


# -- stop ---------------------------------------------------------------------------------------------------


def test_stop_says_stopped(
    ui: Page, screen: str, server: Running, provider: ReplayServer, tmp_path: Path
) -> None:
    provider.add(text_stream([f"w{i} " for i in range(200)], delay=0.03))
    ui.goto(server.url + "/")
    send(ui, "go on and on")
    expect(ui.locator(".message.assistant .body")).to_contain_text("w2")
    ui.click("#stop")
    reply = finished_reply(ui)
    expect(reply).to_have_attribute("data-state", "stopped")
    meta = reply.locator(".meta").inner_text()
    assert meta.startswith("stopped"), meta
    assert "finish" not in meta and "interrupted" not in meta and "cancelled" not in meta
    shot(ui, tmp_path, f"stopped-{screen}")
    ui.reload()
    meta = finished_reply(ui).locator(".meta").inner_text()
    assert meta.startswith("stopped") and "finish" not in meta, meta


# -- copying ---------------------------------------------------------------------------------------------------


def clipboard(page: Page) -> str:
    return str(page.evaluate("() => navigator.clipboard.readText()"))


def test_copy_a_reply_and_a_code_block(
    ui: Page, screen: str, server: Running, provider: ReplayServer, tmp_path: Path
) -> None:
    provider.add(stream_of(CODE))
    ui.goto(server.url + "/")
    send(ui, "Show me code")
    reply = finished_reply(ui)
    block = reply.locator(".code-block")
    expect(block).to_have_count(1)
    expect(block.locator(".code-bar")).to_contain_text("python")
    block.locator("button.copy").click()
    expect(block.locator("button.copy")).to_have_text("Copied")
    assert clipboard(ui) == "print('hello, world')"
    reply.locator(".actions button.copy").click()
    expect(reply.locator(".actions button.copy")).to_have_text("Copied")
    assert clipboard(ui) == CODE  # the reply's markdown, as the model wrote it
    shot(ui, tmp_path, f"copy-{screen}")
    # Without the clipboard API (plain http on another machine), the old way still copies.
    ui.evaluate("() => Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    ui.evaluate(
        """() => { window.__copied = null; document.addEventListener("copy", (e) => {
            window.__copied = document.getSelection().toString(); }); }"""
    )
    block.locator("button.copy").click()
    expect(block.locator("button.copy")).to_have_text("Copied")
    assert ui.evaluate("() => window.__copied") == "print('hello, world')"


# -- rename and delete ------------------------------------------------------------------------------------------


def test_rename_and_delete_a_conversation(
    ui: Page, screen: str, server: Running, provider: ReplayServer, tmp_path: Path
) -> None:
    keep = chat_via_api(server, provider, "Keep me")
    gone = chat_via_api(server, provider, "Delete me")
    ui.goto(f"{server.url}/?c={gone}")
    expect(ui.locator(".message.user")).to_have_text("Delete me")
    open_sidebar(ui, screen)
    items = ui.locator("#conversations li")
    expect(items).to_have_count(2)
    kept = ui.locator(f'#conversations li[data-id="{keep}"]')
    kept.hover()
    kept.locator("button.rename").click()
    field = kept.locator("input.rename-input")
    expect(field).to_be_focused()
    field.fill("Rivers of Europe")
    shot(ui, tmp_path, f"rename-{screen}")
    field.press("Enter")
    expect(kept.locator(".title")).to_have_text("Rivers of Europe")
    assert httpx.get(f"{server.url}/api/conversations/{keep}").json()["title"] == "Rivers of Europe"
    # Escape leaves the title as it was.
    kept.locator("button.rename").click()
    kept.locator("input.rename-input").fill("Not this")
    kept.locator("input.rename-input").press("Escape")
    expect(kept.locator(".title")).to_have_text("Rivers of Europe")

    doomed = ui.locator(f'#conversations li[data-id="{gone}"]')
    doomed.hover()
    doomed.locator("button.delete").click()
    dialog = ui.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Delete “Delete me”?")
    shot(ui, tmp_path, f"delete-{screen}")
    dialog.get_by_role("button", name="Cancel").click()
    expect(items).to_have_count(2)
    doomed.hover()
    doomed.locator("button.delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(items).to_have_count(1)
    assert conversation_ids(server) == [keep]
    # It was the open one: the page is a new chat again.
    expect(ui).to_have_url(server.url + "/")
    expect(ui.locator(".message")).to_have_count(0)
    assert httpx.get(f"{server.url}/api/conversations/{gone}").status_code == 404


# -- the icon ----------------------------------------------------------------------------------------------------


def test_favicon_and_no_missing_files(ui: Page, screen: str, server: Running, tmp_path: Path) -> None:
    failures: list[str] = []
    ui.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    ui.goto(server.url + "/")
    expect(ui.locator("#prompt")).to_be_visible()
    icon = httpx.get(server.url + "/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00" and b"PNG" in icon.content[:64]
    svg = httpx.get(server.url + ui.locator('link[rel="icon"]').get_attribute("href"))  # type: ignore[operator]
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    loaded = ui.evaluate(
        """async () => { const img = new Image(); img.src = "/favicon.ico";
        await img.decode(); return [img.naturalWidth, img.naturalHeight]; }"""
    )
    assert loaded == [32, 32]
    time.sleep(0.2)
    assert failures == []
    shot(ui, tmp_path, f"empty-{screen}")


# -- another attempt at a reply ------------------------------------------------------------------------------


def scripted_chat(events: list[tuple[str, dict[str, Any]]]) -> str:
    body = 'event: stream\ndata: {"stream_id":"s1","conversation_id":"c1","model":"primary"}\n\n'
    for number, (kind, data) in enumerate(events, 1):
        body += f"id: {number}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
    return body


FINISH = {
    "reason": "stop",
    "response": {"text": "", "finish_reason": "stop", "usage": None, "cost": None, "model": "backup-1"},
    "response_id": "r1",
    "conversation_id": "c1",
}


def test_an_attempt_line_and_a_discarded_partial_reply(
    ui: Page, screen: str, server: Running, tmp_path: Path
) -> None:
    events = [
        ("text-delta", {"text": "The first try said th"}),
        (
            "attempt",
            {"number": 2, "model": "backup", "error": "rate limited (429)", "delay": 1.5, "discard": True},
        ),
        ("text-delta", {"text": "The **second** try's answer."}),
        ("finish", FINISH),
    ]
    ui.route(
        "**/api/chat",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=scripted_chat(events)),
    )
    ui.goto(server.url + "/")
    send(ui, "try twice")
    reply = finished_reply(ui)
    expect(reply.locator(".attempt")).to_have_text(
        "attempt 2 · backup · after: rate limited (429) · delay 1.5 s"
    )
    expect(reply.locator(".body")).to_have_text("The second try's answer.")
    abandoned = reply.locator("details.abandoned")
    expect(abandoned).to_contain_text("abandoned partial reply")
    abandoned.locator("summary").click()
    expect(abandoned).to_contain_text("The first try said th")
    expect(reply.locator(".meta")).to_contain_text("backup (backup-1)")
    shot(ui, tmp_path, f"attempt-{screen}")

    # Without discard the text so far is kept and carried on; an attempt with fewer fields is fine.
    kept = [
        ("text-delta", {"text": "Kept "}),
        ("attempt", {"number": 2, "discard": False}),
        ("text-delta", {"text": "and continued."}),
        ("finish", FINISH),
    ]
    ui.unroute("**/api/chat")
    ui.route(
        "**/api/chat",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=scripted_chat(kept)),
    )
    new_chat(ui, screen)
    send(ui, "again")
    reply = finished_reply(ui)
    expect(reply.locator(".attempt")).to_have_text("attempt 2")
    expect(reply.locator(".body")).to_have_text("Kept and continued.")
    expect(reply.locator("details.abandoned")).to_have_count(0)
