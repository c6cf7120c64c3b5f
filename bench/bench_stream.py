"""Streaming overhead of cllm against raw LiteLLM, measured side by side in one run.

Run: python bench/bench_stream.py [--chunks 5000] [--rounds 5]

Starts bench/provider_server.py (a local OpenAI-compatible server on 127.0.0.1) and prints:
  1. µs per chunk: cllm.astream on the fast path vs raw litellm.acompletion (target <= 0.25x) and
     vs the openai SDK's own async stream (target <= 1x); the sync cllm.stream vs cllm.astream
     (target <= 1.2x); raw httpx lines + json.loads as the floor; fast_path=False for reference;
     and a profile of where the fast path's time goes
  2. longest stall of a 1 ms ticker task while a buffered burst is consumed (target cllm <= 20 ms)
  3. time from the provider's finish chunk to the last ToolCallEnd / final text (target <= 5 ms),
     and to the end of iteration
  4. time from breaking out of the loop to the server seeing the connection closed (target <= 100 ms)
  5. the first call in a fresh process: longest stall of a 1 ms ticker already running on the loop
     (target cllm <= 50 ms), against `import litellm` + `litellm.acompletion` made lazily on the loop
  6. longest ticker stall during a 16,000-chunk tool-call stream with the garbage collector on, in a
     fresh process, library defaults and with `gc.freeze()` after the import (what `cllm` and
     `cllm serve` do), against raw litellm.acompletion
Machines are noisy: read the ratios, not the absolute times. Each figure is the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

import cllm

litellm.suppress_debug_info = True
HERE = Path(__file__).resolve().parent


class Server:
    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "provider_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.port = int(line.split()[1])
        self.base = f"http://127.0.0.1:{self.port}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)

    def state(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/last") as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def kwargs(self, model: str) -> dict[str, Any]:
        return {"api_base": self.base, "api_key": "sk-bench"}


MESSAGES = [{"role": "user", "content": "go"}]
USAGE_OPT = {"stream_options": {"include_usage": True}}


# -- 1. µs per chunk -----------------------------------------------------------------------------


async def raw_async(srv: Server, model: str) -> int:
    resp = await litellm.acompletion(
        model=model, messages=MESSAGES, stream=True, **USAGE_OPT, **srv.kwargs(model)
    )
    n = 0
    async for _ in resp:
        n += 1
    return n


async def cllm_async(srv: Server, model: str, fast_path: bool = True) -> int:
    n = 0
    async with cllm.astream(model, MESSAGES, fast_path=fast_path, **srv.kwargs(model)) as s:
        async for _ in s:
            n += 1
    return n


async def httpx_lines(srv: Server, model: str, client: Any) -> int:
    """The floor: httpx's line iterator and one json.loads per event, nothing else."""
    body = {"model": model.split("/", 1)[1], "messages": MESSAGES, "stream": True, **USAGE_OPT}
    n = 0
    async with client.stream("POST", srv.base + "/chat/completions", json=body) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                json.loads(line[6:])
                n += 1
    return n


async def openai_sdk(srv: Server, model: str, client: Any) -> int:
    stream = await client.chat.completions.create(
        model=model.split("/", 1)[1], messages=MESSAGES, stream=True, **USAGE_OPT
    )
    n = 0
    async for _ in stream:
        n += 1
    return n


def raw_sync(srv: Server, model: str) -> int:
    resp = litellm.completion(model=model, messages=MESSAGES, stream=True, **USAGE_OPT, **srv.kwargs(model))
    n = 0
    for _ in resp:
        n += 1
    return n


def cllm_sync(srv: Server, model: str, fast_path: bool = True) -> int:
    n = 0
    with cllm.stream(model, MESSAGES, fast_path=fast_path, **srv.kwargs(model)) as s:
        for _ in s:
            n += 1
    return n


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


ASTREAM = "cllm.astream (fast path)"
ASTREAM_LITELLM = "cllm.astream, fast_path=False"
STREAM = "cllm.stream (fast path)"
RAW_ASYNC = "raw litellm.acompletion"
SDK = "openai SDK, async"


