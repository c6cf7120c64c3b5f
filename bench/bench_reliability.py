"""Streams that fail: how many answers complete, and how much text is lost or repeated.

Run: python bench/bench_reliability.py [--streams 200] [--concurrency 20]

A local DeepSeek-compatible provider (aiohttp, 127.0.0.1, its own thread) streams a known answer
for each of N streams. A fixed, seeded share of first requests fails: 5% are cut mid-stream (a TCP
reset after a random number of deltas) and 5% are reset before the first byte. Retried requests,
and continuations from an assistant prefix, are served whole. The same faults hit each of:

- ``raw LiteLLM``: ``litellm.acompletion(stream=True)`` as LiteLLM ships it (its openai client
  retries a failed request twice; nothing recovers a stream that broke after output) — the baseline;
- ``cllm continue``: ``retries=2, mid_stream="continue"`` (the target accepts an assistant prefix);
- ``cllm restart``: ``retries=2, mid_stream="restart"``.

Reported per client: the share of answers completed; characters missing from the final answer and
characters printed twice by a consumer that prints every text delta (a restart prints the abandoned
partial, then the whole answer); the time each failure adds (mean duration of failed streams minus
the median of clean ones); and ratios against the raw LiteLLM baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import random
import socket
import statistics
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from aiohttp import web

MODEL = "deepseek/deepseek-chat"
CHUNKS = 80
CHUNK_DELAY = 0.002


def full_text(stream: int) -> str:
    return "".join(f"s{stream}w{j}{chr(10) if j % 12 == 11 else ' '}" for j in range(CHUNKS))


def pieces_of(text: str) -> list[str]:
    words = text.split(" ")
    out = [w + " " for w in words[:-1]]
    if words[-1]:
        out.append(words[-1])
    return out


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return sse(
        {
            "id": "b",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "deepseek-chat",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def usage(prompt: int, completion: int) -> bytes:
    counts = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return sse({"id": "b", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-chat",
                "choices": [], "usage": counts})  # fmt: skip


@dataclass
class Provider:
    """The scripted provider: which first requests fail, and how."""

    faults: dict[str, tuple[str, int]]  # key -> ("mid", after N deltas) | ("before", 0)
    seen: dict[str, int] = field(default_factory=dict)
    port: int = 0

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body["messages"]
        key = messages[0]["content"]
        stream = int(key.rsplit("-", 1)[1])
        text = full_text(stream)
        prefix = ""
        if messages[-1]["role"] == "assistant":
            prefix = messages[-1]["content"]
        attempt = self.seen.get(key, 0)
        self.seen[key] = attempt + 1
        fault = self.faults.get(key) if attempt == 0 else None
        if fault and fault[0] == "before":
            _reset(request)
            return web.Response()  # never sent: the connection is gone
        rest = text[len(prefix) :] if text.startswith(prefix) else text
        parts = pieces_of(rest)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk({"role": "assistant", "content": ""}))
        for number, part in enumerate(parts):
            if fault and number == fault[1]:
                await asyncio.sleep(0.01)  # let the client read what was sent before the reset
                _reset(request)
                return response
            await asyncio.sleep(CHUNK_DELAY)
            await response.write(chunk({"content": part}))
        await response.write(chunk({}, "stop"))
        await response.write(usage(20, len(parts)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def serve(provider: Provider) -> None:
    ready = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", provider.completions)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        provider.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)


@dataclass
class Outcome:
    stream: int
    final: str
    printed: str
    completed: bool
    duration: float
    fault: str | None


async def run_raw(base: str, key: str) -> tuple[str, str, bool]:
    import litellm

    printed: list[str] = []
    try:
        wrapper = await litellm.acompletion(
            model=MODEL, messages=[{"role": "user", "content": key}], api_base=base, api_key="x", stream=True
        )
        async for item in wrapper:
            text = item.choices[0].delta.content if item.choices else None
            if text:
                printed.append(text)
    except Exception:
        return "".join(printed), "".join(printed), False
    return "".join(printed), "".join(printed), True


async def run_cllm(base: str, key: str, mode: str) -> tuple[str, str, bool]:
    import cllm

    printed: list[str] = []
    try:
        async with cllm.astream(MODEL, key, api_base=base, api_key="x", retries=2, mid_stream=mode) as s:
            async for event in s:
                if isinstance(event, cllm.TextDelta):
                    printed.append(event.text)
        response = s.response
    except cllm.CllmError as e:
        partial = getattr(e, "response", None)
        return (partial.text if partial else ""), "".join(printed), False
    return response.text, "".join(printed), response.finish_reason is cllm.FinishReason.STOP


async def run_all(
    client: str, base: str, streams: int, concurrency: int, faults: dict[int, str]
) -> list[Outcome]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Outcome:
        key = f"{client}-{i}"
        async with gate:
            started = time.perf_counter()
            if client == "raw":
                final, printed, done = await run_raw(base, key)
            else:
                final, printed, done = await run_cllm(base, key, client)
            return Outcome(i, final, printed, done, time.perf_counter() - started, faults.get(i))

    return list(await asyncio.gather(*(one(i) for i in range(streams))))


def matched(a: str, b: str) -> int:
    return sum(
        block.size for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
    )


def summarize(outcomes: list[Outcome]) -> dict[str, float]:
    completed = sum(o.completed and o.final == full_text(o.stream) for o in outcomes)
    missing = sum(len(full_text(o.stream)) - matched(full_text(o.stream), o.final) for o in outcomes)
    duplicated = sum(len(o.printed) - matched(full_text(o.stream), o.printed) for o in outcomes)
    clean = statistics.median(o.duration for o in outcomes if o.fault is None)

    def added(kind: str) -> float | None:
        # Only failures that still gave the whole answer: a stream given up on adds no time.
        times = [o.duration for o in outcomes if o.fault == kind and o.completed]
        return (statistics.mean(times) - clean) * 1000 if times else None

    return {
        "completed": completed / len(outcomes),
        "missing": float(missing),
        "duplicated": float(duplicated),
        "before_ms": added("before"),
        "mid_ms": added("mid"),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    share = max(1, round(args.streams * 0.05))
    chosen = rng.sample(range(args.streams), 2 * share)
    plan: dict[int, tuple[str, int]] = {i: ("mid", rng.randrange(5, CHUNKS - 5)) for i in chosen[:share]}
    plan.update({i: ("before", 0) for i in chosen[share:]})
    clients = ("raw", "continue", "restart")
    provider = Provider({f"{c}-{i}": fault for c in clients for i, fault in plan.items()})
    serve(provider)
    base = f"http://127.0.0.1:{provider.port}/v1"
    mid = sum(kind == "mid" for kind, _ in plan.values())
    print(f"{args.streams} streams of {CHUNKS} deltas; faults on first requests: {mid} mid-stream, "
          f"{len(plan) - mid} before the first byte (seed {args.seed})\n")  # fmt: skip

    import litellm

    import cllm  # noqa: F401  (imports LiteLLM once, outside the timings)

    litellm.suppress_debug_info = True
    asyncio.run(run_all("raw", base, 4, 4, {}))  # warm both clients' first-call imports
    asyncio.run(run_all("continue", base, 4, 4, {}))
    results = {}
    for client in clients:
        provider.seen.clear()
        kinds = {i: kind for i, (kind, _) in plan.items()}
        outcomes = asyncio.run(run_all(client, base, args.streams, args.concurrency, kinds))
        results[client] = summarize(outcomes)
    names = {"raw": "raw LiteLLM (baseline)", "continue": "cllm continue", "restart": "cllm restart"}
    raw = results["raw"]
    print(f"{'client':<24}{'completed':>10}{'vs raw':>8}{'missing chars':>15}{'printed twice':>15}"
          f"{'ms added: before':>18}{'mid-stream':>12}")  # fmt: skip
    for client in clients:
        r = results[client]
        ratio = r["completed"] / raw["completed"] if raw["completed"] else float("inf")
        print(f"{names[client]:<24}{r['completed']:>10.1%}{ratio:>7.2f}x{r['missing']:>15.0f}"
              f"{r['duplicated']:>15.0f}{_ms(r['before_ms']):>18}{_ms(r['mid_ms']):>12}")  # fmt: skip
    print("\nms added: mean duration of the streams whose first request failed (and that still completed)"
          "\nminus the median of clean streams; '-' when none completed.")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
