"""A local OpenAI-compatible provider for the benchmarks (aiohttp, 127.0.0.1 only).

Run: python bench/provider_server.py [--uvloop]  -> prints "PORT <n>" and serves until stdin closes.

The model name picks the stream (so one server serves every scenario):
  text-<N>         N one-word text chunks, all at once (a buffered burst)
  tool-<N>         one tool call whose arguments arrive in N fragments
  finishgap-<N>    a tool call in N fragments, a pause long enough for the client to catch up,
                   then the closing fragment with the finish chunk; GET /last tells when that
                   was written (time.time())
  slow             text chunks every 2 ms for up to 20 s; GET /last tells when the client went away
  paced-<N>-<ms>   N text chunks <ms> apart (after a random phase within the first interval)
  burst-<N>        N text chunks at once
  args-<B>-<D>     one tool call whose arguments (a JSON object of about B bytes) arrive in D-byte
                   fragments, all at once
  argspaced-<N>-<ms>  one tool call whose arguments arrive in N fragments <ms> apart
In paced and burst streams each chunk's text is ``t=<time.time()>;``, stamped as it is written, so a
client can tell how long the chunk took to reach it (bench_server.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from aiohttp import web

STATE: dict[str, float] = {}


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return sse(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


USAGE = sse(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5000, "total_tokens": 5010},
    }
)


def stamped() -> bytes:
    return chunk({"content": f"t={time.time():.6f};"})


def tool_fragments(n: int) -> list[bytes]:
    parts = [
        chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "write_file", "arguments": ""},
                    }
                ],
            }
        )
    ]
    parts.append(
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"path": "a.py", "text": "'}}]})
    )
    for i in range(n - 2):
        parts.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": f"line {i}\\n"}}]}))
    parts.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"}'}}]}))
    return parts


def args_fragments(size: int, step: int) -> list[bytes]:
    """A tool call whose arguments are ``{"path": ..., "text": ...}`` of about ``size`` bytes, ``step`` bytes
    per fragment (never splitting an escape)."""
    text = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[: max(size - 32, 0)]
    arguments = '{"path": "notes.md", "text": "' + text + '"}'
    head = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "write_file", "arguments": ""},
    }
    parts = [chunk({"role": "assistant", "content": None, "tool_calls": [head]})]
    for i in range(0, len(arguments), step):
        piece = arguments[i : i + step]
        parts.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    return parts


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = str(body["model"])
    kind, _, count = model.partition("-")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if kind == "slow":
        STATE.pop("closed", None)
        try:
            for i in range(10_000):
                await resp.write(chunk({"content": f"w{i} "}))
                await asyncio.sleep(0.002)
        except (ConnectionResetError, ConnectionError, RuntimeError):
            STATE["closed"] = time.time()
            return resp
        await resp.write(chunk({}, "stop") + b"data: [DONE]\n\n")
        return resp
    if kind == "paced":
        n, interval_ms = (int(x) for x in count.split("-"))
        await resp.write(chunk({"role": "assistant", "content": ""}))
        # Streams start in step (the load starts them together): a random phase spreads their
        # chunks over the interval, as independent streams would be.
        try:
            await asyncio.sleep(random.uniform(0, interval_ms / 1000))
            for _ in range(n):
                await asyncio.sleep(interval_ms / 1000)
                await resp.write(stamped())
            await resp.write(chunk({}, "stop") + USAGE + b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return resp
    if kind == "args":
        size, step = (int(x) for x in count.split("-"))
        body = b"".join(args_fragments(size, step)) + chunk({}, "tool_calls") + USAGE + b"data: [DONE]\n\n"
        await resp.write(body)
        await resp.write_eof()
        return resp
    if kind == "argspaced":
        n, interval_ms = (int(x) for x in count.split("-"))
        parts = tool_fragments(n)
        try:
            for part in parts:
                await resp.write(part)
                await asyncio.sleep(interval_ms / 1000)
            await resp.write(chunk({}, "tool_calls") + USAGE + b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return resp
    n = int(count)
    if kind == "burst":
        head = chunk({"role": "assistant", "content": ""})
        await resp.write(head + b"".join(stamped() for _ in range(n)))
        await resp.write(chunk({}, "stop") + USAGE + b"data: [DONE]\n\n")
    elif kind == "text":
        head = [chunk({"role": "assistant", "content": ""})]
        body_parts = head + [chunk({"content": f"w{i} "}) for i in range(n)]
        await resp.write(b"".join(body_parts) + chunk({}, "stop") + USAGE + b"data: [DONE]\n\n")
    elif kind == "tool":
        await resp.write(b"".join(tool_fragments(n)) + chunk({}, "tool_calls") + USAGE + b"data: [DONE]\n\n")
    elif kind == "finishgap":
        parts = tool_fragments(n)
        await resp.write(b"".join(parts[:-1]))
        await asyncio.sleep(0.3 + n * 0.001)
        STATE["finish"] = time.time()
        await resp.write(parts[-1] + chunk({}, "tool_calls") + USAGE + b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def last(request: web.Request) -> web.Response:
    return web.json_response(STATE)


async def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/last", last)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    if "--uvloop" in sys.argv[1:]:
        # bench_server.py: hundreds of concurrent streams; the provider should stay a small part of the cost.
        import uvloop

        uvloop.install()
    asyncio.run(main())
