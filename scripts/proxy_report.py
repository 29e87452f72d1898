"""The report of ``scripts/bench_proxy.py``: the machine, the table, the verdicts, the breakdown.

Rendering only: every figure comes from :class:`proxy_measure.Results`, summarized by
:func:`proxy_measure.summarize`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import platform
import subprocess
from collections.abc import Sequence

from cpu_accounting import Quietness
from proxy_measure import Plan, Point, Results, summarize
from proxy_servers import REPO, Fleet

# Other processes may take this share of the machine before the report calls the run noisy.
QUIET_SHARE = 0.10


def machine_line() -> str:
    from hybrid.hardware.cpu import SystemCpuSource

    cpu = SystemCpuSource().read()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {cpu.model} ({cpu.arch}), {cpu.physical_cores} physical / "
        f"{cpu.logical_cores} logical cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average before the run {load}"
    )


def versions_line(litellm_version: str | None) -> str:
    from hybrid import __version__

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    deps = ", ".join(f"{name} {version(name)}" for name in ("uvicorn", "fastapi", "httpx2"))
    peer = f"litellm {litellm_version}" if litellm_version else "litellm: not measured"
    return f"versions: hybrid {__version__} {source_state()} ({deps}); {peer}"


def source_state() -> str:
    """The commit measured, and whether ``hybrid/`` had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "hybrid"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout)"
    return f"at {commit}" + (" with uncommitted changes in hybrid/" if dirty else "")


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.3f}"


def added(value: float, base: float) -> str:
    return "-" if math.isnan(value) or math.isnan(base) else f"{(value - base) * 1000:+.3f}"


def table(points: Sequence[Point], names: Sequence[str], results: Results) -> list[str]:
    lines = [
        f"{'point':<12}{'target':<9}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}"
        f"{'added p99':>11}{'req/s':>8}{'cpu ms/req':>11}{'conn/req':>9}{'errors':>7}"
    ]
    for point in points:
        base = summarize(results.of(point, "direct"))
        for i, name in enumerate(names):
            got = summarize(results.of(point, name))
            lines.append(
                f"{point.label if i == 0 else '':<12}{name:<9}{got.n:>6}{ms(got.p50):>9}"
                f"{ms(got.p99):>9}"
                f"{'-' if name == 'direct' else added(got.p50, base.p50):>11}"
                f"{'-' if name == 'direct' else added(got.p99, base.p99):>11}"
                f"{got.rps:>8.0f}{got.cpu_ms_per_request:>11.3f}"
                f"{got.connections_per_request:>9.2f}{got.errors:>7}"
                + ("  (time limit hit)" if got.truncated else "")
            )
    return lines


def added_at(results: Results, point: Point, name: str, q: float) -> float:
    """``name``'s latency minus direct's at percentile ``q`` (0.5 or 0.99), in seconds."""
    base, got = summarize(results.of(point, "direct")), summarize(results.of(point, name))
    return got.p50 - base.p50 if q == 0.5 else got.p99 - base.p99


def verdicts(points: Sequence[Point], results: Results, peer_missing: str | None) -> list[str]:
    """One line per target of the issue, PASS or MISS, with the figures that decide it."""
    lines = []
    c1 = [p for p in points if p.concurrency == 1]
    if c1:
        figures = {p.mode: added_at(results, p, "hybrid", 0.5) for p in c1}
        verdict = "PASS" if all(v < 0.001 for v in figures.values()) else "MISS"
        shown = ", ".join(f"{mode} {v * 1000:+.3f} ms" for mode, v in figures.items())
        lines.append(f"target 1 (hybrid added p50 < 1 ms at c=1): {verdict} ({shown})")
        if peer_missing is None:
            peer = ", ".join(
                f"{p.mode} {added_at(results, p, 'litellm', 0.5) * 1000:+.3f} ms" for p in c1
            )
            lines.append(f"         for reference, litellm's added p50 at c=1: {peer}")
    else:
        lines.append("target 1 (hybrid added p50 < 1 ms at c=1): not measured (no c=1 point)")
    if peer_missing is not None:
        lines.append("target 2 (hybrid adds less than litellm at every point): NOT MEASURED")
        return lines
    misses = []
    for point in points:
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            ours = added_at(results, point, "hybrid", q)
            theirs = added_at(results, point, "litellm", q)
            if not ours < theirs:
                misses.append(
                    f"{point.label} {label}: hybrid {ours * 1000:+.3f} ms, litellm "
                    f"{theirs * 1000:+.3f} ms"
                )
    total = 2 * len(points)
    lines.append(
        f"target 2 (hybrid added < litellm added at every point, p50 and p99): "
        f"{'PASS' if not misses else 'MISS'} ({total - len(misses)} of {total})"
    )
    return lines + [f"         miss: {m}" for m in misses]


