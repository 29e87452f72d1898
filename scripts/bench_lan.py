"""Benchmark: hybrid's LAN tier spreading requests over two team servers, by load and in turn.

Two llama-cpp-python servers (``python -m llama_cpp.server``) on loopback serve the embedded
model under the name ``qwen2.5-32b-instruct`` (a name hybrid judges able to answer the prompts),
one thread each, answering one request at a time.  Server ``a`` is kept busy from outside: a
background client sends it its own completions the whole time (hybrid neither sees nor counts
them), so hybrid's requests wait there behind them.  ``hybrid serve`` sits in front with a fake
cloud as OpenAI and ``routing.difficulty.threshold = 0``, so that every request is one this
machine passes on and the LAN tier places.  llama-cpp-python's server reports no load: hybrid
ranks it by its own requests in flight there, and a slower server keeps more of them.

Each run sends ``--requests`` chat completions through the openai SDK, ``--concurrency`` of
them in flight at once (a client sends its next request when its last one is answered), and
reports the requests each server answered (from ``X-Hybrid-Model``), those the cloud answered,
failures, failovers (``;failover:lan:...`` in ``X-Hybrid-Reason``), and p50/p95 latency
(request sent to answer received, nearest rank):

1. ``lan.strategy = "least_loaded"``;
2. ``lan.strategy = "round_robin"`` (each server in turn, whatever its load);
3. ``least_loaded`` again, with server ``b`` terminated (SIGTERM) once a third of the requests
   are answered: requests in flight there finish, the next one fails over to ``a`` and ``b``
   is skipped from then on, so failures must be 0.

Runs 1 and 2 alternate over ``--rounds`` (which goes first changes each round) against two
``hybrid serve`` processes started side by side, one per strategy; their rounds are merged.
The ratio printed last is p95 round_robin / p95 least_loaded, both from this run.

Everything runs on loopback; every request has a max_tokens and a timeout.  About 2 minutes
on two cores with the defaults; ``--quick`` (one round of 16 requests, 8 tokens) under one.

Usage:
    python scripts/bench_lan.py [--requests 32] [--concurrency 4] [--rounds 2]
        [--max-tokens 16] [--background 2] [--slots 4] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import openai
from openai.types.chat import ChatCompletionMessageParam

# The fake cloud and the subprocess server helper are shared with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from bench_local import machine_line
from fake_cloud import FakeCloud
from server_process import (
    RunningServer,
    ServerNotReady,
    free_port,
    hybrid_env,
    hybrid_serve,
    start_server,
)

ALIAS = "qwen2.5-32b-instruct"
SERVERS = ("a", "b")
LOADED = "a"
"""The server a background client keeps busy; first in the configuration, so that a tie in
load goes its way and only load-awareness keeps requests off it."""
KILLED = "b"
TIMEOUT_S = 120.0
QUESTIONS = (
    "What is the capital of France?",
    "Name three colours of the rainbow.",
    "What is two plus two?",
    "Which planet is closest to the sun?",
)


@dataclass(frozen=True)
class Outcome:
    """One request through hybrid.

    Attributes:
        where: The server that answered (``a``, ``b``), ``cloud``, or ``failed``.
        latency_s: Request sent to answer received.
        error: What went wrong, for a failure.
        failover: Another LAN server failed it first (``;failover:lan:...`` in its reason).
    """

    where: str
    latency_s: float
    error: str | None = None
    failover: bool = False


@dataclass(frozen=True)
class RunResult:
    """Every request of one run (rounds merged) and the wall time they took."""

    name: str
    outcomes: tuple[Outcome, ...]
    wall_s: float

    def count(self, where: str) -> int:
        return sum(1 for o in self.outcomes if o.where == where)

    @property
    def failovers(self) -> int:
        return sum(1 for o in self.outcomes if o.failover)

    def latency_ms(self, quantile: float) -> float:
        """The nearest-rank `quantile` of the answered requests' latency, in ms."""
        ordered = sorted(o.latency_s for o in self.outcomes if o.where != "failed")
        if not ordered:
            return math.nan
        return ordered[max(1, math.ceil(quantile * len(ordered))) - 1] * 1000

    def merged(self, other: RunResult) -> RunResult:
        return RunResult(self.name, self.outcomes + other.outcomes, self.wall_s + other.wall_s)


