"""Benchmark: how fast ``/health`` answers while other requests load a real ``hybrid serve``.

``/health`` is what a supervisor, a load balancer or ``hybrid monitor`` asks to learn whether
hybrid is alive; it must answer within 50 ms whatever the other requests are doing.  The
benchmark starts ``hybrid serve`` on the embedded model and asks ``/health`` over and over on a
thread of its own while, in turn:

- nothing else runs (the baseline, measured in the same run);
- multi-megabyte prompts arrive, routed ``local`` (refused by their size) and ``hybrid``
  (escalated by their length to a cloud that is configured but unreachable, then refused
  locally): their bodies are parsed and privacy-scanned, and were once tokenized on the event
  loop;
- several clients stream short answers from the local model at once.

It prints each phase's median, 99th percentile and slowest ``/health`` answer, the slowest as a
ratio to the baseline's median, and whether it is within the target.  The request bodies are
encoded once, before the phases, so that the benchmark's own client does not hold its
interpreter while the health thread measures.

Usage:
    python scripts/bench_health.py [--rounds 3] [--clients 4] [--megabytes 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from bench_local import start_hybrid
from server_process import free_port

TARGET_MS = 50.0


class HealthWatch:
    """Asks ``/health`` on a thread of its own until stopped, and keeps every latency."""

    def __init__(self, base_url: str) -> None:
        self._url = f"{base_url}/health"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.latencies_ms: list[float] = []
        self.failures = 0

    def _watch(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                asked = time.perf_counter()
                try:
                    ok = client.get(self._url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies_ms.append((time.perf_counter() - asked) * 1000)
                self.failures += not ok
                self._stop.wait(0.01)

    def during(self, work: Callable[[], None]) -> HealthWatch:
        """Watch while ``work`` runs; returns itself with the latencies."""
        self._thread.start()
        try:
            work()
        finally:
            self._stop.set()
            self._thread.join(60)
        return self


def huge_body(model: str, megabytes: float) -> bytes:
    line = "All work and no play makes Jack a dull boy. "
    content = line * int(megabytes * 1_000_000 / len(line))
    return json.dumps({"model": model, "messages": [{"role": "user", "content": content}]}).encode()


def post_all(base: str, bodies: list[bytes]) -> None:
    with httpx.Client(timeout=300) as client:
        for body in bodies:
            client.post(
                f"{base}/v1/chat/completions",
                content=body,
                headers={"Content-Type": "application/json"},
            )


def stream_answers(base: str, clients: int, rounds: int) -> None:
    body = {
        "model": "local",
        "stream": True,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "Write a sentence about the sea."}],
    }

    def one_client(_: int) -> None:
        with httpx.Client(timeout=300) as client:
            for _ in range(rounds):
                with client.stream("POST", f"{base}/v1/chat/completions", json=body) as answer:
                    for _ in answer.iter_bytes():
                        pass

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one_client, range(clients)))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="requests per phase and client")
    parser.add_argument("--clients", type=int, default=4, help="concurrent streaming clients")
    parser.add_argument("--megabytes", type=float, default=4.0, help="size of the long prompts")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from hybrid.models.embedded import ensure_embedded_model

    home = Path(tempfile.mkdtemp(prefix="hybrid-bench-"))
    model = ensure_embedded_model(home, progress=lambda m: print(m, file=sys.stderr))
    environ = {
        "OPENAI_API_KEY": "sk-unreachable",
        # A port nothing listens on: the cloud is configured but unreachable.
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "HYBRID_ROUTING__CAPACITY__MAX_OTHER_CPU_PERCENT": "100",
    }
    server = start_hybrid(model, args.ctx, args.threads, home, environ)
    base = server.base_url
    # Under 4 MiB, the default body limit.
    megabytes = min(args.megabytes, 4.0)
    local = [huge_body("local", megabytes)] * args.rounds
    routed = [huge_body("hybrid", megabytes)] * args.rounds
    phases: dict[str, Callable[[], None]] = {
        "idle (baseline)": lambda: time.sleep(2),
        f"{megabytes:g} MB prompts, local": lambda: post_all(base, local),
        f"{megabytes:g} MB prompts, hybrid": lambda: post_all(base, routed),
        f"{args.clients} clients streaming": lambda: stream_answers(
            base, args.clients, args.rounds
        ),
    }
    try:
        watches = {name: HealthWatch(base).during(work) for name, work in phases.items()}
    finally:
        server.stop(grace_s=60)

    baseline = statistics.median(watches["idle (baseline)"].latencies_ms)
    print(f"/health latency, target: every answer within {TARGET_MS:g} ms\n")
    print(f"{'phase':30}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'max/idle':>10}  verdict")
    worst = 0.0
    for name, watch in watches.items():
        latencies = sorted(watch.latencies_ms)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        slowest = latencies[-1]
        worst = max(worst, slowest)
        verdict = "ok" if slowest <= TARGET_MS and not watch.failures else "OVER"
        if watch.failures:
            verdict += f" ({watch.failures} failed)"
        print(
            f"{name:30}{len(latencies):>6}{statistics.median(latencies):>9.1f}{p99:>9.1f}"
            f"{slowest:>9.1f}{slowest / baseline:>9.1f}x  {verdict}"
        )
    print(f"\nslowest /health answer: {worst:.1f} ms ({worst / TARGET_MS:.2f} of the target)")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
