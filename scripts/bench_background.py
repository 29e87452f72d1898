"""Benchmark: how much a fit made while serving slows an answer generated at the same time.

Background calibration and the refit from traffic fit the difficulty model while the server
serves (the probe's fit on 900 prompt vectors is seconds of NumPy work).  Both start when no
request waits or runs, but a request may arrive during the fit.  This measures the decode speed
of the local model (llama-cpp-python in-process, as ``hybrid serve`` runs it, greedy, the same
prompt and max tokens) in three conditions, interleaved round by round:

    alone          no fit running
    plain thread   fits running back to back on an ordinary worker thread (NumPy's BLAS on
                   every core at normal priority: how fits ran before)
    low priority   the same fits through ``run_low_priority`` (their own thread at nice 19,
                   BLAS on one thread: how hybrid runs them)

and prints the median decode tok/s of each, with the ratios

    plain thread / alone     (what a request lost to a fit before)
    low priority / alone     (what it loses now; target >= 0.90)

and how long one fit takes alone, on an ordinary thread and at low priority (what the fit pays:
one BLAS thread instead of all of them).

Then the other background work, answers on the model's low-priority lane (background
calibration's, local shadow answers): through hybrid's own ``LocalBackend`` and queue with one
slot, the time to the first token of a short client request alone, and of the same request
arriving while a background answer (``--background-tokens``, a local shadow answer's cap) runs
in that slot, which it stops at its next token.  Before, the request waited for that answer to
end: up to the background answer's whole duration, measured in the same rounds.

The fit is ``calibrate`` with prompt vectors on the calibration set (``--per-category`` items a
category), with grades and vectors drawn at random: only the work it does matters here, not
what it learns.

About 2 minutes on two cores with the defaults.

Usage:
    python scripts/bench_background.py [--rounds 3] [--max-tokens 96] [--per-category 60]
        [--threads N] [--model PATH] [--background-tokens 256]

``--threads`` defaults to one core fewer than the machine has, as ``scripts/bench_local.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil  # type: ignore[import-untyped,unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_local import raw_run  # the same streamed greedy completion bench_local.py times

from hybrid.backend import collect
from hybrid.errors import PreemptedError
from hybrid.generation import GenerationRequest, SamplingParams, TextDelta
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import LlamaEngine, LoadOptions
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.routing.calibration.fitting import calibrate
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.low_priority import run_low_priority

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
TARGET = 0.90


def fit_once(per_category: int, size: int) -> Callable[[], object]:
    """A fit of the size background calibration makes, on drawn grades and vectors."""
    items = calibration_set(0, per_category=per_category)
    rng = np.random.default_rng(0)
    correct = [bool(v) for v in rng.random(len(items)) < 0.3]
    vectors = [
        tuple(float(x) for x in rng.normal(size=size) + (0.5 if ok else 0.0)) for ok in correct
    ]

    def fit() -> object:
        return calibrate(items, correct, seed=0, vectors=vectors)

    return fit


def decode_speed(llama: object, max_tokens: int) -> float:
    """Decode tok/s after the first token of one streamed greedy completion."""
    return raw_run(llama, PROMPT, max_tokens).decode_tokens_per_s


class FitsInBackground:
    """Fits back to back, on an ordinary thread or through ``run_low_priority``, until stopped."""

    def __init__(self, fit: Callable[[], object], low_priority: bool) -> None:
        self._fit = fit
        self._low = low_priority
        self._stop = threading.Event()
        self.fits = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._low:
                asyncio.run(run_low_priority(self._fit))
            else:
                self._fit()
            self.fits += 1

    def __enter__(self) -> FitsInBackground:
        self._thread.start()
        time.sleep(0.5)  # let the first fit get going
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


QUESTION = "The capital of France is"


async def first_token_s(backend: LocalBackend, prompt: str, max_tokens: int) -> float:
    """Seconds from a request's start to its first piece of text (the rest is read too)."""
    started = time.perf_counter()
    first = 0.0
    generation = await backend.start(
        GenerationRequest("bench", prompt=prompt, params=SamplingParams(max_tokens=max_tokens))
    )
    try:
        async for event in generation:
            if isinstance(event, TextDelta) and event.text and not first:
                first = time.perf_counter() - started
    finally:
        await generation.aclose()
    return first


