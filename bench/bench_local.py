"""Tokens per second of the embedded local model: cllm against llama-cpp-python called directly.

Run: python bench/bench_local.py [--max-tokens 128] [--rounds 6]

Both sides use the same loaded Llama object, the same prompt tokens, the same settings
(temperature 0, same stop strings, same seed) and generate exactly --max-tokens tokens:
  direct: Llama.create_completion(prompt_tokens, stream=True) iterated in the calling thread
  cllm:   cllm.astream("local/gemma-3-270m", ...) iterated on an event loop (generation runs on a
          worker thread, each token goes through LiteLLM and cllm's accumulator)
Rounds alternate the order (direct first, then cllm first). Tokens/s is over the whole request,
prompt included; each row is one round, the last the median. Target: cllm >= 0.95x direct.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import cllm
from cllm.local import DEFAULT_MODEL
from cllm.local._generate import Generation
from cllm.local._model import LoadedModel, load

PROMPT = "Continue the sequence: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"  # a reply that does not stop early
SEED = 1234


def direct(model: LoadedModel, max_tokens: int) -> tuple[float, str]:
    settings = {"temperature": 0, "max_tokens": max_tokens, "seed": SEED}
    started = time.perf_counter()
    request = Generation(model, [{"role": "user", "content": PROMPT}], settings)  # the same prompt tokens
    s = request.sampling
    text, finish = "", None
    for chunk in model.llm.create_completion(
        request.prompt_tokens,
        max_tokens=s.max_tokens,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        min_p=s.min_p,
        seed=SEED,
        stop=request.stop_strings,
        stream=True,
    ):
        choice = chunk["choices"][0]
        text += choice["text"]
        finish = choice["finish_reason"] or finish
    elapsed = time.perf_counter() - started
    assert finish == "length", f"the direct call stopped early ({finish}): use a smaller --max-tokens"
    return max_tokens / elapsed, text.lstrip()


async def through_cllm(max_tokens: int) -> tuple[float, str]:
    started = time.perf_counter()
    async with cllm.astream(DEFAULT_MODEL, PROMPT, temperature=0, max_tokens=max_tokens, seed=SEED) as s:
        async for _ in s:
            pass
    elapsed = time.perf_counter() - started
    response = s.response
    assert response.finish_reason == "length", f"cllm stopped early ({response.finish_reason})"
    assert response.usage is not None and response.usage.completion_tokens == max_tokens
    return max_tokens / elapsed, response.text


async def run(model: LoadedModel, max_tokens: int, rounds: int) -> list[tuple[float, float]]:
    # One event loop for every round, as in an application; the direct calls block it while they
    # run, which costs them nothing.
    await through_cllm(max_tokens)  # warm-up: LiteLLM's lazy imports, the loop's thread pool
    direct(model, max_tokens)
    print(f"{'round':>5}  {'direct tok/s':>12}  {'cllm tok/s':>10}  {'ratio':>6}")
    rows = []
    for i in range(rounds):
        if i % 2 == 0:
            d, d_text = direct(model, max_tokens)
            c, c_text = await through_cllm(max_tokens)
        else:
            c, c_text = await through_cllm(max_tokens)
            d, d_text = direct(model, max_tokens)
        assert c_text == d_text, "the two sides generated different text"
        rows.append((d, c))
        print(f"{i + 1:>5}  {d:12.1f}  {c:10.1f}  {c / d:6.3f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    model = load("gemma-3-270m")
    print(f"{model.path.name}: {args.max_tokens} tokens per request, {model.llm.n_threads} thread(s)\n")
    rows = asyncio.run(run(model, args.max_tokens, args.rounds))
    d_med = statistics.median(r[0] for r in rows)
    c_med = statistics.median(r[1] for r in rows)
    ratio = c_med / d_med
    verdict = "ok" if ratio >= 0.95 else "BELOW TARGET"
    print(
        f"{'med':>5}  {d_med:12.1f}  {c_med:10.1f}  {ratio:6.3f}   cllm / direct (target >= 0.95): {verdict}"
    )


if __name__ == "__main__":
    main()
