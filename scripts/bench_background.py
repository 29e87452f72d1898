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
one BLAS thread instead of all of them).  The fit is ``calibrate`` with prompt vectors on the
calibration set (``--per-category`` items a category), with grades and vectors drawn at random:
only the work it does matters here, not what it learns.

About 2 minutes on two cores with the defaults.

Usage:
    python scripts/bench_background.py [--rounds 3] [--max-tokens 96] [--per-category 60]
        [--threads N] [--model PATH]

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--per-category", type=int, default=60)
    # bench_local.py's default: one core left for the server (hybrid's plan on two cores)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--model", type=Path, default=None)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
