"""Benchmark: partial-JSON parsing of streamed tool-call arguments, fed in 4-character deltas.

Compares, in the same run:
  cllm    PartialJsonParser.feed(delta) (incremental, keeps its place)
  jiter   jiter.from_json(accumulated.encode(), partial_mode="trailing-strings") on every delta
  pjp     partial_json_parser.loads(accumulated) on every delta (pure Python and slow: measured in full at the
          smallest size only; at larger sizes its total is extrapolated from evenly spaced sample deltas)

Run: .venv/bin/python bench/bench_partial_json.py
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from cllm.core.partial_json import PartialJsonParser
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from cllm.core.partial_json import PartialJsonParser

import jiter
import partial_json_parser  # type: ignore[import-untyped]

DELTA = 4
SIZES_KB = (16, 64, 256)
PJP_FULL_MAX_KB = 16  # partial_json_parser is measured on every delta up to this size
PJP_SAMPLES = 200  # ... and on this many evenly spaced deltas above it
TARGET_VS_JITER = 20.0
TARGET_SCALING = 4.6

_CODE_LINES = [
    'def greet(name: str) -> str:\n    return f"Hello, {name}!"  # naïve café ☕\n',
    "PATTERN = re.compile(r'\\\\d+\\.\\\\d*')\n",
    '    path = "C:\\\\Users\\\\dev\\\\project\\\\main.py"\n',
    '\tprint("tab\\there", \'single\', "double \\"quoted\\"")\n',
    "# 日本語のコメント — and an emoji 🚀 for good measure\n",
    "for i in range(10):\n    total += i * 2  # </script> & <tag attr='x'>\n",
]


def _file_text(n_chars: int, rng: random.Random) -> str:
    parts: list[str] = []
    size = 0
    while size < n_chars:
        line = rng.choice(_CODE_LINES)
        parts.append(line)
        size += len(line)
    return "".join(parts)


def _document(size_kb: int) -> str:
    """Tool-call arguments of about `size_kb` KB: one big code string and a list of many small objects."""
    rng = random.Random(size_kb)
    target = size_kb * 1024
    doc: dict[str, Any] = {
        "path": "src/example/module.py",
        "mode": "overwrite",
        "file_text": _file_text(int(target * 0.6), rng),
        "items": [],
    }
    items = doc["items"]
    while len(json.dumps(doc, ensure_ascii=False)) < target:
        i = len(items)
        items.append(
            {
                "id": i,
                "name": f"item-{i} «{rng.choice(['ü', '中', '€'])}»",
                "score": round(rng.uniform(-1000, 1000), 3),
                "tags": rng.sample(["a", "b", "c", "d", "e"], 2),
                "active": rng.random() < 0.5,
                "parent": None if i % 3 else i - 1,
            }
        )
    return json.dumps(doc, ensure_ascii=False)


def _long_string_document(size_kb: int) -> str:
    return json.dumps(
        {"file_text": _file_text(size_kb * 1024 * 9 // 10, random.Random(size_kb))}, ensure_ascii=False
    )


def _deltas(text: str) -> list[str]:
    return [text[i : i + DELTA] for i in range(0, len(text), DELTA)]


def _run_cllm(deltas: list[str]) -> Any:
    parser = PartialJsonParser()
    value = None
    for delta in deltas:
        value = parser.feed(delta)
    return value


def _run_jiter(deltas: list[str]) -> Any:
    text = ""
    value = None
    for delta in deltas:
        text += delta
        with contextlib.suppress(ValueError):  # e.g. a lone "-" or "1e": no value yet
            value = jiter.from_json(text.encode(), partial_mode="trailing-strings")
    return value


def _run_pjp(deltas: list[str]) -> Any:
    text = ""
    value = None
    for delta in deltas:
        text += delta
        with contextlib.suppress(Exception):  # it raises its own error types on some prefixes
            value = partial_json_parser.loads(text)
    return value


def _pjp_sampled(deltas: list[str]) -> float:
    """Extrapolated total time of partial_json_parser over all deltas, from evenly spaced samples."""
    step = max(1, len(deltas) // PJP_SAMPLES)
    text = ""
    elapsed = 0.0
    samples = 0
    for k, delta in enumerate(deltas):
        text += delta
        if k % step == 0:
            start = time.perf_counter()
            with contextlib.suppress(Exception):
                partial_json_parser.loads(text)
            elapsed += time.perf_counter() - start
            samples += 1
    return elapsed / samples * len(deltas)


def _best(fn: Callable[[list[str]], Any], deltas: list[str], repeats: int, expected: Any) -> float:
    """Best wall time of `repeats` runs; the final value is checked against json.loads outside the timing."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn(deltas)
        best = min(best, time.perf_counter() - start)
        assert value == expected, f"{fn.__name__}: final value differs from json.loads"
    return best


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:10.1f}"


def main() -> None:
    print(f"Deltas of {DELTA} characters; best of several repeats; times in ms for the whole stream.\n")
    header = (
        f"{'size':>7} {'deltas':>7} {'cllm':>10} {'jiter':>10} {'pjp':>10}"
        f"  {'jiter/cllm':>10} {'pjp/cllm':>9}"
    )
    print(header)
    print("-" * len(header))
    cllm_times: dict[int, float] = {}
    ratios: dict[int, float] = {}
    for size_kb in SIZES_KB:
        text = _document(size_kb)
        expected = json.loads(text)
        deltas = _deltas(text)
        cllm = _best(_run_cllm, deltas, 7, expected)
        jit = _best(_run_jiter, deltas, 3 if size_kb <= 64 else 1, expected)
        if size_kb <= PJP_FULL_MAX_KB:
            pjp, mark = _best(_run_pjp, deltas, 1, expected), " "
        else:
            pjp, mark = _pjp_sampled(deltas), "*"
            assert partial_json_parser.loads(text) == expected, "partial_json_parser: final value differs"
        cllm_times[size_kb] = cllm
        ratios[size_kb] = jit / cllm
        print(
            f"{len(text) / 1024:6.0f}K {len(deltas):7d} {_ms(cllm)} {_ms(jit)} {_ms(pjp)}{mark}"
            f" {jit / cllm:10.0f}x {pjp / cllm:8.0f}x{mark}"
        )
    print(
        f"\n* partial_json_parser extrapolated from {PJP_SAMPLES} evenly spaced deltas (full run too slow)."
    )

    scaling = cllm_times[256] / cllm_times[64]
    print(f"\ncllm time(256K) / time(64K) = {scaling:.2f}  (linear would be 4.00)")

    print("\nOne long string only (the in-place string append path):")
    long_times: dict[int, float] = {}
    for size_kb in (64, 256):
        text = _long_string_document(size_kb)
        long_times[size_kb] = _best(_run_cllm, _deltas(text), 7, json.loads(text))
        print(f"{len(text) / 1024:6.0f}K  cllm {_ms(long_times[size_kb])} ms")
    long_scaling = long_times[256] / long_times[64]
    print(f"cllm time(256K) / time(64K) = {long_scaling:.2f}")

    print("\nTargets:")
    checks = [
        (
            f"cllm >= {TARGET_VS_JITER:.0f}x faster than jiter-per-delta at 256K",
            ratios[256] >= TARGET_VS_JITER,
        ),
        (f"cllm time(256K)/time(64K) <= {TARGET_SCALING}", scaling <= TARGET_SCALING),
        (f"one long string: time(256K)/time(64K) <= {TARGET_SCALING}", long_scaling <= TARGET_SCALING),
    ]
    for label, ok in checks:
        print(f"  [{'MET' if ok else 'NOT MET'}] {label}")


if __name__ == "__main__":
    main()
