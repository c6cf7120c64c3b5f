"""Benchmark: many concurrent SSE streams through `cllm serve`, side by side with LiteLLM's proxy.

Four targets, each a separate process on loopback, one worker each, in front of the same local
provider (provider_server.py): the provider itself (the anchor: what the client and the
provider cost), `cllm serve` (fast path on, as by default), `cllm serve` with CLLM_FAST_PATH=0
(LiteLLM's stream), and LiteLLM's own proxy (`litellm[proxy]` in its own virtualenv, master key
set; cllm runs with --token). The proxy is the same LiteLLM version when its `proxy` extra can be
installed (1.110.2's cannot: it needs an unpublished litellm-proxy), else --proxy-litellm.
The load generator (bench_server_load.py) is another process; every stream goes through
/v1/chat/completions.

Three measurements per target:
  first  the time from sending a request to its first text event, one request at a time (median).
  paced  STREAMS streams started over RAMP seconds, each CHUNKS chunks INTERVAL ms apart (all of
         them running at once for most of the phase): the delay each event gains on the way
         (receive time - the provider's send stamp), p50/p99.
  burst  STREAMS streams at once, each BURST chunks sent at once: events per second through the
         server (the server is the bottleneck).

Run:   .venv/bin/python bench/bench_server.py            (sets up .venv-proxy on first run)
       .venv/bin/python bench/bench_server.py --no-proxy (cllm and the anchor only)
Targets: cllm's p99 added delay <= 50 ms (at --streams 1000 --interval 20: 50 deltas/s each),
>= 5x the proxy's throughput, and the first event at most 5 ms later than straight from the provider.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
# Both servers run with authentication on, as they would in front of real keys.
TOKEN = "sk-bench-0123456789abcdef"
DEFAULT_PROXY_VENV = Path(os.environ.get("CLLM_BENCH_PROXY_VENV", ROOT / ".venv-proxy"))


def litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")


def setup_proxy_venv(venv: Path, fallback: str) -> Path:
    """The proxy's ``litellm`` command; installs ``litellm[proxy]`` into ``venv`` if needed: the same
    version as here when its proxy extra installs, else ``fallback``."""
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    for wanted in dict.fromkeys((litellm_version(), fallback)):
        print(f"setting up {venv} with litellm[proxy]=={wanted} ...", flush=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={wanted}"]
        if subprocess.run(pip).returncode == 0:
            return exe
    raise RuntimeError("could not install litellm[proxy]")


def proxy_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout:g} s")


def quiet_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_LOG"] = "ERROR"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Target:
    name: str
    url: str
    paced_model: str
    burst_model: str
    token: str | None = None


def load(target: Target, model: str, streams: int, ramp: float = 0.0) -> dict[str, Any]:
    cmd = [PYTHON, str(HERE / "bench_server_load.py"), target.url, model, str(streams), str(ramp)]
    if target.token:
        cmd.append(target.token)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=quiet_env())
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["error_count"]:
        print(
            f"  {target.name}: {result['error_count']} streams failed, e.g. {result['errors'][0]}", flush=True
        )
    return result


def first_event_ms(target: Target, model: str, requests: int = 30) -> float:
    """Median time from sending a request to reading its first text event, one request at a time."""
    import http.client
    import statistics
    from urllib.parse import urlsplit

    parts = urlsplit(target.url)
    headers = {"content-type": "application/json"}
    if target.token:
        headers["authorization"] = f"Bearer {target.token}"
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "go"}], "stream": True})
    times = []
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        for _ in range(requests):
            start = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            resp = conn.getresponse()
            while line := resp.readline():
                if line.startswith(b"data: {") and b'"content"' in line and b"t=" in line:
                    times.append((time.perf_counter() - start) * 1e3)
                    break
            resp.read()
    finally:
        conn.close()
    return statistics.median(times)


def measure(target: Target, streams: int, ramp: float) -> dict[str, float]:
    load(target, target.burst_model, 10)  # warm up: connections, imports, first-call caches
    first = first_event_ms(target, target.burst_model)
    paced = load(target, target.paced_model, streams, ramp)
    burst = load(target, target.burst_model, streams)
    return {
        "first": first,
        "p50": paced["p50_ms"] if paced["p50_ms"] is not None else float("nan"),
        "p99": paced["p99_ms"] if paced["p99_ms"] is not None else float("nan"),
        "paced_events": paced["events"],
        "paced_ok": paced["streams_ok"],
        "burst_events": burst["events"],
        "burst_ok": burst["streams_ok"],
        "burst_seconds": burst["seconds"],
        "throughput": burst["events"] / burst["seconds"] if burst["seconds"] else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=20, help="chunks per paced stream")
    parser.add_argument("--interval", type=int, default=1000, help="ms between paced chunks")
    parser.add_argument("--burst", type=int, default=100, help="chunks per burst stream")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which paced streams start")
    parser.add_argument("--no-proxy", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument("--proxy-venv", type=Path, default=DEFAULT_PROXY_VENV)
    parser.add_argument(
        "--proxy-litellm", default="1.106.2", help="the proxy's LiteLLM if this one's proxy extra fails"
    )
    args = parser.parse_args()

    paced, burst = f"paced-{args.chunks}-{args.interval}", f"burst-{args.burst}"
    procs: list[subprocess.Popen[Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="cllm-bench-"))
    try:
        provider = subprocess.Popen(
            [PYTHON, str(HERE / "provider_server.py"), "--uvloop"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=quiet_env(),
        )
        procs.append(provider)
        assert provider.stdout is not None
        provider_url = f"http://127.0.0.1:{provider.stdout.readline().split()[1]}"
        targets = [Target("provider (anchor)", provider_url, paced, burst)]

        config = tmp / "cllm.toml"
        config.write_text(
            "\n".join(
                f'[models.{alias}]\nmodel = "openai/{model}"\napi_base = "{provider_url}/v1"\napi_key = "x"\n'
                for alias, model in (("paced", paced), ("burst", burst))
            )
        )
        for name, fast in (("cllm serve", "1"), ("cllm serve, fast path off", "0")):
            port = free_port()
            cllm = subprocess.Popen(
                [PYTHON, "-m", "cllm.server", "--port", str(port), "--config", str(config),
                 "--db", str(tmp / f"c{fast}.db"), "--max-streams-per-client", "100000",
                 "--log-level", "warning", "--token", TOKEN],
                env={**quiet_env(), "CLLM_HOME": str(tmp), "CLLM_FAST_PATH": fast},
            )  # fmt: skip
            procs.append(cllm)
            wait_http(f"http://127.0.0.1:{port}/healthz", 60, cllm)
            targets.append(Target(name, f"http://127.0.0.1:{port}", "paced", "burst", TOKEN))

        if not args.no_proxy:
            exe = setup_proxy_venv(args.proxy_venv, args.proxy_litellm)
            proxy_name = f"litellm proxy {proxy_version(args.proxy_venv)}"
            proxy_config = tmp / "proxy.yaml"
            proxy_config.write_text(
                f"general_settings:\n  master_key: {TOKEN}\nmodel_list:\n"
                + "".join(
                    f"  - model_name: {alias}\n    litellm_params:\n      model: openai/{model}\n"
                    f"      api_base: {provider_url}/v1\n      api_key: x\n"
                    for alias, model in (("paced", paced), ("burst", burst))
                )
            )
            proxy_port = free_port()
            proxy = subprocess.Popen(
                [str(exe), "--config", str(proxy_config), "--host", "127.0.0.1", "--port", str(proxy_port),
                 "--num_workers", "1"],
                env=quiet_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
            )  # fmt: skip
            procs.append(proxy)
            wait_http(f"http://127.0.0.1:{proxy_port}/health/liveliness", 120, proxy)
            targets.append(Target(proxy_name, f"http://127.0.0.1:{proxy_port}", "paced", "burst", TOKEN))

        print(
            f"{args.streams} concurrent streams; paced: {args.chunks} chunks every {args.interval} ms; "
            f"burst: {args.burst} chunks at once",
            flush=True,
        )
        results = {}
        for target in targets:
            print(f"measuring {target.name} ...", flush=True)
            results[target.name] = measure(target, args.streams, args.ramp)
    finally:
        for proc in reversed(procs):
            if proc.stdin is not None:
                proc.stdin.close()
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    columns = f"{'first ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'streams ok':>12}{'events/s':>11}{'burst s':>9}"
    header = f"{'target':<28}{columns}"
    print("\n" + header + "\n" + "-" * len(header))
    for name, r in results.items():
        ok = f"{int(r['paced_ok'])}+{int(r['burst_ok'])}"
        print(
            f"{name:<28}{r['first']:>9.1f}{r['p50']:>9.1f}{r['p99']:>9.1f}{ok:>12}{r['throughput']:>11.0f}"
            f"{r['burst_seconds']:>9.2f}"
        )
    anchor = results["provider (anchor)"]
    for name in ("cllm serve", "cllm serve, fast path off"):
        ours = results[name]
        added = ours["p99"] - anchor["p99"]
        first = ours["first"] - anchor["first"]
        print(
            f"\n{name}: p99 delay per event {ours['p99']:.1f} ms, {added:.1f} ms more than the provider alone"
            f" (target <= 50); first event {first:+.1f} ms against the provider (target <= 5)"
        )
        for other, r in results.items():
            if other.startswith("litellm proxy"):
                print(
                    f"  throughput / {other}: {ours['throughput'] / r['throughput']:.2f}x (target >= 5);"
                    f" p99 / proxy's: {ours['p99'] / r['p99']:.2f}x"
                )
    on, off = results["cllm serve"], results["cllm serve, fast path off"]
    print(
        f"\nfast path on / off: throughput {on['throughput'] / off['throughput']:.2f}x, "
        f"p99 {on['p99'] / off['p99']:.2f}x, first event {on['first'] / off['first']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
