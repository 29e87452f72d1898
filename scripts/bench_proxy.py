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
import contextlib
import os
import tempfile
import time
from pathlib import Path

# The benchmark's parts live beside it and are imported by bare name, as every script here
# imports its neighbours: proxy_servers starts the processes, proxy_measure runs the rounds,
# cpu_accounting watches the machine, proxy_report writes what is printed.
from bench_client import Target
from bench_litellm import default_venv, tail
from cpu_accounting import measure_quietness
from proxy_measure import MODES, Plan, Point, Results, measure, run_async, smoke
from proxy_report import machine_line, report
from proxy_servers import MODEL, UPSTREAM_KEY, start_fleet


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