def per_chunk(srv: Server, chunks: int, rounds: int) -> dict[str, float]:
    import httpx
    import openai

    model = f"openai/text-{chunks}"
    loop = asyncio.new_event_loop()
    http = httpx.AsyncClient(timeout=60)
    sdk = openai.AsyncOpenAI(base_url=srv.base, api_key="sk-bench", max_retries=0)
    runs: dict[str, Callable[[], Any]] = {
        "raw httpx aiter_lines + json.loads": lambda: loop.run_until_complete(httpx_lines(srv, model, http)),
        SDK: lambda: loop.run_until_complete(openai_sdk(srv, model, sdk)),
        RAW_ASYNC: lambda: loop.run_until_complete(raw_async(srv, model)),
        ASTREAM: lambda: loop.run_until_complete(cllm_async(srv, model)),
        ASTREAM_LITELLM: lambda: loop.run_until_complete(cllm_async(srv, model, fast_path=False)),
        "raw litellm.completion (defaults)": lambda: raw_sync(srv, model),
        STREAM: lambda: cllm_sync(srv, model),
        "cllm.stream, fast_path=False": lambda: cllm_sync(srv, model, fast_path=False),
    }
    try:
        for fn in runs.values():  # warm up connections and imports
            fn()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, fn in runs.items():
                times[name].append(timed(fn))
    finally:
        loop.run_until_complete(http.aclose())
        loop.run_until_complete(sdk.close())
        loop.close()
    return {name: statistics.median(t) / chunks * 1e6 for name, t in times.items()}


def profile_split(srv: Server, chunks: int) -> None:
    """Where the fast path's remaining time goes: cllm's core (accumulator, partial JSON, events),
    the upstream half (SSE decoding, json.loads, chunk parsing), and I/O and the event loop."""
    import cProfile
    import pstats

    model = f"openai/tool-{chunks}"
    asyncio.run(cllm_async(srv, model))  # warm
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(cllm_async(srv, model))
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    groups = {"core (accumulator, partial JSON, events)": 0.0, "upstream (SSE, json, chunks)": 0.0}
    for (filename, _, _), (_, _, tt, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "/cllm/core/sse.py" in filename or "/cllm/core/openai_chunks.py" in filename:
            groups["upstream (SSE, json, chunks)"] += tt
        elif "/cllm/core/" in filename:
            groups["core (accumulator, partial JSON, events)"] += tt
        elif "/cllm/_fast.py" in filename or filename == "~" or "json" in filename:
            groups["upstream (SSE, json, chunks)"] += tt
    groups["I/O, event loop and the rest"] = total - sum(groups.values())
    print(f"   profile of one {chunks}-chunk tool-call stream on the fast path (share of CPU time):")
    for name, tt in groups.items():
        print(f"   {name:44s} {tt / total:6.1%}")


# -- 2. ticker stall -------------------------------------------------------------------------------


async def with_ticker(consume: Coroutine[Any, Any, Any]) -> tuple[float, float]:
    """Longest gap of a 1 ms ticker while `consume` runs, and in the 0.5 s after it returns (ms).

    After a stream ends LiteLLM runs its success logging as a task on the caller's loop; the second
    figure shows that, apart from the stream itself.
    """
    gaps: list[tuple[float, float]] = []
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now, now - last))
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    await consume
    ended = time.perf_counter()
    await asyncio.sleep(0.5)
    stop = True
    await task
    during = max((gap for at, gap in gaps if at <= ended), default=0.0)
    after = max((gap for at, gap in gaps if at > ended), default=0.0)
    return during * 1e3, after * 1e3


async def warm_then_tick(
    srv: Server, model: str, consume: Callable[[Server, str], Coroutine[Any, Any, Any]]
) -> tuple[float, float]:
    # The first stream on a new event loop builds LiteLLM's HTTP client (TLS context and all):
    # that is set-up, not streaming, so it happens before the ticker starts.
    await consume(srv, "openai/text-10")
    return await with_ticker(consume(srv, model))


def stalls(srv: Server, chunks: int, rounds: int) -> dict[str, tuple[float, float]]:
    model = f"openai/text-{chunks}"
    out: dict[str, list[tuple[float, float]]] = {"raw litellm.acompletion": [], "cllm.astream": []}
    for _ in range(rounds):
        out["raw litellm.acompletion"].append(asyncio.run(warm_then_tick(srv, model, raw_async)))
        out["cllm.astream"].append(asyncio.run(warm_then_tick(srv, model, cllm_async)))
    return {
        k: (statistics.median(d for d, _ in v), statistics.median(a for _, a in v)) for k, v in out.items()
    }


