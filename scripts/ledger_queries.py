"""What the ledger benchmark times: each query the ledger answers, on the rollup path and on
the raw-record baseline, and :func:`measure`, which times one in a forked child and reports its
peak memory.
"""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

# The benchmark's parts live beside it and are imported by bare name, as every script here
# imports its neighbours.
from ledger_baseline import OldSpend, old_grouped, old_latency, old_newest, old_totals
from ledger_build import Ledger

from hybrid.cli import stats as stats_cli
from hybrid.ledger.budget import SpendSeed, day_start
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.writer import LedgerWriter

Query = Callable[[Ledger], float]
"""Runs one query on a ledger and returns the seconds it took."""


def _grouped(store: LedgerStore, by: Any, since: float | None) -> object:
    return store.grouped(by, since)


def _cli(by: str | None, window: str, old: bool) -> Query:
    """What ``hybrid stats`` runs: open the file, read the window, close it."""

    def query(ledger: Ledger) -> float:
        started = time.perf_counter()
        length = stats_cli.WINDOWS[window]
        since = None if length is None else time.time() - length
        if not old:
            stats_cli._query(ledger.source, by, since)
            stats_cli._labels(ledger.source)
            return time.perf_counter() - started
        store = LedgerStore.open(ledger.path)
        try:
            if by:
                old_grouped(store, by, since)
            old_totals(store, since)
            old_latency(store, since)
        finally:
            store.close()
        return time.perf_counter() - started

    return query


def _snapshot(by: str | None, old: bool) -> Query:
    """What /v1/hybrid/stats (and the monitor's first screen) reads, through a started writer;
    only the reads are timed."""

    def query(ledger: Ledger) -> float:
        writer = LedgerWriter(ledger.path, retention_days=0, url=ledger.url)
        writer.start()
        try:
            return asyncio.run(_read(writer, by, old))
        finally:
            writer.close()

    return query


async def _read(writer: LedgerWriter, by: str | None, old: bool) -> float:
    today = day_start(time.time())
    started = time.perf_counter()
    if old:
        body: list[object] = [
            await writer.read(lambda s: old_totals(s, today)),
            await writer.read(lambda s: old_totals(s, None)),
        ]
        if by:
            for window in (today, None):
                body.append(await writer.read(functools.partial(old_grouped, by=by, since=window)))
        if by == "instance":
            body.append(await writer.read(old_newest))
    else:
        body = [await writer.totals(since=today), await writer.totals()]
        if by:
            for window in (today, None):
                body.append(await writer.read(functools.partial(_grouped, by=by, since=window)))
        if by == "instance":
            body.append(await writer.read(lambda s: s.newest_by_instance()))
    body.append(await writer.read(lambda s: s.label_counts()))
    return time.perf_counter() - started


def _start_up(old: bool) -> Query:
    """Open the ledger (migration check, journal replay), start the writer, seed the budget."""

    def query(ledger: Ledger) -> float:
        started = time.perf_counter()
        writer = LedgerWriter(ledger.path, retention_days=0, url=ledger.url)
        writer.start()
        try:

            async def seed() -> SpendSeed:
                if old:
                    return await writer.read(
                        lambda s: SpendSeed.from_store(OldSpend(s), time.time())
                    )
                return await writer.read(lambda s: SpendSeed.from_store(s, time.time()))

            asyncio.run(seed())
            return time.perf_counter() - started
        finally:
            writer.close()

    return query


QUERIES: list[tuple[str, Callable[[bool], Query]]] = [
    ("stats --since 30d", lambda old: _cli(None, "30d", old)),
    ("stats --by model", lambda old: _cli("model", "24h", old)),
    ("stats --since all --by day", lambda old: _cli("day", "all", old)),
    ("stats --since 7d --by reason", lambda old: _cli("reason", "7d", old)),
    ("stats --by instance", lambda old: _cli("instance", "24h", old)),
    ("/v1/hybrid/stats, monitor", lambda old: _snapshot(None, old)),
    ("/v1/hybrid/stats?by=model", lambda old: _snapshot("model", old)),
    ("/v1/hybrid/stats?by=instance", lambda old: _snapshot("instance", old)),
    ("start-up (open, seed budget)", _start_up),
]


def measure(query: Query, path: Ledger, repeats: int) -> tuple[float, float]:
    """Run a query in a forked child; return its median seconds and its peak RSS growth (MB)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        code = 0
        try:
            start_kb = _rss_kb()
            times = [query(path) for _ in range(repeats)]
            os.write(write, f"{statistics.median(times)} {start_kb}".encode())
        except BaseException as exc:  # report, never return into the parent's code
            os.write(write, f"error {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    _, _, usage = os.wait4(pid, 0)
    answer = os.read(read, 4096).decode()
    os.close(read)
    if answer.startswith("error"):
        raise RuntimeError(answer)
    median_s, base_kb = answer.split()
    return float(median_s), max(0.0, (usage.ru_maxrss - float(base_kb)) / 1024)


def _rss_kb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 1024
