"""Cold start of the `cllm` command against LiteLLM's own import, side by side in one run.

Run: python bench/bench_startup.py [--rounds 7]

Each round runs, in turn (the order rotates every round):
  a. python -c "import litellm"                   (the floor: LiteLLM's import)
  b. cllm "hi" -m openai/text-5 -o api_base URL    time from spawn to the first byte on stdout
  c. cllm --help
  d. cllm logs
against bench/provider_server.py on 127.0.0.1, with a fresh CLLM_HOME. Prints the median of each
and the ratio b/a (target <= 1.15).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
CLLM = [PYTHON, "-m", "cllm.cli"]


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [PYTHON, str(HERE / "provider_server.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[1])
    return proc, f"http://127.0.0.1:{port}/v1"


def time_to_exit(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def time_to_first_byte(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    first = os.read(proc.stdout.fileno(), 1)
    elapsed = time.perf_counter() - started
    proc.stdout.read()
    if proc.wait() != 0 or not first:
        raise RuntimeError("cllm failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    server, api_base = start_server()
    home = tempfile.mkdtemp(prefix="cllm-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLLM_")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", CLLM_HOME=home, OPENAI_API_KEY="sk-bench")
    cases: dict[str, Callable[[], float]] = {
        "a. python -c 'import litellm'": lambda: time_to_exit([PYTHON, "-c", "import litellm"], env),
        "b. cllm 'hi' (to first byte)": lambda: time_to_first_byte(
            [*CLLM, "hi", "-m", "openai/text-5", "-o", "api_base", api_base], env
        ),
        "c. cllm --help": lambda: time_to_exit([*CLLM, "--help"], env),
        "d. cllm logs": lambda: time_to_exit([*CLLM, "logs"], env),
    }
    try:
        names = list(cases)
        times: dict[str, list[float]] = {name: [] for name in names}
        cases[names[1]]()  # warm the disk cache and the log database once, untimed
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times[name].append(cases[name]())
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)
    floor = statistics.median(times[names[0]])
    print(f"{'case':34} {'median':>9} {'min':>9} {'vs import litellm':>18}")
    for name in names:
        median, low = statistics.median(times[name]), min(times[name])
        print(f"{name:34} {median * 1000:7.0f}ms {low * 1000:7.0f}ms {median / floor:17.2f}x")
    ratio = statistics.median(times[names[1]]) / floor
    verdict = "ok" if ratio <= 1.15 else "OVER"
    print(
        f"\ntime to first token / import litellm: {ratio:.2f}x (target <= 1.15x: {verdict}); {rounds} rounds"
    )


if __name__ == "__main__":
    main()
