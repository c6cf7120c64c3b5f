"""cllm's ADK adapter (`cllm.adk.CllmLlm`) against ADK's own `LiteLlm`, side by side in one run.

Run: python bench/bench_adk.py [--sizes 16,64,256] [--litellm-max 64] [--rounds 1]

Needs the `adk` extra. Starts bench/provider_server.py (an OpenAI-compatible server on 127.0.0.1) and
prints, for ADK's `LiteLlm`, `CllmLlm` and `cllm.astream` alone (the engine the adapter runs on):
  1. dead air: the longest gap between partial function-call responses while a tool call's arguments
     arrive in 60 fragments 50 ms apart (and how many partials there were)
  2. CPU seconds for one tool call of 16 / 64 / 256 KB of arguments in 4-byte fragments, the ratio
     time(4n)/time(n) (linear: about 4; target <= 4.6), CllmLlm against cllm.astream (target <= 1.10x)
     and LiteLlm against CllmLlm. LiteLlm is quadratic (285 s at 256 KB): it runs up to --litellm-max KB
  3. the longest stall of a 1 ms ticker on the same loop while 64 KB of arguments stream (target:
     CllmLlm <= 1.5x cllm.astream's figure, or 30 ms, whichever is more)
  4. break after 3 partial responses, then `aclose()`: how long until the provider sees the connection
     closed (target <= 100 ms; "open" when it was still streaming 1 s later)
  5. the first call in a fresh process (google-adk and cllm.adk imported, litellm not): the longest stall
     of a 1 ms ticker already running on the loop
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Coroutine
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ADK_SUPPRESS_EXPERIMENTAL_FEATURE_WARNINGS", "1")

HERE = Path(__file__).resolve().parent
KB = 1024


class Server:
    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "provider_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline().split()[1])
        self.base = f"http://127.0.0.1:{self.port}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)

    def state(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/last") as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]


def request(model: str) -> Any:
    from google.adk.models.llm_request import LlmRequest
    from google.genai import types

    return LlmRequest(model=model, contents=[types.Content(role="user", parts=[types.Part(text="go")])])


def adk_model(kind: str, model: str, srv: Server) -> Any:
    from google.adk.models.lite_llm import LiteLlm

    from cllm.adk import CllmLlm

    cls = CllmLlm if kind == "CllmLlm" else LiteLlm
    return cls(model=model, api_base=srv.base, api_key="sk-bench")


def responses(kind: str, model: str, srv: Server) -> AsyncIterator[Any]:
    """What the consumer iterates: ADK responses, or cllm's events for cllm.astream."""
    if kind == "cllm.astream":
        import cllm

        return _astream(cllm, model, srv)
    return adk_model(kind, model, srv).generate_content_async(request(model), stream=True)  # type: ignore[no-any-return]


async def _astream(cllm: Any, model: str, srv: Server) -> AsyncIterator[Any]:
    async with cllm.astream(model, "go", api_base=srv.base, api_key="sk-bench") as s:
        async for event in s:
            yield event


def is_partial_call(kind: str, item: Any) -> bool:
    if kind == "cllm.astream":
        return type(item).__name__ == "ToolCallDelta"
    return bool(item.partial and item.content and any(p.function_call for p in item.content.parts or ()))


KINDS = ("LiteLlm", "CllmLlm", "cllm.astream")


# -- 1. dead air ----------------------------------------------------------------------------------


async def dead_air(kind: str, srv: Server) -> tuple[float, int]:
    times = []
    async for item in responses(kind, "openai/argspaced-60-50", srv):
        if is_partial_call(kind, item):
            times.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return (max(gaps) if gaps else float("inf")), len(times)


# -- 2. CPU -----------------------------------------------------------------------------------------


async def drain(kind: str, model: str, srv: Server) -> int:
    n = 0
    async for _ in responses(kind, model, srv):
        n += 1
    return n


def cpu(kind: str, size_kb: int, srv: Server, rounds: int) -> float:
    model = f"openai/args-{size_kb * KB}-4"
    times = []
    for _ in range(rounds):
        gc.collect()
        started = time.process_time()
        asyncio.run(drain(kind, model, srv))
        times.append(time.process_time() - started)
    return statistics.median(times)


# -- 3. ticker stall --------------------------------------------------------------------------------


async def with_ticker(consume: Coroutine[Any, Any, Any]) -> float:
    longest = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    try:
        await consume
    finally:
        stop = True
        await task
    return longest


def stall(kind: str, srv: Server) -> float:
    return asyncio.run(with_ticker(drain(kind, f"openai/args-{64 * KB}-4", srv)))


