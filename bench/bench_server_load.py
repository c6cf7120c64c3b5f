"""The load generator for bench_server.py: many concurrent SSE streams against one endpoint.

Run: python bench/bench_server_load.py URL MODEL STREAMS RAMP [TOKEN] -> prints one JSON line:
``{"events", "seconds", "p50_ms", "p99_ms", "max_ms", "errors", "error_count", "streams_ok"}``.

Each stream is a ``POST {URL}/v1/chat/completions`` with ``stream: true``. Every chunk's text
carries the provider's send time (``t=<time.time()>;``); the delay of an event is the time it was
received minus that stamp. Streams start evenly over RAMP seconds (all at once with 0). Only a
regex runs per event, so the client stays cheap.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import aiohttp

STAMP = re.compile(rb"t=(\d+\.\d+);")


async def one_stream(
    session: aiohttp.ClientSession,
    url: str,
    model: str,
    delays: list[float],
    headers: dict[str, str],
    start_after: float,
) -> int:
    await asyncio.sleep(start_after)
    body = {"model": model, "messages": [{"role": "user", "content": "go"}], "stream": True}
    events = 0
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
        buffer = b""
        async for data in resp.content.iter_any():
            now = time.time()
            buffer += data
            cut = buffer.rfind(b"\n")
            if cut < 0:
                continue
            complete, buffer = buffer[: cut + 1], buffer[cut + 1 :]
            for match in STAMP.finditer(complete):
                delays.append(now - float(match.group(1)))
                events += 1
    return events


async def run(url: str, model: str, streams: int, ramp: float, token: str | None) -> dict[str, object]:
    delays: list[float] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(session, url, model, delays, headers, ramp * i / streams) for i in range(streams)),
            return_exceptions=True,
        )
        seconds = time.perf_counter() - started
    errors = [repr(r)[:200] for r in results if isinstance(r, BaseException)]
    delays.sort()
    return {
        "events": sum(r for r in results if isinstance(r, int)),
        "seconds": seconds,
        "p50_ms": 1000 * delays[len(delays) // 2] if delays else None,
        "p99_ms": 1000 * delays[min(len(delays) - 1, int(0.99 * len(delays)))] if delays else None,
        "max_ms": 1000 * delays[-1] if delays else None,
        "errors": errors[:5],
        "error_count": len(errors),
        "streams_ok": streams - len(errors),
    }


def main() -> None:
    url, model, streams, ramp = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    token = sys.argv[5] if len(sys.argv) > 5 else None
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(url, model, streams, ramp, token))))


if __name__ == "__main__":
    main()
