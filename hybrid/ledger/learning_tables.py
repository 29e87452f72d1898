"""The ``signals`` and ``labels`` tables, and the SQL that writes and reads them.

What the rows hold is :mod:`hybrid.ledger.learning`'s (a :class:`Signal` is one row of
``signals``, a :class:`Label` one row of ``labels``); this module only stores and queries them,
inside the connection and transaction the caller gives it.
:class:`~hybrid.ledger.store.LedgerStore` runs it, on SQLite and PostgreSQL alike (the
statements are written for both).

- A request has at most one signal and one label per source: a newer signal replaces the older
  one as the newest (a new ``seq``), a newer label updates the row in place.
- :func:`insert` keeps only the ``keep`` most recent signals; :func:`prune` deletes signals and
  labels older than the ledger's retention.
- A label is *usable* by a refit when it is a shadow or cascade label, or feedback on an answer
  the local model gave.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hybrid.ledger.dialect import SQLITE, Database, Dialect
from hybrid.ledger.learning import Label, LabelCount, LabelledSignal, Learned, Signal


def tables(dialect: Dialect) -> tuple[str, ...]:
    """The statements creating the ``signals`` and ``labels`` tables in a database."""
    return (
        f"""
        CREATE TABLE signals (
            {dialect.row_id},
            request_id TEXT NOT NULL UNIQUE,
            time {dialect.float} NOT NULL,
            model_sha256 TEXT NOT NULL,
            feature_version INTEGER NOT NULL,
            features {dialect.blob} NOT NULL,
            vector {dialect.blob},
            route TEXT NOT NULL,
            score {dialect.float},
            prompt_chars INTEGER NOT NULL
        )
        """,
        "CREATE INDEX signals_model ON signals (model_sha256)",
        f"""
        CREATE TABLE labels (
            request_id TEXT NOT NULL,
            source TEXT NOT NULL,
            good INTEGER NOT NULL,
            time {dialect.float} NOT NULL,
            note TEXT,
            agreement {dialect.float},
            PRIMARY KEY (request_id, source)
        )
        """,
    )


MIGRATION: tuple[str, ...] = tables(SQLITE)
"""Schema version 4: the ``signals`` and ``labels`` tables."""

_SIGNAL_COLUMNS = (
    "request_id",
    "time",
    "model_sha256",
    "feature_version",
    "features",
    "vector",
    "route",
    "score",
    "prompt_chars",
)
# A newer signal replaces an older one as the newest (a new seq): delete, then insert.
_DELETE_SIGNAL = "DELETE FROM signals WHERE request_id = ?"
_INSERT_SIGNAL = (
    f"INSERT INTO signals ({', '.join(_SIGNAL_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_SIGNAL_COLUMNS))})"
)
_INSERT_LABEL = (
    "INSERT INTO labels (request_id, source, good, time, note, agreement) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, source) DO UPDATE SET "
    "good = excluded.good, time = excluded.time, note = excluded.note, "
    "agreement = excluded.agreement"
)
# A feedback label says something about the local model only when the local model answered;
# a shadow or a cascade label is about the local answer whatever answered the client.
_USABLE = "(l.source IN ('shadow', 'cascade') OR s.route = 'local')"


def insert(conn: Database, entries: Iterable[Learned], keep: int | None) -> None:
    """Store signals and labels (inside the caller's transaction), then prune old signals.

    Args:
        conn: The ledger, in a transaction.
        entries: Signals and labels, in the order they were written (a later one replaces an
            earlier one for the same request and kind).
        keep: Keep only this many most recent signals; None keeps them all.
    """
    signals = 0
    for entry in entries:
        if isinstance(entry, Signal):
            signals += 1
            conn.execute(_DELETE_SIGNAL, (entry.request_id,))
            conn.execute(
                _INSERT_SIGNAL,
                (
                    entry.request_id,
                    entry.time,
                    entry.model_sha256,
                    entry.feature_version,
                    entry.features,
                    entry.vector,
                    entry.route,
                    entry.score,
                    entry.prompt_chars,
                ),
            )
        else:
            conn.execute(
                _INSERT_LABEL,
                (
                    entry.request_id,
                    entry.source,
                    int(entry.good),
                    entry.time,
                    entry.note,
                    entry.agreement,
                ),
            )
    if signals and keep is not None:
        conn.execute(
            "DELETE FROM signals WHERE seq <= "
            "(SELECT seq FROM signals ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            (keep,),
        )


def prune(conn: Database, older_than: float) -> None:
    """Delete signals and labels from before a time (the ledger's retention)."""
    conn.execute("DELETE FROM signals WHERE time < ?", (older_than,))
    conn.execute("DELETE FROM labels WHERE time < ?", (older_than,))


def labelled(conn: Database, model_sha256: str) -> list[LabelledSignal]:
    """The kept signals of one local model that carry at least one label, oldest first."""
    rows = conn.execute(
        f"""
        SELECT {", ".join("s." + column for column in _SIGNAL_COLUMNS)},
            (SELECT good FROM labels WHERE request_id = s.request_id AND source = 'feedback'),
            (SELECT good FROM labels WHERE request_id = s.request_id AND source = 'shadow'),
            (SELECT good FROM labels WHERE request_id = s.request_id AND source = 'cascade'),
            (SELECT MAX(time) FROM labels WHERE request_id = s.request_id)
        FROM signals s
        WHERE s.model_sha256 = ?
            AND EXISTS (SELECT 1 FROM labels WHERE request_id = s.request_id)
        ORDER BY s.seq
        """,
        (model_sha256,),
    ).fetchall()
    return [
        LabelledSignal(
            _signal(row[: len(_SIGNAL_COLUMNS)]),
            feedback=None if row[-4] is None else bool(row[-4]),
            shadow=None if row[-3] is None else bool(row[-3]),
            cascade=None if row[-2] is None else bool(row[-2]),
            labelled_at=None if row[-1] is None else float(row[-1]),
        )
        for row in rows
    ]


def signal_kept(conn: Database, request_id: str) -> bool:
    """Whether the ledger keeps a request's signal."""
    row = conn.execute("SELECT 1 FROM signals WHERE request_id = ?", (request_id,)).fetchone()
    return row is not None


def usable_since(
    conn: Database, model_sha256: str, after: float | None = None
) -> tuple[int, float | None]:
    """How many of a local model's kept signals carry a label a refit can use, among those
    labelled after a time, and when the newest of them was labelled.

    A request's label time is its newest label's (as :func:`labelled` gives it), so a label
    that replaces an earlier one counts as new again.

    Args:
        conn: The ledger.
        model_sha256: The local model's SHA-256.
        after: Count only requests labelled after this (Unix seconds); None counts all.

    Returns:
        The count, and the newest label time among them (None when there is none).
    """
    since, params = ("WHERE labelled_at > ?", [after]) if after is not None else ("", [])
    row = conn.execute(
        f"""
        SELECT COUNT(*), MAX(labelled_at) FROM (
            SELECT (SELECT MAX(time) FROM labels WHERE request_id = s.request_id) AS labelled_at
            FROM signals s
            WHERE s.model_sha256 = ? AND EXISTS (
                SELECT 1 FROM labels l WHERE l.request_id = s.request_id AND {_USABLE}
            )
        ) AS usable {since}
        """,
        [model_sha256, *params],
    ).fetchone()
    return int(row[0]), None if row[1] is None else float(row[1])


def signals(conn: Database, model_sha256: str | None = None) -> list[Signal]:
    """The kept signals (of one local model, or all), oldest first."""
    where, params = ("WHERE model_sha256 = ?", [model_sha256]) if model_sha256 else ("", [])
    rows = conn.execute(
        f"SELECT {', '.join(_SIGNAL_COLUMNS)} FROM signals {where} ORDER BY seq", params
    ).fetchall()
    return [_signal(row) for row in rows]


def labels(conn: Database, request_id: str | None = None) -> list[Label]:
    """The labels (of one request, or all), oldest first."""
    where, params = ("WHERE request_id = ?", [request_id]) if request_id else ("", [])
    rows = conn.execute(
        "SELECT request_id, source, good, time, note, agreement FROM labels "
        f"{where} ORDER BY time, source",
        params,
    ).fetchall()
    return [Label(row[0], row[1], bool(row[2]), row[3], row[4], row[5]) for row in rows]


def counts(conn: Database) -> list[LabelCount]:
    """Labels per local model and source; labels of requests without a kept signal last."""
    rows = conn.execute(
        f"""
        SELECT s.model_sha256,
            COUNT(*) FILTER (WHERE l.source = 'feedback'),
            COUNT(*) FILTER (WHERE l.source = 'shadow'),
            COUNT(DISTINCT l.request_id) FILTER (WHERE s.seq IS NOT NULL AND {_USABLE}),
            COUNT(*) FILTER (WHERE l.source = 'cascade'),
            COUNT(DISTINCT l.request_id) FILTER (
                WHERE s.seq IS NOT NULL AND s.vector IS NOT NULL AND {_USABLE}
            ),
            COUNT(*) FILTER (WHERE l.source = 'shadow' AND s.route IN ('cloud', 'lan'))
        FROM labels l LEFT JOIN signals s ON s.request_id = l.request_id
        GROUP BY s.model_sha256
        ORDER BY s.model_sha256 IS NULL, s.model_sha256
        """
    ).fetchall()
    return [
        LabelCount(
            row[0], int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]), int(row[6])
        )
        for row in rows
    ]


def _signal(row: Sequence[Any]) -> Signal:
    data = dict(zip(_SIGNAL_COLUMNS, row, strict=True))
    return Signal(
        request_id=data["request_id"],
        time=data["time"],
        model_sha256=data["model_sha256"],
        feature_version=data["feature_version"],
        features=bytes(data["features"]),
        route=data["route"],
        score=data["score"],
        prompt_chars=data["prompt_chars"],
        vector=None if data["vector"] is None else bytes(data["vector"]),
    )