# -- 4. break -> closed -----------------------------------------------------------------------------


async def break_close(kind: str, srv: Server) -> float | None:
    agen = responses(kind, "openai/slow", srv)
    seen = 0
    async for _ in agen:
        seen += 1
        if seen == 3:
            break
    stopped = time.time()
    await agen.aclose()  # type: ignore[attr-defined]
    deadline = time.perf_counter() + 1.0
    while time.perf_counter() < deadline:
        closed = srv.state().get("closed")
        if closed:
            return closed - stopped
        await asyncio.sleep(0.005)
    return None


# -- 5. first call ----------------------------------------------------------------------------------


def first_call_child(kind: str, base: str) -> None:
    """In a fresh process: the longest ticker stall over constructing the model and its first call."""
    sys.argv = sys.argv[:1]
    # What a program imports at its top, before its loop runs (neither imports litellm).
    import google.adk.models.lite_llm  # noqa: F401

    import cllm.adk  # noqa: F401

    class Srv:
        pass

    srv = Srv()
    srv.base = base  # type: ignore[attr-defined]

    async def main() -> float:
        async def call() -> None:
            await drain(kind, "openai/text-10", srv)  # type: ignore[arg-type]

        return await with_ticker(call())

    print(json.dumps(asyncio.run(main())))


def first_call(kind: str, srv: Server) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--first-call", kind, srv.base], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


# -- report -----------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "open" if value is None else f"{value * 1000:,.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="16,64,256", help="KB of arguments, comma-separated")
    parser.add_argument("--litellm-max", type=int, default=64, help="largest size (KB) LiteLlm is run at")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--first-call", nargs=2, metavar=("KIND", "BASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_call:
        first_call_child(*args.first_call)
        return
    import litellm

    litellm.suppress_debug_info = True
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"google-adk {version('google-adk')}, litellm {version('litellm')}")
    with Server() as srv:
        for kind in KINDS:  # warm up imports and connections
            asyncio.run(drain(kind, "openai/text-10", srv))

        print("\n1. dead air while arguments stream (60 fragments, 50 ms apart)")
        for kind in KINDS:
            gap, count = asyncio.run(dead_air(kind, srv))
            print(f"  {kind:<14} longest gap {ms(gap):>12}   partial calls {count}")

        print("\n2. CPU seconds, one tool call in 4-byte fragments")
        table: dict[str, dict[int, float]] = {kind: {} for kind in KINDS}
        for size in sizes:
            for kind in KINDS:
                if kind == "LiteLlm" and size > args.litellm_max:
                    continue
                table[kind][size] = cpu(kind, size, srv, args.rounds)
        print(f"  {'':<14}" + "".join(f"{f'{s} KB':>10}" for s in sizes) + "   time(4n)/time(n)")
        for kind in KINDS:
            row = "".join(f"{table[kind][s]:>10.2f}" if s in table[kind] else f"{'-':>10}" for s in sizes)
            ratios = [
                table[kind][b] / table[kind][a] for a, b in itertools.pairwise(sizes) if b in table[kind]
            ]
            print(f"  {kind:<14}{row}   {' '.join(f'{r:.2f}' for r in ratios)}")
        for size in sizes:
            ours, engine = table["CllmLlm"][size], table["cllm.astream"][size]
            line = f"  {size} KB: CllmLlm / cllm.astream {ours / engine:.2f}x"
            if size in table["LiteLlm"]:
                line += f", LiteLlm / CllmLlm {table['LiteLlm'][size] / ours:.1f}x"
            print(line)

        print("\n3. longest 1 ms ticker stall while 64 KB of arguments stream")
        stalls = {kind: stall(kind, srv) for kind in KINDS}
        for kind in KINDS:
            print(f"  {kind:<14} {ms(stalls[kind]):>12}")
        limit = max(1.5 * stalls["cllm.astream"], 0.030)
        print(
            f"  CllmLlm / cllm.astream {stalls['CllmLlm'] / stalls['cllm.astream']:.2f}x (limit {ms(limit)})"
        )

        print("\n4. break after 3 responses + aclose(): provider sees the connection closed after")
        for kind in ("LiteLlm", "CllmLlm"):
            print(f"  {kind:<14} {ms(asyncio.run(break_close(kind, srv))):>12}")

        print("\n5. first call in a fresh process: longest ticker stall")
        for kind in KINDS:
            print(f"  {kind:<14} {ms(first_call(kind, srv)):>12}")


if __name__ == "__main__":
    main()
