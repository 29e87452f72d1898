"""The measuring of ``scripts/bench_proxy.py``: the plan, the rounds, their checks and summaries.

:func:`measure` runs every load point in rounds, rotating the order of the targets each round so
that none gets a cooler machine, and records each batch with the CPU its serving process spent
and the upstream's counters around it; :func:`check_upstream` holds every batch to the
upstream's request counter; :func:`summarize` folds a target's rounds into the figures the report
prints.  :func:`smoke` checks that every target answers before anything is measured.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench_client import Batch, Target, open_connection, percentile, run_batch
from cpu_accounting import process_cpu_s
from proxy_servers import upstream_stats

MODES = ("json", "stream")


@dataclass(frozen=True)
class Point:
    """A load shape: whole answers or streams, at a concurrency."""

    mode: str
    concurrency: int

    @property
    def label(self) -> str:
        return f"c={self.concurrency} {self.mode}"


@dataclass(frozen=True)
class Plan:
    """How much to send."""

    requests: int
    rounds: int
    warmup: int
    batch_time_limit_s: float
    timeout_s: float


@dataclass(frozen=True)
class Measured:
    """One batch, the CPU seconds its serving process spent on it, and the connections the
    upstream accepted meanwhile (the direct client's own included)."""

    batch: Batch
    cpu_s: float
    upstream_connections: int


@dataclass
class Results:
    """Batches by (point label, target name), and the upstream checks."""

    batches: dict[tuple[str, str], list[Measured]] = field(default_factory=dict)
    upstream_mismatches: list[str] = field(default_factory=list)
    upstream_checked: int = 0

    def of(self, point: Point, target: str) -> list[Measured]:
        return self.batches.get((point.label, target), [])


@dataclass(frozen=True)
class Summary:
    """One target at one point, over all its rounds."""

    n: int
    p50: float
    p99: float
    rps: float
    cpu_ms_per_request: float
    connections_per_request: float
    errors: int
    truncated: bool
    first_errors: tuple[str, ...]


def summarize(measured: Sequence[Measured]) -> Summary:
    batches = [m.batch for m in measured]
    samples = sorted(s for b in batches for s in b.samples)
    window = sum(b.window_s for b in batches)
    answered = sum(b.answered for b in batches)
    errors = [e for b in batches for e in b.errors]
    return Summary(
        n=len(samples),
        p50=percentile(samples, 0.50),
        p99=percentile(samples, 0.99),
        rps=sum(b.window_completions for b in batches) / window if window > 0 else math.nan,
        cpu_ms_per_request=sum(m.cpu_s for m in measured) * 1000 / answered
        if answered
        else math.nan,
        connections_per_request=sum(m.upstream_connections for m in measured) / answered
        if answered
        else math.nan,
        errors=len(errors),
        truncated=any(b.truncated for b in batches),
        first_errors=tuple(dict.fromkeys(errors))[:3],
    )


async def measure(
    points: Sequence[Point],
    targets: Sequence[Target],
    plan: Plan,
    upstream_port: int,
    results: Results,
    *,
    requests: int,
) -> None:
    """Run every point, in rounds, rotating the order of the targets each round."""
    per_round = math.ceil(requests / plan.rounds)
    for point in points:
        for round_ in range(plan.rounds):
            shift = round_ % len(targets)
            for target in [*targets[shift:], *targets[:shift]]:
                before = await asyncio.to_thread(upstream_stats, upstream_port)
                cpu = process_cpu_s(target.pid)
                batch = await run_batch(
                    target,
                    stream=point.mode == "stream",
                    concurrency=point.concurrency,
                    count=per_round,
                    warmup=max(plan.warmup, 2 * point.concurrency),
                    time_limit_s=plan.batch_time_limit_s,
                    timeout_s=plan.timeout_s,
                )
                cpu = process_cpu_s(target.pid) - cpu
                after = await asyncio.to_thread(upstream_stats, upstream_port)
                check_upstream(target, batch, after[0] - before[0], point, results)
                results.batches.setdefault((point.label, target.name), []).append(
                    Measured(batch, cpu, after[1] - before[1])
                )
                p50 = percentile(sorted(batch.samples), 0.5) * 1000
                print(
                    f"{point.label:<11} round {round_ + 1}/{plan.rounds} {target.name:<10}"
                    f" n={len(batch.samples)} p50={p50:.3f} ms errors={len(batch.errors)}",
                    file=sys.stderr,
                    flush=True,
                )


def check_upstream(target: Target, batch: Batch, seen: int, point: Point, results: Results) -> None:
    """The upstream must have answered exactly one request per correct answer (none for 404)."""
    if batch.errors and target.reaches_upstream:
        return  # a failed request may or may not have reached the upstream
    expected = batch.answered if target.reaches_upstream else 0
    results.upstream_checked += 1
    if seen != expected:
        results.upstream_mismatches.append(
            f"{point.label} {target.name}: the upstream answered {seen} requests for "
            f"{expected} expected"
        )


async def smoke(targets: Sequence[Target]) -> dict[str, str]:
    """One request of each mode per target; returns the failures by target name."""
    failures: dict[str, str] = {}
    for target in targets:
        for mode in MODES:
            connection = await open_connection(target)
            try:
                # The first request may pay for imports and pools: allow it time.
                outcome = await connection.exchange(
                    target.request(mode == "stream"), stream=mode == "stream", timeout_s=60
                )
            finally:
                await connection.aclose()
            if outcome.error is not None:
                failures.setdefault(target.name, f"{mode}: {outcome.error}")
    return failures


def run_async(coroutine: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
