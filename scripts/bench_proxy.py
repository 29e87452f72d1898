"""Benchmark: the cloud path's overhead, hybrid against LiteLLM's proxy, on one loopback upstream.

One run starts the fake cloud of the tests as the upstream, in its own process
(``tests/helpers/fake_cloud_process.py``), replaying each answer's bytes so that it answers at
once, ``hybrid serve`` with that upstream declared as a provider, and LiteLLM's proxy
(``litellm[proxy]`` from PyPI, in a virtualenv of its own, see ``scripts/bench_litellm.py``) in
front of the same upstream.  It measures three targets with the same requests:

    direct    the upstream itself: the baseline (client + loopback + upstream)
    hybrid    hybrid serve, ``X-Hybrid-Route: cloud``, model ``bench/bench-model``
    litellm   LiteLLM's proxy, model ``bench-model``

at concurrency 1 and 64, non-streaming (request sent -> whole answer read) and streaming
(request sent -> first SSE event that carries content: time to first token).  For each point
and target it prints p50 and p99, the *added* latency (target minus direct at the same
percentile), requests/s and the serving process's CPU time per request, then a verdict for the
two targets of the issue:

    1. hybrid's added p50 is under 1 ms at concurrency 1;
    2. hybrid adds less latency than LiteLLM at every point measured (p50 and p99).

Honesty rules: the targets are measured in the same run, with the same client (see
``scripts/bench_client.py``), settings and request count; each point runs in rounds and the
order of the targets rotates every round, so none gets a cooler machine.  Every answer is
checked (the whole reply, ``[DONE]``, ``x-hybrid-route: cloud`` for hybrid), and the upstream's
request counter must match the answers counted, so nothing is served from a cache or silently
retried.  The report says how much CPU other processes took during the run: on a shared
machine, latency figures are only as good as that line.  A last section splits hybrid's added
time at c=1 into its inbound side (a request hybrid refuses with 404 before any upstream call)
and the outbound hop.

If LiteLLM cannot be installed or started, hybrid's figures are still printed and the report
says why the peer is missing.

Usage:
    python scripts/bench_proxy.py [--requests 1000] [--rounds 4] [--concurrency 1 64]
        [--no-litellm] [--litellm-venv DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import psutil  # type: ignore[import-untyped,unused-ignore]
from bench_client import REPLY, Batch, Target, open_connection, percentile, run_batch
from bench_litellm import LiteLLMProxy, PeerUnavailable, default_venv, ensure_litellm, start_litellm

REPO = Path(__file__).resolve().parents[1]
# The fake cloud and the subprocess server helper are shared with the tests.
sys.path.insert(0, str(REPO / "tests" / "helpers"))
from server_process import (  # noqa: E402
    RunningServer,
    ServerNotReady,
    free_port,
    hybrid_serve,
    start_server,
)

UPSTREAM_SCRIPT = REPO / "tests" / "helpers" / "fake_cloud_process.py"
UPSTREAM_KEY = "sk-bench-upstream"
PROVIDER = "bench"
MODEL = "bench-model"
MISSING_MODEL = "bench-no-such-model"
START_TIMEOUT_S = 180
MODES = ("json", "stream")
# Other processes may take this share of the machine before the report calls the run noisy.
QUIET_SHARE = 0.10


# -- the servers --------------------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """This environment without the settings that would change what hybrid does."""
    dropped = ("HYBRID_", "OPENAI_", "ANTHROPIC_")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)}


def start_upstream(port: int, work: Path) -> RunningServer:
    """The fake cloud in a process of its own, replaying its answers, ready to answer."""
    command = [
        sys.executable,
        str(UPSTREAM_SCRIPT),
        "--port",
        str(port),
        "--replay",
        "--reply",
        REPLY,
        "--openai-key",
        UPSTREAM_KEY,
    ]
    return start_server(
        command,
        port=port,
        log=work / "upstream.log",
        ready_path="/fake/stats",
        env=clean_env(),
        cwd=work,
        timeout_s=30,
        what="upstream",
    )


def start_hybrid(upstream_port: int, port: int, work: Path) -> RunningServer:
    """``hybrid serve`` with the upstream declared as provider ``bench``, ready to answer."""
    config = work / "hybrid.toml"
    config.write_text(
        "[[cloud.providers]]\n"
        f'name = "{PROVIDER}"\n'
        f'base_url = "http://127.0.0.1:{upstream_port}/v1"\n'
        f'api_key = "{UPSTREAM_KEY}"\n'
        f'models = ["{MODEL}"]\n'
    )
    env = clean_env() | {
        "HYBRID_HOME": str(work / "hybrid-home"),
        "HYBRID_LOG_LEVEL": "warning",
        "HYBRID_CONFIG": str(config),
    }
    return start_server(
        hybrid_serve(port),
        port=port,
        log=work / "hybrid.log",
        env=env,
        cwd=work,
        timeout_s=START_TIMEOUT_S,
        what="hybrid serve",
    )


def upstream_stats(port: int) -> tuple[int, int]:
    """The upstream's (requests answered, connections accepted) so far."""
    stats = httpx2.get(f"http://127.0.0.1:{port}/fake/stats", timeout=5).json()
    return int(stats["requests"]), int(stats["connections"])


def tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"(no log at {log})"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class Fleet:
    """The processes of one run, and the targets they serve."""

    work: Path
    upstream: RunningServer
    upstream_port: int
    hybrid: RunningServer
    hybrid_port: int
    peer: LiteLLMProxy | None = None
    peer_missing: str | None = None
    litellm_version: str | None = None

    def targets(self) -> list[Target]:
        """direct, hybrid and (when it runs) litellm, each with its serving process."""
        targets = [
            Target(
                "direct", self.upstream_port, MODEL, UPSTREAM_KEY, pid=self.upstream.process.pid
            ),
            Target(
                "hybrid",
                self.hybrid_port,
                f"{PROVIDER}/{MODEL}",
                "unused",
                expect_route="cloud",
                pid=self.hybrid.process.pid,
            ),
        ]
        if self.peer is not None:
            port = int(self.peer.base_url.rsplit(":", 1)[1])
            targets.append(
                Target("litellm", port, MODEL, self.peer.master_key, pid=self.peer.process.pid)
            )
        return targets

    def refusal_probe(self) -> Target:
        """A request hybrid refuses with 404 before any upstream call: its inbound side."""
        return Target(
            "hybrid-404",
            self.hybrid_port,
            MISSING_MODEL,
            "unused",
            expect_status=404,
            reaches_upstream=False,
            pid=self.hybrid.process.pid,
        )

    def pids(self) -> list[int]:
        pids = [os.getpid(), self.upstream.process.pid, self.hybrid.process.pid]
        return pids + ([self.peer.process.pid] if self.peer is not None else [])


