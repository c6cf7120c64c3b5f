"""Benchmark: 500 prompts under a provider's limits, `cllm.abatch` with `cllm.Limits` against the
hand-written `asyncio.gather` versions, side by side in the same run.

The provider (this file run with ``--provider``, its own process, aiohttp on 127.0.0.1) streams each
answer in CHUNKS chunks INTERVAL ms apart and enforces its limits the way providers meter them:
a token bucket of RATE requests per second holding BUCKET requests, and CONCURRENCY requests at
once. A request over either gets a 429 and counts as an exceedance. On top of that, 5% of the
requests it would accept get a 429 anyway (seeded, without Retry-After: an overloaded provider).
Every 429 is retried (up to RETRIES times).

Clients, one after the other, each on a fresh provider:
  cllm          cllm.abatch(limits=cllm.Limits(concurrency=C, rpm=60*RATE), retries=RETRIES)
  gather+sem    asyncio.gather over the prompts behind asyncio.Semaphore(C), retrying 429s
  gather+sem+rl the same plus the tutorial's RateLimiter (a deque of timestamps over 60 s, sleeping
                while holding its lock), set to the same rpm

The theoretical minimum for a run is what the limits allow for the requests the prompts needed
(the accepted ones plus the random 429s; not the refusals for going over the limits):
(requests - 1) / RATE + the time of one answer, or the concurrency bound (requests x answer time
/ C) when that is larger. Target: cllm within 5% of it, with 0 exceedances ("exceeded": requests
the provider refused for going over its rate or concurrency; "failed": prompts still refused
after every retry). The limiter's own cost is measured apart: acquire + settle per request, with
no waiting, in microseconds.

Run:   python bench/bench_batch.py [--prompts 500] [--rate 8] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

MODEL = "openai/gpt-4o-2024-08-06"
CHUNKS = 5
INTERVAL = 0.04
BUCKET = 3  # the provider's burst: one request plus two of network jitter
RANDOM_429 = 0.05


# -- the provider -------------------------------------------------------------------------------------


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: bool = False) -> bytes:
    body: dict[str, Any] = {
        "id": "b",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50}
    return _sse(body)


def run_provider(rate: float, concurrency: int) -> None:
    from aiohttp import web

    state: dict[str, Any] = {}

    def reset() -> None:
        state.update(
            tokens=float(BUCKET),
            at=time.monotonic(),
            in_flight=0,
            max_in_flight=0,
            requests=0,
            accepted=0,
            random_429=0,
            rate_exceeded=0,
            concurrency_exceeded=0,
            random=random.Random(12),
        )

    reset()

    def refused(kind: str) -> web.Response:
        state[kind] += 1
        body = {
            "error": {"message": f"rate limited ({kind})", "type": "requests", "code": "rate_limit_exceeded"}
        }
        return web.json_response(body, status=429)

    async def completions(request: web.Request) -> web.StreamResponse:
        await request.read()
        now = time.monotonic()
        state["requests"] += 1
        state["tokens"] = min(float(BUCKET), state["tokens"] + (now - state["at"]) * rate)
        state["at"] = now
        if state["in_flight"] >= concurrency:
            return refused("concurrency_exceeded")
        if state["tokens"] < 1:
            return refused("rate_exceeded")
        state["tokens"] -= 1
        if state["random"].random() < RANDOM_429:
            return refused("random_429")
        state["accepted"] += 1
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        done = False
        try:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            await response.write(_chunk({"role": "assistant", "content": ""}))
            for i in range(CHUNKS):
                await asyncio.sleep(INTERVAL)
                await response.write(_chunk({"content": f"w{i} "}))
            # Counted out before the last write: the client cannot have seen the end before it.
            state["in_flight"] -= 1
            done = True
            await response.write(_chunk({}, "stop") + _chunk(None, usage=True) + b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        finally:
            if not done:
                state["in_flight"] -= 1

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({k: v for k, v in state.items() if k not in ("random", "tokens", "at")})

    async def do_reset(request: web.Request) -> web.Response:
        reset()
        return web.json_response({})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", completions)
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", do_reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


class Provider:
    def __init__(self, rate: float, concurrency: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--provider", "--rate", str(rate), "--concurrency", str(concurrency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def call(self, path: str, method: str = "GET") -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            result: dict[str, Any] = json.loads(r.read())
            return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


# -- the clients ----------------------------------------------------------------------------------------


class TutorialRateLimiter:
    """The tutorial's limiter: timestamps of the last minute's calls; sleeps while holding its lock."""

    def __init__(self, rpm: int) -> None:
        self.rpm = rpm
        self.calls: collections.deque[float] = collections.deque()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            now = time.monotonic()
            while self.calls and now - self.calls[0] > 60:
                self.calls.popleft()
            if len(self.calls) >= self.rpm:
                await asyncio.sleep(60 - (now - self.calls[0]))
            self.calls.append(time.monotonic())


def _is_429(error: BaseException | None) -> bool:
    return getattr(error, "status_code", None) == 429


async def run_cllm(
    prompts: list[str], options: dict[str, Any], rate: float, concurrency: int, retries: int
) -> int:
    import cllm

    limits = cllm.Limits(concurrency=concurrency, rpm=rate * 60)
    # Retried at once, like the baselines (the default backoff starts at half a second).
    policy = cllm.Retries(attempts=retries + 1, backoff=0.0)
    failed = 0
    async for item in cllm.abatch(MODEL, prompts, limits=limits, retries=policy, **options):
        if item.error is not None:
            failed += 1
    return failed


async def run_gather(
    prompts: list[str], options: dict[str, Any], rate: float, concurrency: int, retries: int, tutorial: bool
) -> int:
    import cllm

    semaphore = asyncio.Semaphore(concurrency)
    limiter = TutorialRateLimiter(int(rate * 60)) if tutorial else None

    async def one(prompt: str) -> bool:
        for _ in range(retries + 1):
            async with semaphore:
                if limiter is not None:
                    await limiter.acquire()
                try:
                    await cllm.acomplete(MODEL, prompt, **options)
                    return True
                except cllm.ProviderError as e:
                    if not _is_429(e):
                        return False
        return False

    results = await asyncio.gather(*(one(p) for p in prompts))
    return results.count(False)


async def limiter_overhead(rounds: int = 20_000) -> dict[str, float]:
    """Microseconds per request of acquire + settle, never waiting (the limits are far away)."""
    import cllm

    out = {}
    for label, limits in (
        ("concurrency", cllm.Limits(concurrency=1_000_000)),
        ("concurrency+rpm+tpm", cllm.Limits(concurrency=1_000_000, rpm=1e12, tpm=1e15)),
    ):
        start = time.perf_counter()
        for _ in range(rounds):
            permit = await limits.acquire(MODEL, 1000)
            assert permit is not None
            await permit.finish(800)
        out[label] = (time.perf_counter() - start) / rounds * 1e6
    from cllm import _provider
    from cllm.limits import estimate_tokens

    await _provider.aload()
    request = _provider.prepare(
        MODEL, "Summarize the following paragraph. " * 20, {"max_tokens": 100}, stream=True
    )
    start = time.perf_counter()
    for _ in range(2000):
        estimate_tokens(request, 1024)
    out["prompt token estimate"] = (time.perf_counter() - start) / 2000 * 1e6
    return out


def theoretical_minimum(requests: int, rate: float, concurrency: int) -> float:
    answer = CHUNKS * INTERVAL
    return max((requests - 1) / rate + answer, requests * answer / concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--rate", type=float, default=8.0, help="the provider's requests per second")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--retries", type=int, default=8)
    parser.add_argument("--provider", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.provider:
        run_provider(args.rate, args.concurrency)
        return
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    provider = Provider(args.rate, args.concurrency)
    prompts = [f"Prompt number {i}: say something short." for i in range(args.prompts)]
    options = {"api_base": provider.url + "/v1", "api_key": "sk-bench"}
    rows = []
    try:
        import cllm

        asyncio.run(cllm.acomplete(MODEL, "warm up", **options))  # LiteLLM's import, outside the timings
        runs: list[tuple[str, Any]] = [
            (
                "cllm.abatch + Limits",
                lambda: run_cllm(prompts, options, args.rate, args.concurrency, args.retries),
            ),
            (
                "gather + semaphore",
                lambda: run_gather(prompts, options, args.rate, args.concurrency, args.retries, False),
            ),
            (
                "gather + semaphore + tutorial limiter",
                lambda: run_gather(prompts, options, args.rate, args.concurrency, args.retries, True),
            ),
        ]
        for label, make in runs:
            provider.call("/reset", "POST")
            start = time.perf_counter()
            failed = asyncio.run(make())
            elapsed = time.perf_counter() - start
            stats = provider.call("/stats")
            # What the prompts needed: the accepted requests and the random 429s, not the refusals
            # for going over the limits (those a client need not have sent).
            needed = stats["accepted"] + stats["random_429"]
            minimum = theoretical_minimum(needed, args.rate, args.concurrency)
            rows.append((label, elapsed, minimum, failed, stats))
        overhead = asyncio.run(limiter_overhead())
    finally:
        provider.close()

    print(
        f"\n{args.prompts} prompts; provider: {args.rate:g} requests/s (bucket {BUCKET}), "
        f"{args.concurrency} at once, {RANDOM_429:.0%} random 429s; each answer {CHUNKS} chunks "
        f"{INTERVAL * 1000:.0f} ms apart\n"
    )
    columns = (
        ("time s", 7),
        ("min s", 6),
        ("vs min", 7),
        ("vs cllm", 7),
        ("sent", 5),
        ("429 rnd", 7),
        ("exceeded", 8),
        ("failed", 6),
    )
    header = f"{'client':40} " + " ".join(f"{name:>{width}}" for name, width in columns)
    print(header)
    print("-" * len(header))
    for label, elapsed, minimum, failed, stats in rows:
        exceeded = stats["rate_exceeded"] + stats["concurrency_exceeded"]
        print(
            f"{label:40} {elapsed:7.2f} {minimum:6.2f} {elapsed / minimum:6.3f}x "
            f"{elapsed / rows[0][1]:6.3f}x {stats['requests']:5d} {stats['random_429']:7d} "
            f"{exceeded:8d} {failed:6d}"
        )
    print("\nlimiter overhead per request (acquire + settle, no waiting):")
    for label, micros in overhead.items():
        print(f"  {label:28} {micros:8.1f} µs")
    cllm_row = rows[0]
    within = cllm_row[1] / cllm_row[2] <= 1.05
    clean = cllm_row[4]["rate_exceeded"] + cllm_row[4]["concurrency_exceeded"] == 0
    print(f"\ncllm within 5% of the minimum: {'yes' if within else 'NO'}")
    print(f"cllm exceeded no limit: {'yes' if clean else 'NO'}")


if __name__ == "__main__":
    main()