# -- 3. finish chunk -> ToolCallEnd ----------------------------------------------------------------


async def finish_latency(srv: Server, fragments: int) -> tuple[float, float]:
    last_end = 0.0
    async with cllm.astream(f"openai/finishgap-{fragments}", MESSAGES, **srv.kwargs("")) as s:
        async for event in s:
            if isinstance(event, cllm.ToolCallEnd):
                last_end = time.time()
    iter_end = time.time()
    finish = srv.state()["finish"]
    assert s.response.finish_reason is cllm.FinishReason.TOOL_CALLS
    return (last_end - finish) * 1e3, (iter_end - finish) * 1e3


async def raw_finish_latency(srv: Server, fragments: int) -> float:
    resp = await litellm.acompletion(
        model=f"openai/finishgap-{fragments}", messages=MESSAGES, stream=True, **USAGE_OPT, **srv.kwargs("")
    )
    async for _ in resp:
        pass
    return (time.time() - srv.state()["finish"]) * 1e3


# -- 4. break -> connection closed -----------------------------------------------------------------


def wait_closed(srv: Server, since: float) -> float:
    deadline = time.time() + 5
    while time.time() < deadline:
        closed = srv.state().get("closed")
        if closed:
            return (closed - since) * 1e3
        time.sleep(0.005)
    return float("inf")


def break_sync(srv: Server) -> float:
    with cllm.stream("openai/slow", MESSAGES, **srv.kwargs("")) as s:
        for i, _ in enumerate(s):
            if i == 20:
                break
    t = time.time()
    return wait_closed(srv, t)


async def break_async(srv: Server) -> float:
    async with cllm.astream("openai/slow", MESSAGES, **srv.kwargs("")) as s:
        i = 0
        async for _ in s:
            i += 1
            if i == 20:
                break
    t = time.time()
    return await asyncio.to_thread(wait_closed, srv, t)


def break_times(srv: Server, rounds: int) -> dict[str, float]:
    sync = [break_sync(srv) for _ in range(rounds)]
    asyn = [asyncio.run(break_async(srv)) for _ in range(rounds)]
    return {"cllm.stream": statistics.median(sync), "cllm.astream": statistics.median(asyn)}


# -- 5, 6. fresh processes ------------------------------------------------------------------------

CHILD = r"""
import asyncio, gc, json, os, sys, time
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
who, base, model, freeze = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
MESSAGES = [{"role": "user", "content": "go"}]

async def consume(first: bool) -> None:
    if who == "cllm":
        import cllm
        async with cllm.astream(model, MESSAGES, api_base=base, api_key="sk-bench") as s:
            async for _ in s:
                pass
    else:
        import litellm  # lazily, on the loop: what a caller does without cllm
        litellm.suppress_debug_info = True
        resp = await litellm.acompletion(model=model, messages=MESSAGES, stream=True, api_base=base,
                                         api_key="sk-bench", stream_options={"include_usage": True})
        async for _ in resp:
            pass

async def main() -> None:
    if not FIRST:
        await consume(True)  # warm: import, HTTP client
        if freeze:
            gc.collect()
            gc.freeze()
    gaps, stop = [], False
    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    t = time.perf_counter()
    await consume(False)
    took = time.perf_counter() - t
    stop = True
    await task
    print(json.dumps({"stall_ms": max(gaps) * 1e3, "took_s": took}))

FIRST = model == "text-first"
if FIRST:
    model = "openai/text-20"
asyncio.run(main())
"""