def start_fleet(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> Fleet:
    """Start the upstream, hybrid and LiteLLM; a LiteLLM failure is recorded, not raised.

    Raises:
        SystemExit: The upstream or hybrid did not start (the message holds its log's tail).
    """
    upstream_port, hybrid_port = free_port(), free_port()
    try:
        upstream = start_upstream(upstream_port, work)
    except ServerNotReady as exc:
        raise SystemExit(str(exc)) from exc
    stack.callback(upstream.stop, 15)
    # hybrid loads its local model while LiteLLM starts: neither waits for the other.
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(start_hybrid, upstream_port, hybrid_port, work)
        peer: LiteLLMProxy | None = None
        peer_missing: str | None = None
        version: str | None = None
        if args.no_litellm:
            peer_missing = "skipped (--no-litellm)"
        else:
            try:
                install = ensure_litellm(args.litellm_venv, args.litellm_spec)
                print(f"starting litellm {install.version} from {install.venv}", file=sys.stderr)
                peer = start_litellm(
                    install,
                    port=free_port(),
                    model=MODEL,
                    upstream_base_url=f"http://127.0.0.1:{upstream_port}/v1",
                    upstream_key=UPSTREAM_KEY,
                    workdir=work,
                )
                stack.callback(peer.stop)
                version = install.version
            except PeerUnavailable as exc:
                peer_missing = str(exc)
        try:
            hybrid = starting.result()
        except ServerNotReady as exc:
            raise SystemExit(str(exc)) from exc
    stack.callback(hybrid.stop, 15)
    return Fleet(work, upstream, upstream_port, hybrid, hybrid_port, peer, peer_missing, version)


# -- CPU accounting -----------------------------------------------------------------------------


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of a process and its children; NaN when unknown."""
    if pid is None:
        return math.nan
    try:
        process = psutil.Process(pid)
        total = 0.0
        for each in [process, *process.children(recursive=True)]:
            times = each.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return math.nan


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores); NaN off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return math.nan
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Quietness:
    """How much CPU processes other than this run's took while it measured."""

    others_s: float
    capacity_s: float

    @property
    def share(self) -> float:
        return self.others_s / self.capacity_s if self.capacity_s > 0 else math.nan


def measure_quietness(pids: Sequence[int], run: Callable[[], None]) -> Quietness:
    """Run ``run`` and account for the CPU that the machine spent outside ``pids``."""
    started = time.monotonic()
    busy, own = machine_busy_s(), sum(process_cpu_s(p) for p in pids)
    run()
    busy_after, own_after = machine_busy_s(), sum(process_cpu_s(p) for p in pids)
    capacity = (time.monotonic() - started) * (os.cpu_count() or 1)
    return Quietness(max(0.0, (busy_after - busy) - (own_after - own)), capacity)


# -- the plan and its results -------------------------------------------------------------------


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


# -- the report ---------------------------------------------------------------------------------


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


# -- main ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=1000, help="measured requests per point and target"
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds per point (order rotates)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=50,
        help="unmeasured requests before each batch (at least 2 x concurrency)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument(
        "--breakdown-requests",
        type=int,
        default=600,
        help="measured requests per target for the c=1 breakdown (0: skip it)",
    )
    parser.add_argument(
        "--batch-time-limit",
        type=float,
        default=60.0,
        help="seconds after which a batch starts no more requests",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    parser.add_argument("--no-litellm", action="store_true", help="measure direct and hybrid only")
    parser.add_argument(
        "--litellm-venv",
        type=Path,
        default=default_venv(),
        help="LiteLLM's own virtualenv, created on first use and reused (default: in the user "
        "cache folder, outside the repository, so it can never be committed)",
    )
    parser.add_argument("--litellm-spec", default="litellm[proxy]", help="what to pip install")
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1 or min(args.concurrency) < 1:
        parser.error("--requests, --rounds and --concurrency must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    header = machine_line()
    plan = Plan(
        requests=args.requests,
        rounds=args.rounds,
        warmup=args.warmup,
        batch_time_limit_s=args.batch_time_limit,
        timeout_s=args.timeout,
    )
    points = [Point(mode, c) for c in args.concurrency for mode in MODES]
    results, split = Results(), Results()
    with (
        tempfile.TemporaryDirectory(prefix="hybrid-bench-proxy-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        fleet = start_fleet(args, work, stack)
        probe = fleet.refusal_probe()
        failures: dict[str, str] = run_async(smoke([*fleet.targets(), probe]))
        for name in ("direct", "hybrid", "hybrid-404"):
            if name in failures:
                log = work / ("hybrid.log" if name.startswith("hybrid") else "upstream.log")
                raise SystemExit(f"{name} does not answer correctly: {failures[name]}\n{tail(log)}")
        if "litellm" in failures and fleet.peer is not None:
            fleet.peer_missing = (
                f"its answers are wrong: {failures['litellm']}\n{tail(fleet.peer.log)}"
            )
            fleet.peer.stop()
            fleet.peer, fleet.litellm_version = None, None
        targets = fleet.targets()

        def run() -> None:
            run_async(
                measure(points, targets, plan, fleet.upstream_port, results, requests=plan.requests)
            )
            if args.breakdown_requests > 0:
                alone = Target(
                    "httpx-alone",
                    fleet.upstream_port,
                    MODEL,
                    UPSTREAM_KEY,
                    pid=os.getpid(),
                    via_httpx=True,
                )
                split_targets = [targets[0], alone, probe, targets[1]]
                run_async(
                    measure(
                        [Point("json", 1)],
                        split_targets,
                        plan,
                        fleet.upstream_port,
                        split,
                        requests=args.breakdown_requests,
                    )
                )

        quiet = measure_quietness(fleet.pids(), run)
        if fleet.hybrid.process.poll() is not None:
            raise SystemExit(f"hybrid serve died during the run:\n{tail(work / 'hybrid.log')}")
    lines = report(args, header, fleet, points, results, split, quiet, plan)
    lines.append(f"run time: {time.monotonic() - started:.0f} s")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