def breakdown(results: Results, point: Point) -> list[str]:
    """hybrid's added time at one point, split by what each probe leaves out."""
    direct = summarize(results.of(point, "direct"))
    client = summarize(results.of(point, "httpx-alone"))
    refused = summarize(results.of(point, "hybrid-404"))
    answered = summarize(results.of(point, "hybrid"))
    inbound = refused.p50 - direct.p50
    outbound = client.p50 - direct.p50
    total = answered.p50 - direct.p50
    width = 56
    return [
        f"where hybrid's added time goes ({point.label}, p50, the four interleaved, "
        f"n={answered.n} each):",
        f"  {'direct to the upstream (raw client)':<{width}}{ms(direct.p50):>8} ms",
        f"  {'the same through the HTTP client hybrid uses':<{width}}"
        f"{ms(client.p50):>8} ms  {added(client.p50, direct.p50)} ms: the outbound HTTP client "
        f"alone ({client.cpu_ms_per_request:.3f} ms CPU/req in the load generator)",
        f"  {'hybrid refuses an unknown model with 404':<{width}}{ms(refused.p50):>8} ms  "
        f"{added(refused.p50, direct.p50)} ms: the inbound side (uvicorn, middleware, validation, "
        f"model names, the error's ledger record, error reply)",
        f"  {'hybrid answers through the upstream':<{width}}{ms(answered.p50):>8} ms  "
        f"{added(answered.p50, direct.p50)} ms added in all "
        f"({answered.cpu_ms_per_request:.3f} ms CPU/req)",
        f"  so roughly: inbound {inbound * 1000:+.3f} ms, client {outbound * 1000:+.3f} ms, "
        f"the rest {(total - inbound - outbound) * 1000:+.3f} ms (routing context, provider "
        f"code, the reply)",
    ]


def quiet_lines(quiet: Quietness) -> list[str]:
    cores = os.cpu_count() or 1
    line = (
        f"other processes on this machine used {quiet.share:.0%} of its {cores} cores during "
        f"the measurement ({quiet.others_s:.0f} CPU s of {quiet.capacity_s:.0f})"
    )
    if not quiet.share <= QUIET_SHARE:
        return [
            line,
            "WARNING: the machine was not quiet: latencies are noisy and pessimistic for every "
            "target (the CPU ms/req column is the least affected); re-run on a quiet machine",
        ]
    return [line]


def report(
    args: argparse.Namespace,
    header: str,
    fleet: Fleet,
    points: Sequence[Point],
    results: Results,
    split: Results,
    quiet: Quietness,
    plan: Plan,
) -> list[str]:
    names = [t.name for t in fleet.targets()]
    lines = [
        "hybrid cloud-path overhead: direct vs hybrid vs litellm, one loopback upstream",
        header,
        versions_line(fleet.litellm_version),
        f"method: raw HTTP/1.1 keep-alive client (httptools on uvloop), one connection per "
        f"worker; {plan.requests} measured requests per point and target, in {plan.rounds} "
        f"round(s), the target order rotating each round, each after max({plan.warmup}, "
        f"2 x concurrency) warm-up requests",
        "json = request sent -> whole answer read; stream = request sent -> first SSE event "
        "with content (TTFT); added = target - direct at the same percentile; cpu ms/req = "
        "CPU time of the serving process per answer; conn/req = connections the upstream "
        "accepted per answer (direct: the client's own, one per worker and batch; a proxy "
        "that reuses its pool shows 0.00)",
        *quiet_lines(quiet),
        "",
        *table(points, names, results),
        "",
        *verdicts(points, results, fleet.peer_missing),
    ]
    if fleet.peer_missing is not None:
        lines += ["", f"litellm (the peer) is missing: {fleet.peer_missing}"]
    errors = [
        f"  {point.label} {name}: {err}"
        for point in points
        for name in names
        for err in summarize(results.of(point, name)).first_errors
    ]
    if errors:
        lines += ["", "errors (the first of each kind):", *errors]
    if args.breakdown_requests > 0:
        lines += ["", *breakdown(split, Point("json", 1))]
    checked = results.upstream_checked + split.upstream_checked
    mismatches = results.upstream_mismatches + split.upstream_mismatches
    lines += [
        "",
        f"upstream check: {checked} batches compared with the upstream's request counter, "
        + ("all matched" if not mismatches else f"{len(mismatches)} did not:"),
        *(f"  {m}" for m in mismatches),
    ]
    return lines