def llama_server(model: Path, log: Path) -> RunningServer:
    """llama-cpp-python's server on `model` named ``ALIAS``: one thread, one request at a time
    (a newcomer waits rather than interrupting the running one).

    Raises:
        SystemExit: It exited or was not ready in 180 s.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "1024",
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--interrupt_requests",
        "false",
        "--verbose",
        "false",
    ]
    try:
        return start_server(
            command, port=port, log=log, ready_path="/v1/models", timeout_s=180, what="llama"
        )
    except ServerNotReady as exc:
        raise SystemExit(str(exc)) from exc


def config_text(strategy: str, lan: dict[str, RunningServer], ledger: Path, slots: int) -> str:
    """hybrid's config: every prompt off this machine, both servers, `strategy`."""
    servers = "".join(
        f'[[lan.servers]]\nname = "{name}"\nbase_url = "{server.base_url}/v1"\n'
        f'models = ["{ALIAS}"]\nmax_concurrency = {slots}\n\n'
        for name, server in lan.items()
    )
    return (
        f'[ledger]\npath = "{ledger}"\n\n'
        "[routing.difficulty]\nthreshold = 0.0\n\n"
        "[routing.calibration]\nbackground = false\n\n"
        "[cloud]\nfirst_byte_timeout_s = 120\nbackoff_base_s = 0.05\nbackoff_max_s = 0.1\n\n"
        f'[lan]\nstrategy = "{strategy}"\nconnect_timeout_s = 1\n\n{servers}'
    )


def start_hybrid(home: Path, config: Path, env: dict[str, str]) -> RunningServer:
    """``hybrid serve`` with `config`, its model loaded.

    Raises:
        SystemExit: It exited or was not ready in time.
    """
    port = free_port()
    try:
        return start_server(
            hybrid_serve(port, "--ctx", "512"),
            port=port,
            log=config.with_suffix(".log"),
            env=hybrid_env(home, {"HYBRID_CONFIG": str(config), **env}),
            what="hybrid serve",
        )
    except ServerNotReady as exc:
        raise SystemExit(str(exc)) from exc


