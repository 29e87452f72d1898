"""``hybrid stats``: what the ledger recorded: requests, local share, spend, savings, latency.

Requests answered by a team's LAN server (route ``lan``) are counted apart from local and cloud
ones: the summary names them (with the share kept off the cloud) once there are any, and the
``--by`` table always has a ``lan`` column.  Their cost avoided counts with the local answers';
they are never cloud spend.

``prefill saved`` (the ``reused`` column of ``--by``) counts the prompt tokens local answers
reused from the local model's KV cache (a conversation's earlier turns, a shared system prompt)
instead of evaluating them again.

Reads the ledger directly (no server needs to run): the SQLite file, or with ``ledger.url`` the
shared PostgreSQL database (shown with its password masked).  ``--since`` picks the window,
``--by`` adds one row per route, model, reason, UTC day, decider (``router``: hybrid's
policies chose the route; ``client``: the model name or ``X-Hybrid-Route`` pinned it;
``mode``: the server-wide mode did) or instance (the daemon that answered, in a fleet sharing
the ledger), ``--json`` prints
``{"ledger", "recorded", "window", "since", "totals", "latency", "by", "groups", "labels"}``.
``labels`` (all time, not windowed) counts the labels each local model's requests have for
``hybrid calibrate --from-ledger``, by source (``feedback``, ``shadow``).

Everything is read from the ledger's hourly rollups (plus the records of the window's first,
partial hour), so it takes as long over ten million records as over ten.  Latency and TTFT
percentiles come from fixed buckets: ``p95 <= 2.50 s`` is the upper bound of the bucket the
95th-percentile request fell in, at most 28 % above the exact value
(:mod:`hybrid.ledger.histogram`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from hybrid.ledger.learning import LabelCount
    from hybrid.ledger.store import LedgerStore
    from hybrid.ledger.totals import Latency, Totals
    from hybrid.settings import Settings

HELP = "show requests, local share, cloud spend, cost avoided and latency from the ledger"

WINDOWS: dict[str, float | None] = {
    "1h": 3_600.0,
    "24h": 86_400.0,
    "7d": 7 * 86_400.0,
    "30d": 30 * 86_400.0,
    "all": None,
}
"""``--since`` choices and their length in seconds (None: everything recorded)."""

Group = tuple[str, "Totals", "Latency"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--since``, ``--by`` and ``--json``."""
    parser.add_argument(
        "--since", choices=tuple(WINDOWS), default="24h", help="the window (default: 24h)"
    )
    parser.add_argument(
        "--by",
        choices=("route", "model", "reason", "day", "decided", "instance"),
        help=(
            "also show one row per route, model, deciding reason, UTC day, who decided the "
            "route (router: hybrid's policies; client: the model name or X-Hybrid-Route; "
            "mode: the server-wide mode), or instance (the daemon, in a shared ledger)"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the ledger's figures for a window.

    Args:
        args: ``since``, ``by`` and ``json``.
        settings: ``ledger.url``, else ``ledger.path`` (or ``home``), says where the ledger
            is.

    Returns:
        0, also when nothing was recorded yet (a line says so and where it looked).

    Raises:
        ConfigError: ``ledger.path`` names a folder.
        HybridError: The ledger exists but cannot be read; a shared ledger's database is
            unavailable or refuses the login (the message masks the password).
    """
    from hybrid.ledger.journal import journal_path
    from hybrid.ledger.schema import refuse_folder
    from hybrid.ledger.store import describe_source
    from hybrid.ledger.totals import Latency, Totals

    path = settings.ledger.resolved_path(settings.home)
    source = settings.ledger.source(settings.home)
    url = source if isinstance(source, str) else None
    if url is None:
        refuse_folder(path)
    shown = describe_source(source)
    length = WINDOWS[args.since]
    since = None if length is None else time.time() - length
    recorded = url is not None or path.is_file()
    labels: list[LabelCount] = []
    if recorded:
        totals, latency, groups = _query(source, args.by, since, journal=journal_path(path))
        labels = _labels(source)
    else:
        totals, latency, groups = Totals(), Latency(), []
    if args.json:
        document = _document(shown, recorded, args, since, totals, latency, groups)
        document["labels"] = [count.to_dict() for count in labels]
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        if not recorded:
            print(_nothing_recorded(path), file=sys.stderr)
    elif not recorded:
        print(_nothing_recorded(path))
    else:
        _print_text(shown, args, since, totals, latency, groups, sys.stdout, labels)
    return 0


def _open(source: Path | str) -> LedgerStore:
    """Open the ledger file, or connect to the shared ledger's database (a URL)."""
    from hybrid.ledger.store import LedgerStore

    return LedgerStore.open_source(source)


def _labels(source: Path | str) -> list[LabelCount]:
    store = _open(source)
    try:
        return store.label_counts()
    finally:
        store.close()


def _print_labels(labels: list[LabelCount], out: TextIO) -> None:
    """One line per local model: its labels by source, and how many a refit can use."""
    for index, count in enumerate(labels):
        model = f"model {count.model_sha256[:12]}" if count.model_sha256 else "no signal kept"
        usable = (
            f"; {count.usable:,} usable by a refit, {count.with_vector:,} with a prompt vector"
            if count.model_sha256
            else ""
        )
        name = "labels" if index == 0 else ""
        escalated = (
            f" ({count.shadow_escalated:,} of them on escalated requests)"
            if count.shadow_escalated
            else ""
        )
        print(
            f"{name:<13} {model}: {count.feedback:,} feedback, {count.shadow:,} shadow"
            f"{escalated}, {count.cascade:,} cascade{usable}",
            file=out,
        )


def _query(
    source: Path | str, by: Any, since: float | None, *, journal: Path | None = None
) -> tuple[Totals, Latency, list[Group]]:
    from hybrid.ledger import rollup_query
    from hybrid.ledger.journal import journal_path, read_journal

    if journal is None:
        journal = journal_path(source) if isinstance(source, Path) else None
    store = _open(source)
    try:
        # A server killed before committing (or a shared ledger's database that was away)
        # left records only in this machine's journal; they count too (read here, never
        # written: the server commits them).
        pending = [
            record
            for record in store.missing(read_journal(journal) if journal else [])
            if since is None or record.time >= since
        ]
        # One read of the rollups gives the groups and, added up, the totals.
        cells = [*store.cells(by or "", since), *rollup_query.cells_of(pending, by or "")]
    finally:
        store.close()
    everything = [cell for _, cell in cells]
    groups = rollup_query.summary(cells, by) if by is not None else []
    return rollup_query.totals(everything), rollup_query.latency(everything), groups


def _nothing_recorded(path: Path) -> str:
    return (
        f"no requests recorded yet: there is no ledger at {path} "
        f"(hybrid serve records every request it answers there; ledger.path moves it)"
    )


def _document(
    ledger: str,
    recorded: bool,
    args: argparse.Namespace,
    since: float | None,
    totals: Totals,
    latency: Latency,
    groups: list[Group],
) -> dict[str, Any]:
    return {
        "ledger": ledger,
        "recorded": recorded,
        "window": args.since,
        "since": since,
        "totals": totals.to_dict(),
        "latency": latency.to_dict(),
        "by": args.by,
        "groups": [
            {"key": key, "totals": t.to_dict(), "latency": lat.to_dict()} for key, t, lat in groups
        ],
    }


def _print_text(
    ledger: str,
    args: argparse.Namespace,
    since: float | None,
    totals: Totals,
    latency: Latency,
    groups: list[Group],
    out: TextIO,
    labels: list[LabelCount] | None = None,
) -> None:
    window = "everything recorded" if since is None else f"last {args.since} (since {_utc(since)})"
    print(f"ledger: {ledger}", file=out)
    print(f"window: {window}", file=out)
    print(file=out)
    if not totals.requests:
        print("no requests in this window", file=out)
    rows = [
        ("requests", _requests_line(totals)),
        (
            "tokens",
            f"{totals.prompt_tokens:,} prompt, {totals.completion_tokens:,} completion",
        ),
        (
            "prefill saved",
            f"{totals.prefill_saved_tokens:,} prompt tokens reused from the local model's cache",
        ),
        ("cloud spend", _usd(totals.cloud_spend_usd)),
        ("cost avoided", _usd(totals.cost_avoided_usd)),
        ("latency", f"p50 <= {_seconds(latency.p50_s)}, p95 <= {_seconds(latency.p95_s)}"),
        (
            "first token",
            f"p50 <= {_seconds(latency.ttft_p50_s)}, p95 <= {_seconds(latency.ttft_p95_s)}",
        ),
    ]
    for name, value in rows:
        print(f"{name:<13} {value}", file=out)
    _print_labels(labels or [], out)
    if args.by is not None:
        print(file=out)
        _print_groups(args.by, groups, out)


def _requests_line(totals: Totals) -> str:
    """The ``requests`` line: counts by route and the local share; LAN answers and the share
    kept off the cloud are written only when a LAN server answered any."""
    if not totals.lan:
        return (
            f"{totals.requests:,} ({totals.local:,} local, {totals.cloud:,} cloud, "
            f"{totals.refused:,} refused, {totals.errors:,} errors; "
            f"local share {totals.local_share:.0%})"
        )
    return (
        f"{totals.requests:,} ({totals.local:,} local, {totals.lan:,} lan, "
        f"{totals.cloud:,} cloud, {totals.refused:,} refused, {totals.errors:,} errors; "
        f"local share {totals.local_share:.0%}, off cloud {totals.off_cloud_share:.0%})"
    )


def _print_groups(by: str, groups: list[Group], out: TextIO) -> None:
    header = [by, "requests", "local", "lan", "cloud", "refused", "errors", "tokens", "reused"]
    header += ["spend", "avoided"]
    header += ["p50", "p95", "ttft p50", "ttft p95"]
    table = [header]
    for key, t, lat in groups:
        table.append(
            [
                key,
                f"{t.requests:,}",
                f"{t.local:,}",
                f"{t.lan:,}",
                f"{t.cloud:,}",
                f"{t.refused:,}",
                f"{t.errors:,}",
                f"{t.prompt_tokens + t.completion_tokens:,}",
                f"{t.prefill_saved_tokens:,}",
                _usd(t.cloud_spend_usd),
                _usd(t.cost_avoided_usd),
                _seconds(lat.p50_s),
                _seconds(lat.p95_s),
                _seconds(lat.ttft_p50_s),
                _seconds(lat.ttft_p95_s),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("  ".join(cells).rstrip(), file=out)


def _usd(value: float) -> str:
    # Single requests cost fractions of a cent: keep six decimals below a dollar.  The sign goes
    # before the dollar, as the monitor writes it, and an amount that rounds to zero has none
    # (a local shadow answer's energy alone is a few millionths below zero).
    text = f"{abs(value):,.2f}" if abs(value) >= 1 else f"{abs(value):.6f}"
    sign = "-" if value < 0 and text.strip("0.,") else ""
    return f"{sign}${text}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