def child(srv: Server, who: str, model: str, freeze: bool = False) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, who, srv.base, model, "1" if freeze else "0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def fresh_process_stalls(srv: Server, rounds: int) -> None:
    print("5. first call in a fresh process: longest ticker stall (ms) | time to the end of the stream (s)")
    first = {who: [child(srv, who, "text-first") for _ in range(rounds)] for who in ("raw", "cllm")}
    for who, label in (("raw", "raw import litellm + acompletion"), ("cllm", "cllm.astream")):
        stall = statistics.median(r["stall_ms"] for r in first[who])
        took = statistics.median(r["took_s"] for r in first[who])
        print(f"   {label:36s} {stall:8.1f} | {took:6.2f}")
    cllm_stall = statistics.median(r["stall_ms"] for r in first["cllm"])
    raw_stall = statistics.median(r["stall_ms"] for r in first["raw"])
    print(
        f"   cllm / raw                          {cllm_stall / raw_stall:8.3f}x  (target cllm <= 50 ms)  "
        f"{verdict(cllm_stall <= 50)}\n"
    )
    print("6. longest ticker stall (ms) during a 16,000-chunk tool-call stream, garbage collector on")
    model = "openai/tool-16000"
    rows = {
        "raw litellm.acompletion": ("raw", False),
        "cllm.astream": ("cllm", False),
        "raw litellm.acompletion, gc.freeze()": ("raw", True),
        "cllm.astream, gc.freeze()": ("cllm", True),
    }
    stalls16 = {
        name: statistics.median(child(srv, who, model, freeze)["stall_ms"] for _ in range(rounds))
        for name, (who, freeze) in rows.items()
    }
    for name, value in stalls16.items():
        print(f"   {name:36s} {value:8.1f}")
    base = stalls16["raw litellm.acompletion"]
    print(f"   cllm / raw (defaults)               {stalls16['cllm.astream'] / base:8.3f}x")
    print(f"   cllm, gc.freeze() / raw (defaults)  {stalls16['cllm.astream, gc.freeze()'] / base:8.3f}x")


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only-fresh", action="store_true", help="only sections 5 and 6")
    args = parser.parse_args()

    with Server() as srv:
        print(f"local provider on {srv.base}; {args.chunks} chunks; median of {args.rounds} rounds\n")
        if args.only_fresh:
            fresh_process_stalls(srv, args.rounds)
            return

        us = per_chunk(srv, args.chunks, args.rounds)
        print("1. µs per chunk")
        for name, value in us.items():
            print(f"   {name:36s} {value:8.1f}")
        a = us[ASTREAM] / us[RAW_ASYNC]
        b = us[ASTREAM] / us[SDK]
        lit = us[ASTREAM_LITELLM] / us[RAW_ASYNC]
        s = us[STREAM] / us[ASTREAM]
        print(f"   cllm.astream / raw acompletion      {a:8.2f}x  (target <= 0.25)  {verdict(a <= 0.25)}")
        print(f"   cllm.astream / openai SDK           {b:8.2f}x  (target <= 1.00)  {verdict(b <= 1.0)}")
        print(f"   fast_path=False / raw acompletion   {lit:8.2f}x  (LiteLLM's stream, for reference)")
        print(f"   cllm.stream / cllm.astream          {s:8.2f}x  (target <= 1.20)  {verdict(s <= 1.2)}")
        profile_split(srv, args.chunks)
        print()

        st = stalls(srv, args.chunks, args.rounds)
        print(
            f"2. longest 1 ms-ticker stall (ms) while a {args.chunks}-chunk burst is consumed"
            " | in the 0.5 s after (LiteLLM's success logging)"
        )
        for name, (during, after) in st.items():
            print(f"   {name:36s} {during:8.1f} | {after:8.1f}")
        ratio = st["cllm.astream"][0] / st["raw litellm.acompletion"][0]
        print(
            f"   cllm / raw                          {ratio:8.3f}x  (target cllm <= 20 ms)  "
            f"{verdict(st['cllm.astream'][0] <= 20)}\n"
        )

        print("3. provider's finish chunk -> last ToolCallEnd, -> end of iteration (ms)")
        for fragments in (500, args.chunks):
            ends, iters = zip(
                *(asyncio.run(finish_latency(srv, fragments)) for _ in range(args.rounds)), strict=True
            )
            raw = [asyncio.run(raw_finish_latency(srv, fragments)) for _ in range(args.rounds)]
            end, it, rw = statistics.median(ends), statistics.median(iters), statistics.median(raw)
            print(
                f"   {fragments:5d} fragments: ToolCallEnd {end:7.1f}  (target <= 5)  {verdict(end <= 5)};"
                f"  end of iteration {it:7.1f}  (raw litellm end of iteration {rw:7.1f})"
            )
        print()

        br = break_times(srv, args.rounds)
        print("4. break out of the loop -> server sees the connection closed (ms)")
        for name, value in br.items():
            print(f"   {name:36s} {value:8.1f}  (target <= 100)  {verdict(value <= 100)}")
        print()

        fresh_process_stalls(srv, args.rounds)


if __name__ == "__main__":
    main()
