"""Benchmark: `cllm serve --workers N --redis` for N = 1, 2, 4, against one process without Redis.

The load of bench_server.py (the same local provider, provider_server.py; paced and burst phases),
sent to ``POST /api/chat``, cllm's resumable streams, which are the part that moves to Redis:

  paced  STREAMS streams started over RAMP seconds, CHUNKS text chunks INTERVAL ms apart each:
         the delay each text event gains on the way (receive time - the provider's stamp), p50/p99.
  burst  STREAMS streams at once, BURST chunks each sent at once: events per second.

Targets, each a fresh server on a loopback port (conversations in a SQLite file in a temp dir):
  memory       one process, streams in its memory (the anchor: what Redis must not cost much)
  redis xN     --workers N --redis unix://... (one redis-server started here, no persistence)

Also measured: Redis's own cost per event (the CPU time INFO reports, and the requests it served,
scripts and reads, during the burst phase, divided by the events delivered), and the latency of a resume from
another replica: two single-process servers on one Redis, a stream started on A, dropped after a
few events and resumed on B with Last-Event-ID (time to the first missed event), side by side with
resuming it on A itself.

Run:   .venv/bin/python bench/bench_scale.py [--streams 400] [--workers 1,2,4]
Expect about 2x events/s at 2 workers on a 2-core machine (one core per process), less beyond.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_server import free_port, quiet_env, wait_http

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
TOKEN = "sk-bench-0123456789abcdef"

# A text event of /api/chat: the provider's stamp is in its text (the finish event repeats the
# whole text: it is not counted).
TEXT_EVENT = re.compile(rb"event: text-delta\ndata: [^\n]*?t=(\d+\.\d+);")


# -- the load generator (run as a separate process: `bench_scale.py --load URL MODEL STREAMS RAMP`) --


async def _one(session: Any, url: str, model: str, delays: list[float], start_after: float) -> int:
    await asyncio.sleep(start_after)
    events = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.post(url + "/api/chat", json={"model": model, "content": "go"}, headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:200]}")
        buffer = b""
        async for data in r.content.iter_any():
            now = time.time()
            buffer += data
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, buffer = buffer[: cut + 2], buffer[cut + 2 :]
            for match in TEXT_EVENT.finditer(complete):
                delays.append(now - float(match.group(1)))
                events += 1
            if b"event: error" in complete:
                raise RuntimeError(complete[complete.find(b"event: error") :][:200].decode(errors="replace"))
    return events


async def _load(url: str, model: str, streams: int, ramp: float) -> dict[str, Any]:
    import aiohttp

    delays: list[float] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=600)
    ) as session:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(_one(session, url, model, delays, ramp * i / streams) for i in range(streams)),
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
        "errors": errors[:3],
        "error_count": len(errors),
    }


def load(url: str, model: str, streams: int, ramp: float = 0.0) -> dict[str, Any]:
    cmd = [PYTHON, str(Path(__file__).resolve()), "--load", url, model, str(streams), str(ramp)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=quiet_env())
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["error_count"]:
        print(f"  {result['error_count']} streams failed, e.g. {result['errors'][0]}", flush=True)
    return result


# -- the servers ---------------------------------------------------------------------------------


# What cllm's scripts call inside Redis (counted by INFO as commands of their own).
INNER = frozenset(
    {"xadd", "hset", "hget", "pexpire", "set", "get", "del", "exists", "zadd", "zremrangebyscore"}
)


class Redis:
    def __init__(self, directory: Path) -> None:
        self.socket = directory / "redis.sock"
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket), "--save", "", "--appendonly", "no",
             "--dir", str(directory), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        self.client = redis.Redis(unix_socket_path=str(self.socket))
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def stats(self) -> tuple[float, int]:
        """(CPU seconds Redis has used, requests it has served: scripts and plain commands, not
        the commands a script runs inside)."""
        cpu = self.client.info("cpu")
        requests = 0
        for name, value in self.client.info("commandstats").items():
            command = name.removeprefix("cmdstat_")
            if command in ("evalsha", "eval") or command not in INNER:
                requests += int(value["calls"])
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), requests

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def serve(tmp: Path, config: Path, name: str, *extra: str) -> tuple[subprocess.Popen[Any], str]:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "cllm.server", "--port", str(port), "--config", str(config),
         "--db", str(tmp / f"{name}.db"), "--max-streams-per-client", "100000", "--log-level", "warning",
         "--token", TOKEN, *extra],
        env={**quiet_env(), "CLLM_HOME": str(tmp)},
        start_new_session=True,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/healthz", 180, proc)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[Any]) -> None:
    import os

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
            if sig == signal.SIGTERM:
                time.sleep(0.5)  # let its workers go too
        except subprocess.TimeoutExpired:
            continue


def measure(
    url: str, args: argparse.Namespace, paced: str, burst: str, redis: Redis | None
) -> dict[str, float]:
    load(url, "burst", 20)  # warm up every worker's connections and caches
    p = load(url, "paced", args.streams, args.ramp)
    before = redis.stats() if redis else (0.0, 0)
    b = load(url, "burst", args.streams)
    after = redis.stats() if redis else (0.0, 0)
    events = max(1, b["events"])
    return {
        "p50": p["p50_ms"] or float("nan"),
        "p99": p["p99_ms"] or float("nan"),
        "throughput": b["events"] / b["seconds"] if b["seconds"] else 0.0,
        "redis_us": 1e6 * (after[0] - before[0]) / events,
        "redis_calls": (after[1] - before[1]) / events,
        "failed": p["error_count"] + b["error_count"],
    }


# -- resume from another replica ------------------------------------------------------------------


async def _resume_once(start_url: str, resume_url: str) -> float:
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            start_url + "/api/chat", json={"model": "resume", "content": "go"}, headers=headers
        ) as r:
            stream_id = r.headers["x-cllm-stream-id"]
            seen = b""
            async for data in r.content.iter_any():
                seen += data
                if seen.count(b"event: text-delta") >= 3:
                    break
        last = max(int(m) for m in re.findall(rb"id: (\d+)", seen))
        await asyncio.sleep(0.2)  # events go on meanwhile: the resume has some to catch up on
        started = time.perf_counter()
        resume_headers = {**headers, "Last-Event-ID": str(last)}
        async with session.get(resume_url + f"/api/streams/{stream_id}", headers=resume_headers) as r:
            got = b""
            async for data in r.content.iter_any():
                got += data
                if re.search(rb"id: \d+", got):
                    return 1000 * (time.perf_counter() - started)
    raise RuntimeError("the resumed stream gave no event")


def resume_latency(a: str, b: str, trials: int) -> dict[str, float]:
    async def run() -> dict[str, list[float]]:
        same, other = [], []
        for _ in range(trials):
            same.append(await _resume_once(a, a))
            other.append(await _resume_once(a, b))
        return {"same": same, "other": other}

    found = asyncio.run(run())
    return {
        f"{k}_{stat}": (statistics.median(v) if stat == "p50" else sorted(v)[int(0.95 * (len(v) - 1))])
        for k, v in found.items()
        for stat in ("p50", "p95")
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        url, model, streams, ramp = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
        print(json.dumps(asyncio.run(_load(url, model, streams, ramp))))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--chunks", type=int, default=20, help="chunks per paced stream")
    parser.add_argument("--interval", type=int, default=500, help="ms between paced chunks")
    parser.add_argument("--burst", type=int, default=100, help="chunks per burst stream")
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure with Redis")
    parser.add_argument("--resume-trials", type=int, default=30)
    args = parser.parse_args()
    paced, burst = f"paced-{args.chunks}-{args.interval}", f"burst-{args.burst}"

    tmp = Path(tempfile.mkdtemp(prefix="cllm-bench-scale-"))
    procs: list[subprocess.Popen[Any]] = []
    redis: Redis | None = None
    results: dict[str, dict[str, float]] = {}
    try:
        provider = subprocess.Popen(
            [PYTHON, str(HERE / "provider_server.py"), "--uvloop"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=quiet_env(),
        )  # fmt: skip
        procs.append(provider)
        assert provider.stdout is not None
        provider_url = f"http://127.0.0.1:{provider.stdout.readline().split()[1]}"
        config = tmp / "cllm.toml"
        config.write_text(
            "\n".join(
                f'[models.{alias}]\nmodel = "openai/{model}"\napi_base = "{provider_url}/v1"\napi_key = "x"\n'
                for alias, model in (("paced", paced), ("burst", burst), ("resume", "paced-60-20"))
            )
        )
        redis = Redis(tmp)
        print(
            f"{args.streams} concurrent streams on /api/chat; paced: {args.chunks} chunks every "
            f"{args.interval} ms; burst: {args.burst} chunks at once",
            flush=True,
        )
        targets: list[tuple[str, list[str]]] = [("memory x1", [])]
        targets += [(f"redis x{n}", ["--redis", redis.url, "--workers", n]) for n in args.workers.split(",")]
        for name, extra in targets:
            print(f"measuring {name} ...", flush=True)
            proc, url = serve(tmp, config, name.replace(" ", ""), *extra)
            try:
                results[name] = measure(url, args, paced, burst, redis if extra else None)
            finally:
                stop(proc)
        print("measuring resume latency (two replicas on one Redis) ...", flush=True)
        a, a_url = serve(tmp, config, "a", "--redis", redis.url)
        procs.append(a)
        b, b_url = serve(tmp, config, "b", "--redis", redis.url)
        procs.append(b)
        resume = resume_latency(a_url, b_url, args.resume_trials)
    finally:
        for proc in reversed(procs):
            if proc.stdin is not None:
                proc.stdin.close()
            stop(proc)
        if redis is not None:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    header = f"{'target':<12}{'p50 ms':>9}{'p99 ms':>9}{'events/s':>10}{'scaling':>9}"
    header += f"{'Redis µs/ev':>13}{'req/ev':>10}"
    print("\n" + header + "\n" + "-" * len(header))
    base = results.get("redis x1", {}).get("throughput") or 1.0
    for name, r in results.items():
        redis_cols = (
            f"{r['redis_us']:>13.1f}{r['redis_calls']:>10.3f}"
            if name.startswith("redis")
            else f"{'-':>13}{'-':>10}"
        )
        print(
            f"{name:<12}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['throughput']:>10.0f}"
            + f"{r['throughput'] / base:>8.2f}x"
            + redis_cols
            + (f"  ({int(r['failed'])} streams failed)" if r["failed"] else "")
        )
    memory, one = results["memory x1"], results.get("redis x1")
    if one:
        print(
            f"\nRedis at 1 worker: {one['throughput'] / memory['throughput']:.2f}x "
            "the events/s of memory streams"
        )
    print(
        f"resume, same replica:  p50 {resume['same_p50']:.1f} ms, p95 {resume['same_p95']:.1f} ms\n"
        f"resume, other replica: p50 {resume['other_p50']:.1f} ms, p95 {resume['other_p95']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