async def ask(api: openai.AsyncOpenAI, question: str, max_tokens: int) -> Outcome:
    """One greedy chat completion through hybrid; where it was answered, from its headers."""
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": question}]
    sent = time.perf_counter()
    try:
        raw = await api.chat.completions.with_raw_response.create(
            model="hybrid", messages=messages, max_tokens=max_tokens, temperature=0.0
        )
        raw.parse()
    except openai.APIError as exc:
        return Outcome("failed", time.perf_counter() - sent, f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - sent
    route = raw.headers.get("x-hybrid-route", "")
    model = raw.headers.get("x-hybrid-model", "")
    where = model.split("/", 1)[0] if route == "lan" else route
    return Outcome(where, latency, failover=";failover:" in raw.headers.get("x-hybrid-reason", ""))


async def run(
    name: str,
    hybrid: RunningServer,
    args: argparse.Namespace,
    kill: RunningServer | None = None,
) -> RunResult:
    """`args.requests` requests, `args.concurrency` in flight; `kill` is terminated once a
    third of them are answered."""
    outcomes: list[Outcome] = []
    queue = list(range(args.requests))
    kill_at = args.requests // 3
    killing: asyncio.Task[int] | None = None

    async def client(api: openai.AsyncOpenAI) -> None:
        nonlocal killing
        while queue:
            n = queue.pop()
            outcomes.append(await ask(api, QUESTIONS[n % len(QUESTIONS)], args.max_tokens))
            if kill is not None and killing is None and len(outcomes) >= kill_at:
                print(f"  terminating server {KILLED} ...", file=sys.stderr)
                killing = asyncio.create_task(asyncio.to_thread(kill.stop, 60))

    api = openai.AsyncOpenAI(
        base_url=f"{hybrid.base_url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT_S
    )
    async with api:
        started = time.perf_counter()
        await asyncio.gather(*(client(api) for _ in range(args.concurrency)))
        wall = time.perf_counter() - started
    if killing is not None:
        await killing
    return RunResult(name, tuple(outcomes), wall)


async def background(server: RunningServer, clients: int, stop: asyncio.Event) -> int:
    """Keep `server` busy with `clients` direct completions at a time until `stop`; returns
    how many were answered."""
    done = 0

    async def loop(api: openai.AsyncOpenAI) -> None:
        nonlocal done
        while not stop.is_set():
            try:
                await api.completions.create(
                    model=ALIAS, prompt="Once upon a time,", max_tokens=24, temperature=0.0
                )
            except openai.APIError as exc:  # the load is not the subject: keep it going
                print(f"  background request failed: {exc}", file=sys.stderr)
                await asyncio.sleep(0.5)
                continue
            done += 1

    async with openai.AsyncOpenAI(
        base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT_S
    ) as api:
        await asyncio.gather(*(loop(api) for _ in range(clients)))
    return done


async def measure(
    hybrids: dict[str, RunningServer], lan: dict[str, RunningServer], args: argparse.Namespace
) -> tuple[list[RunResult], int]:
    """Runs 1 and 2 over the rounds, then run 3, with ``LOADED`` kept busy throughout."""
    stop = asyncio.Event()
    loader = asyncio.create_task(background(lan[LOADED], args.background, stop))
    merged: dict[str, RunResult] = {}
    try:
        await run(
            "warm-up", hybrids["least_loaded"], argparse.Namespace(**{**vars(args), "requests": 4})
        )
        for round_ in range(args.rounds):
            order = ["least_loaded", "round_robin"]
            for strategy in order if round_ % 2 == 0 else order[::-1]:
                result = await run(strategy, hybrids[strategy], args)
                kept = merged.get(strategy)
                merged[strategy] = kept.merged(result) if kept else result
                print(
                    f"  round {round_ + 1} {strategy:12} p95 {result.latency_ms(0.95):6.0f} ms, "
                    f"{LOADED}: {result.count(LOADED)} of {len(result.outcomes)}",
                    file=sys.stderr,
                )
        failover = await run(
            f"least_loaded, {KILLED} killed", hybrids["least_loaded"], args, kill=lan[KILLED]
        )
    finally:
        stop.set()
        background_done = await loader
    return [merged["least_loaded"], merged["round_robin"], failover], background_done


def report(args: argparse.Namespace, results: list[RunResult], background_done: int) -> None:
    """The table, failures explained, and the ratio."""
    print(
        f"\n## {args.requests} requests per run and round, {args.concurrency} in flight, "
        f"max_tokens {args.max_tokens}, {args.rounds} round(s) for runs 1-2; server "
        f"{LOADED} kept busy by {args.background} background client(s) "
        f"({background_done} direct completions)\n"
    )
    print(
        f"| run | requests | {LOADED} (loaded) | {SERVERS[1]} | cloud | failures | p50 ms | "
        "p95 ms | req/s | failovers |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, result in enumerate(results, start=1):
        print(
            f"| {n}. {result.name} | {len(result.outcomes)} | {result.count(LOADED)} | "
            f"{result.count(SERVERS[1])} | {result.count('cloud')} | {result.count('failed')} | "
            f"{result.latency_ms(0.5):.0f} | {result.latency_ms(0.95):.0f} | "
            f"{len(result.outcomes) / result.wall_s:.2f} | {result.failovers} |"
        )
    for result in results:
        errors = Counter(o.error for o in result.outcomes if o.error is not None)
        for error, times in errors.most_common(3):
            print(f"{result.name}: {times} failed: {error}")
    least, robin = results[0], results[1]
    print(
        f"\np95 round_robin / least_loaded: "
        f"{robin.latency_ms(0.95) / least.latency_ms(0.95):.2f}x   "
        f"(p50: {robin.latency_ms(0.5) / least.latency_ms(0.5):.2f}x)"
    )


def parse_args() -> argparse.Namespace:
    """The command line, with ``--quick``'s shorter run applied."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=32, help="requests per run and round")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of runs 1 and 2")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument(
        "--background", type=int, default=2, help=f"clients keeping server {LOADED} busy"
    )
    parser.add_argument(
        "--slots", type=int, default=4, help="max_concurrency of each server in hybrid's config"
    )
    parser.add_argument("--quick", action="store_true", help="one round of 16 requests of 8 tokens")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
        args.requests = min(args.requests, 16)
        args.max_tokens = min(args.max_tokens, 8)
    for name in ("requests", "concurrency", "rounds", "max_tokens", "background", "slots"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.requests < 3:
        parser.error("--requests must be at least 3 (run 3 kills a server after a third)")
    return args


def main() -> int:
    args = parse_args()
    from hybrid.models.embedded import ensure_embedded_model

    home = Path(tempfile.mkdtemp(prefix="hybrid-bench-lan-"))
    started: list[RunningServer] = []
    try:
        print(machine_line())
        print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        model = ensure_embedded_model(home, progress=lambda m: print(m, file=sys.stderr))
        print(f"model: {model.name}, served as {ALIAS}")
        print("starting two llama_cpp.server and two hybrid serve ...", file=sys.stderr)
        lan = {name: llama_server(model, home / f"llama-{name}.log") for name in SERVERS}
        started.extend(lan.values())
        with FakeCloud(reply="The fake cloud answers.") as cloud:
            hybrids: dict[str, RunningServer] = {}
            for strategy in ("least_loaded", "round_robin"):
                config = home / f"{strategy}.toml"
                config.write_text(
                    config_text(strategy, lan, home / f"{strategy}.sqlite3", args.slots)
                )
                hybrids[strategy] = start_hybrid(home, config, cloud.provider_env())
                started.append(hybrids[strategy])
            results, background_done = asyncio.run(measure(hybrids, lan, args))
    finally:
        for server in started:
            server.stop(grace_s=30)
        shutil.rmtree(home, ignore_errors=True)
    report(args, results, background_done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
