"""Benchmark: many concurrent SSE streams through `cllm serve`, side by side with LiteLLM's proxy.

Three targets, each a separate process on loopback, one worker each, in front of the same local
provider (provider_server.py): the provider itself (the anchor: what the client and the
provider cost), `cllm serve`, and LiteLLM's own proxy (`litellm[proxy]`, same LiteLLM version, in
its own virtualenv, master key set; cllm runs with --token). The load generator
(bench_server_load.py) is another process; every stream goes through /v1/chat/completions.

Two phases per target:
  paced  STREAMS streams started over RAMP seconds, each CHUNKS chunks INTERVAL ms apart (all of
         them running at once for most of the phase): the delay each event gains on the way
         (receive time - the provider's send stamp), p50/p99.
  burst  STREAMS streams at once, each BURST chunks sent at once: events per second through the
         server (the server is the bottleneck).

Run:   .venv/bin/python bench/bench_server.py            (sets up .venv-proxy on first run)
       .venv/bin/python bench/bench_server.py --no-proxy (cllm and the anchor only)
Targets: cllm's p99 added delay <= 50 ms, and >= 2x the proxy's throughput.
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


def setup_proxy_venv(venv: Path) -> Path:
    """The proxy's ``litellm`` command; installs ``litellm[proxy]`` (same version) into ``venv`` if needed."""
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"setting up {venv} with litellm[proxy]=={litellm_version()} ...", flush=True)
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={litellm_version()}"], check=True
    )
    return exe


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


def measure(target: Target, streams: int, ramp: float) -> dict[str, float]:
    load(target, target.burst_model, 10)  # warm up: connections, imports, first-call caches
    paced = load(target, target.paced_model, streams, ramp)
    burst = load(target, target.burst_model, streams)
    return {
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
        port = free_port()
        cllm = subprocess.Popen(
            [PYTHON, "-m", "cllm.server", "--port", str(port), "--config", str(config),
             "--db", str(tmp / "c.db"), "--max-streams-per-client", "100000", "--log-level", "warning",
             "--token", TOKEN],
            env={**quiet_env(), "CLLM_HOME": str(tmp)},
        )  # fmt: skip
        procs.append(cllm)
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, cllm)
        targets.append(Target("cllm serve", f"http://127.0.0.1:{port}", "paced", "burst", TOKEN))

        if not args.no_proxy:
            exe = setup_proxy_venv(args.proxy_venv)
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
            targets.append(Target("litellm proxy", f"http://127.0.0.1:{proxy_port}", "paced", "burst", TOKEN))

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

    header = f"{'target':<20}{'p50 ms':>9}{'p99 ms':>9}{'streams ok':>12}{'events/s':>11}{'burst s':>9}"
    print("\n" + header + "\n" + "-" * len(header))
    for name, r in results.items():
        ok = f"{int(r['paced_ok'])}+{int(r['burst_ok'])}"
        print(
            f"{name:<20}{r['p50']:>9.1f}{r['p99']:>9.1f}{ok:>12}{r['throughput']:>11.0f}{r['burst_seconds']:>9.2f}"
        )
    anchor, ours = results["provider (anchor)"], results["cllm serve"]
    print(
        f"\ncllm p99 added delay per event: {ours['p99']:.1f} ms (target <= 50; "
        f"{ours['p99'] - anchor['p99']:.1f} ms more than the provider alone)"
    )
    proxy_result = results.get("litellm proxy")
    if proxy_result:
        print(f"proxy p99 added delay per event: {proxy_result['p99']:.1f} ms")
        print(f"p99 added, cllm / proxy: {ours['p99'] / proxy_result['p99']:.2f}x")
        print(
            f"throughput, cllm / proxy: {ours['throughput'] / proxy_result['throughput']:.2f}x (target >= 2)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
