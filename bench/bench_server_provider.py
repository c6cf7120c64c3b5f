"""The local OpenAI-compatible provider for bench_server.py (aiohttp, 127.0.0.1 only).

Run: python bench/bench_server_provider.py -> prints "PORT <n>" and serves until stdin closes.

The model name picks the stream: ``paced-<N>-<ms>`` sends N text chunks, one every <ms>
milliseconds (after a random phase within the first interval); ``burst-<N>`` sends N chunks at
once. Each chunk's text is ``t=<time.time()>;``,
stamped as it is written, so a client can tell how long the chunk took to reach it.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from aiohttp import web

HEAD = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench"}


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def stamped() -> bytes:
    return chunk({"content": f"t={time.time():.6f};"})


END = (
    chunk({}, "stop")
    + b"data: "
    + json.dumps(
        {**HEAD, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}
    ).encode()
    + b"\n\ndata: [DONE]\n\n"
)


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    name = str(body["model"]).rsplit("/", 1)[-1]
    kind, _, spec = name.partition("-")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    try:
        await resp.write(chunk({"role": "assistant", "content": ""}))
        if kind == "paced":
            count, interval_ms = (int(x) for x in spec.split("-"))
            # Streams start in step (the load starts them together): a random phase spreads their
            # chunks over the interval, as independent streams would be.
            await asyncio.sleep(random.uniform(0, interval_ms / 1000))
            for _ in range(count):
                await asyncio.sleep(interval_ms / 1000)
                await resp.write(stamped())
        else:
            await resp.write(b"".join(stamped() for _ in range(int(spec))))
        await resp.write(END)
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/chat/completions", completions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
