"""What the ledger keeps for learning from traffic: signals, labels, and the queries on them.

A :class:`Signal` is what a refit of the difficulty model needs about one request the
difficulty policy scored, without the prompt's text: the local model it was scored for (its
GGUF file's SHA-256), the prompt's feature vector (float32 bytes), the local model's own
prompt vector when one was computed (float16 bytes), the route, the score and the prompt's
length in characters.  A :class:`Label` says whether an answer was good: from a person
(``source="feedback"``, ``POST /v1/hybrid/feedback``), from comparing a local answer with
a cloud answer to the same request (``source="shadow"``, :mod:`hybrid.routing.shadow`), or
from the cascade, which discarded a local answer that declined the request
(``source="cascade"``, always bad: :mod:`hybrid.routing.cascade`).

Both go through the ledger's writer, like records: journaled first, committed in batches.
A request has at most one signal and one label per source; a newer one replaces the older.
Only the ``keep`` most recent signals are kept (``routing.learn.keep_signals``), and labels and
signals older than the ledger's retention go with the records.

The SQL lives here; :class:`~hybrid.ledger.store.LedgerStore` runs it.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from hybrid.ledger.dialect import SQLITE, Database, Dialect

LabelSource = Literal["feedback", "shadow", "cascade"]
LABEL_SOURCES: tuple[str, ...] = get_args(LabelSource)

_FEATURE_DTYPE = np.dtype("<f4")
_VECTOR_DTYPE = np.dtype("<f2")


@dataclass(frozen=True)
class Signal:
    """What a refit needs to know about one scored request (never its text).

    Attributes:
        request_id: The request's id (``X-Hybrid-Request-Id``).
        time: When the request arrived, Unix seconds.
        model_sha256: The SHA-256 of the local model's GGUF file the score was made for.
        feature_version: The prompt features' version (``FEATURE_VERSION``).
        features: The feature vector, little-endian float32.
        route: Where the request was answered: ``local``, ``lan`` or ``cloud``.
        score: The difficulty score the router used.
        prompt_chars: The conversation's length in characters (the length rule's score).
        vector: The local model's prompt vector, little-endian float16, when one was computed.
    """

    request_id: str
    time: float
    model_sha256: str
    feature_version: int
    features: bytes
    route: str
    score: float | None
    prompt_chars: int
    vector: bytes | None = None

    @classmethod
    def of(
        cls,
        *,
        request_id: str,
        time: float,
        model_sha256: str,
        feature_version: int,
        features: np.ndarray,
        route: str,
        score: float | None,
        prompt_chars: int,
        vector: np.ndarray | None = None,
    ) -> Signal:
        """A signal from arrays: the features as float32, the prompt vector as float16."""
        return cls(
            request_id=request_id,
            time=time,
            model_sha256=model_sha256,
            feature_version=feature_version,
            features=np.asarray(features, dtype=_FEATURE_DTYPE).tobytes(),
            route=route,
            score=score,
            prompt_chars=prompt_chars,
            vector=None if vector is None else np.asarray(vector, dtype=_VECTOR_DTYPE).tobytes(),
        )

    def with_vector(self, vector: np.ndarray) -> Signal:
        """The same signal with the local model's prompt vector (as float16)."""
        return dataclasses.replace(self, vector=np.asarray(vector, dtype=_VECTOR_DTYPE).tobytes())

    def feature_array(self) -> np.ndarray:
        """The feature vector as float64."""
        return np.frombuffer(self.features, dtype=_FEATURE_DTYPE).astype(np.float64)

    def vector_array(self) -> np.ndarray | None:
        """The prompt vector as float32, or None."""
        if self.vector is None:
            return None
        return np.frombuffer(self.vector, dtype=_VECTOR_DTYPE).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The journal's JSON object (bytes as base64)."""
        return {
            "kind": "signal",
            "request_id": self.request_id,
            "time": self.time,
            "model_sha256": self.model_sha256,
            "feature_version": self.feature_version,
            "features": base64.b64encode(self.features).decode("ascii"),
            "route": self.route,
            "score": self.score,
            "prompt_chars": self.prompt_chars,
            "vector": None if self.vector is None else base64.b64encode(self.vector).decode(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signal:
        """Read :meth:`to_dict` output.

        Raises:
            ValueError: A key is missing or a value cannot be decoded.
        """
        try:
            vector = data.get("vector")
            score = data["score"]
            return cls(
                request_id=str(data["request_id"]),
                time=float(data["time"]),
                model_sha256=str(data["model_sha256"]),
                feature_version=int(data["feature_version"]),
                features=base64.b64decode(data["features"], validate=True),
                route=str(data["route"]),
                score=None if score is None else float(score),
                prompt_chars=int(data["prompt_chars"]),
                vector=None if vector is None else base64.b64decode(vector, validate=True),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a signal needs the key {exc}") from exc


@dataclass(frozen=True)
class Label:
    """Whether the answer to a request was good.

    Attributes:
        request_id: The request's id.
        source: ``feedback`` (a person said so), ``shadow`` (a cloud answer agreed or not) or
            ``cascade`` (the local answer declined the request, and the cloud answered).
        good: The answer was good enough.
        time: When the label was given, Unix seconds.
        note: What the person added, if anything.
        agreement: For a shadow label, how far the two answers agreed (0 to 1).
    """

    request_id: str
    source: LabelSource
    good: bool
    time: float
    note: str | None = None
    agreement: float | None = None

    def __post_init__(self) -> None:
        """Reject an unknown source.

        Raises:
            ValueError: ``source`` is not one of :data:`LABEL_SOURCES`.
        """
        if self.source not in LABEL_SOURCES:
            raise ValueError(f"source must be one of {LABEL_SOURCES}, not {self.source!r}")

    def to_dict(self) -> dict[str, Any]:
        """The journal's JSON object."""
        return {
            "kind": "label",
            "request_id": self.request_id,
            "source": self.source,
            "good": self.good,
            "time": self.time,
            "note": self.note,
            "agreement": self.agreement,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Label:
        """Read :meth:`to_dict` output.

        Raises:
            ValueError: A key is missing or a value is out of its set.
        """
        try:
            agreement = data.get("agreement")
            note = data.get("note")
            return cls(
                request_id=str(data["request_id"]),
                source=data["source"],
                good=bool(data["good"]),
                time=float(data["time"]),
                note=None if note is None else str(note),
                agreement=None if agreement is None else float(agreement),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a label needs the key {exc}") from exc


Learned = Signal | Label
"""An entry of the ledger that is not a request record."""


@dataclass(frozen=True)
class LabelledSignal:
    """A kept signal and the labels its request has.

    Attributes:
        signal: The signal.
        feedback: The person's label (``good``), None when there is none.
        shadow: The shadow comparison's label, None when there is none.
        cascade: The cascade's label (False: the local answer declined), None when none.
        labelled_at: When its newest label was written, Unix seconds (None: not known).
    """

    signal: Signal
    feedback: bool | None
    shadow: bool | None
    cascade: bool | None = None
    labelled_at: float | None = None


@dataclass(frozen=True)
class LabelCount:
    """How many labels one local model's requests have, by source.

    Attributes:
        model_sha256: The local model's SHA-256; None for labels of requests with no kept
            signal (the difficulty policy did not score them, or their signal was pruned).
        feedback: Labels given by people.
        shadow: Labels from shadow comparisons.
        cascade: Labels from the cascade (local answers that declined).
        usable: Requests a refit can learn from: a kept signal with a shadow or a cascade
            label, or with feedback on a local answer.
        with_vector: Of those, how many kept the local model's prompt vector (what refits
            the model stage).
        shadow_escalated: Of the shadow labels, those of requests the router sent to the
            cloud: local answers given in the background (``routing.learn.local_shadow_rate``).
    """

    model_sha256: str | None
    feedback: int = 0
    shadow: int = 0
    usable: int = 0
    cascade: int = 0
    with_vector: int = 0
    shadow_escalated: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``/v1/hybrid/stats``' ``labels`` entries)."""
        return {
            "model_sha256": self.model_sha256,
            "feedback": self.feedback,
            "shadow": self.shadow,
            "cascade": self.cascade,
            "usable": self.usable,
            "with_vector": self.with_vector,
            "shadow_escalated": self.shadow_escalated,
        }


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
            COUNT(*) FILTER (WHERE l.source = 'shadow' AND s.route = 'cloud')
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