async def preemption_round(
    client: LocalBackend, background: LocalBackend, background_tokens: int
) -> tuple[float, float, float]:
    """One round: the client request's first token alone, and while a background answer runs;
    and the background answer's whole duration alone."""
    long = GenerationRequest(
        "background", prompt=PROMPT, params=SamplingParams(max_tokens=background_tokens)
    )
    started = time.perf_counter()
    await collect(await background.start(long))
    whole = time.perf_counter() - started
    # After the background answer, as below: the slot's cache holds its prompt, not this one.
    alone = await first_token_s(client, QUESTION, 8)
    generation = await background.start(long)
    events = aiter(generation)
    await anext(events)  # the background answer runs in the slot
    during = await first_token_s(client, QUESTION, 8)
    try:
        async for _ in events:
            pass
    except PreemptedError:
        pass
    else:
        raise AssertionError("the background answer was not stopped for the client request")
    finally:
        await generation.aclose()
    return alone, during, whole


def preemption(model: Path, threads: int, rounds: int, background_tokens: int) -> None:
    """Print the first-token times of a client request alone and during a background answer."""
    engine = LlamaEngine.load(
        model, LoadOptions(n_ctx=1024, n_threads=threads, n_gpu_layers=0, n_batch=512)
    )
    queue = WorkQueue(max_waiting=4)
    client, background = (
        LocalBackend(
            engine,
            lane,
            ChatFormatter(None),
            model_id="bench",
            default_max_tokens=background_tokens,
            default_temperature=0.0,
        )
        for lane in (queue, queue.background())
    )
    try:
        asyncio.run(first_token_s(client, QUESTION, 8))  # warm
        runs = [
            asyncio.run(preemption_round(client, background, background_tokens))
            for _ in range(rounds)
        ]
    finally:
        queue.close()
        engine.close()
    alone, during, whole = (statistics.median(values) for values in zip(*runs, strict=True))
    print(f"\na client request and a background answer ({background_tokens} tokens), one slot:")
    print(f"{'first token of the client request':<48}{'ms (median)':>12}")
    print(f"{'  alone':<48}{alone * 1000:>12.1f}")
    print(f"{'  during a background answer (it stops)':<48}{during * 1000:>12.1f}")
    print(f"{'  before: waited for it to end, up to':<48}{whole * 1000:>12.1f}")
    print(f"\nduring / alone: {during / alone:.2f} ({rounds} rounds)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--per-category", type=int, default=60)
    # bench_local.py's default: one core left for the server (hybrid's plan on two cores)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--background-tokens", type=int, default=256)
    args = parser.parse_args()

    from llama_cpp import Llama

    from hybrid.models.embedded import ensure_embedded_model
    from hybrid.settings import load_settings

    model = args.model or ensure_embedded_model(load_settings().settings.home)
    llama = Llama(
        model_path=str(model),
        n_ctx=1024,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    print(f"model: {Path(model).name}; {args.threads} threads; {psutil.cpu_count()} CPUs")
    fit = fit_once(args.per_category, llama.n_embd())

    started = time.perf_counter()
    fit()
    plain_fit_s = time.perf_counter() - started
    started = time.perf_counter()
    asyncio.run(run_low_priority(fit))
    low_fit_s = time.perf_counter() - started

    decode_speed(llama, 8)  # warm
    speeds: dict[str, list[float]] = {"alone": [], "plain thread": [], "low priority": []}
    fits = {"plain thread": 0, "low priority": 0}
    for _ in range(args.rounds):
        speeds["alone"].append(decode_speed(llama, args.max_tokens))
        for name, low in (("plain thread", False), ("low priority", True)):
            with FitsInBackground(fit, low) as running:
                speeds[name].append(decode_speed(llama, args.max_tokens))
            fits[name] += running.fits
    median = {name: statistics.median(values) for name, values in speeds.items()}

    print(f"\none fit alone: {plain_fit_s:.2f} s on an ordinary thread, ", end="")
    print(f"{low_fit_s:.2f} s at low priority (one BLAS thread)\n")
    print(f"{'decode while fitting':<22}{'tok/s (median)':>16}{'rounds':>8}{'fits':>6}")
    for name, value in median.items():
        print(f"{name:<22}{value:>16.1f}{len(speeds[name]):>8}{fits.get(name, 0):>6}")
    plain = median["plain thread"] / median["alone"]
    low = median["low priority"] / median["alone"]
    print(f"\nplain thread / alone: {plain:.2f}")
    verdict = "met" if low >= TARGET else "NOT met"
    print(f"low priority / alone: {low:.2f} (target >= {TARGET:.2f}: {verdict})")
    del llama
    preemption(Path(model), args.threads, args.rounds, args.background_tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
