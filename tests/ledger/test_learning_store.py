"""What the ledger keeps for learning: signals and labels, written like records (journal first,
then SQLite), bounded, replaced per request, recovered after a crash; shadow legs count as
spend, not as requests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from ledger_records import T0, cloud_record, local_record

from hybrid.ledger.journal import Journal, journal_path
from hybrid.ledger.learning import Label, LabelCount, Signal
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import Totals
from hybrid.ledger.writer import LedgerWriter

SHA = "cd" * 32


def signal(
    request_id: str,
    *,
    route: str = "local",
    at: float = T0,
    sha: str = SHA,
    vector: bool = True,
) -> Signal:
    return Signal.of(
        request_id=request_id,
        time=at,
        model_sha256=sha,
        feature_version=1,
        features=np.arange(5, dtype=np.float64) / 4,
        route=route,
        score=0.25,
        prompt_chars=42,
        vector=np.array([0.5, -1.0, 2.0]) if vector else None,
    )


def open_store(path: Path) -> LedgerStore:
    return LedgerStore.open(path)


def test_signals_and_labels_round_trip_through_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    writer = LedgerWriter(path, retention_days=0)
    writer.start()
    writer.write_nowait(local_record(id="a"))
    writer.learn_nowait(signal("a"))
    writer.learn_nowait(Label("a", "feedback", True, T0 + 5, note="fine"))
    writer.learn_nowait(Label("a", "shadow", False, T0 + 6, agreement=0.2))
    writer.learn_nowait(Label("a", "feedback", False, T0 + 7))  # replaces the first
    writer.close()

    store = open_store(path)
    try:
        [kept] = store.signals()
        assert kept == signal("a")
        assert kept.feature_array().tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert kept.vector_array() is not None
        assert kept.vector_array().tolist() == [0.5, -1.0, 2.0]  # type: ignore[union-attr]
        assert [(label.source, label.good, label.note) for label in store.labels("a")] == [
            ("shadow", False, None),
            ("feedback", False, None),
        ]
        [row] = store.labelled(SHA)
        assert (row.feedback, row.shadow) == (False, False)
        # When its newest label was written (what a refit's labels_until is compared with).
        assert row.labelled_at == T0 + 7
        assert store.label_counts() == [
            LabelCount(SHA, feedback=1, shadow=1, usable=1, with_vector=1)
        ]
    finally:
        store.close()


def test_only_the_newest_signals_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    writer = LedgerWriter(path, retention_days=0, keep_signals=3, commit_interval_s=0.0)
    writer.start()
    for index in range(7):
        writer.learn_nowait(signal(f"r{index}", at=T0 + index))
    writer.close()
    store = open_store(path)
    try:
        assert [s.request_id for s in store.signals()] == ["r4", "r5", "r6"]
        # What POST /v1/hybrid/feedback asks: a pruned signal, or none, is not kept.
        assert [store.signal_kept(f"r{index}") for index in (3, 4, 6)] == [False, True, True]
        assert not store.signal_kept("never-scored")
    finally:
        store.close()


def test_signals_and_labels_a_killed_server_journaled_are_committed_at_the_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    LedgerStore.open(path).close()
    journal = Journal(journal_path(path))  # what a server killed before committing left
    journal.append(local_record(id="a"))
    journal.append_learned(signal("a"))
    journal.append_learned(Label("a", "feedback", True, T0 + 1))
    journal.append_learned(Label("a", "feedback", False, T0 + 2))
    journal.close()

    writer = LedgerWriter(path, retention_days=0)
    writer.start()
    writer.close()
    store = open_store(path)
    try:
        assert [record.id for record in store.records()] == ["a"]
        assert [s.request_id for s in store.signals()] == ["a"]
        assert [(label.good, label.time) for label in store.labels()] == [(False, T0 + 2)]
    finally:
        store.close()
    assert journal_path(path).read_bytes() == b""


def test_retention_deletes_old_signals_and_labels_with_the_records(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ledger.sqlite3")
    try:
        store.append(
            [local_record(id="old"), local_record(id="new", time=T0 + 100)],
            [
                signal("old"),
                Label("old", "shadow", True, T0),
                signal("new", at=T0 + 100),
                Label("new", "shadow", True, T0 + 100),
            ],
        )
        store.prune(T0 + 50)
        assert [s.request_id for s in store.signals()] == ["new"]
        assert [label.request_id for label in store.labels()] == ["new"]
    finally:
        store.close()


def test_feedback_on_a_cloud_answer_is_counted_but_not_usable(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ledger.sqlite3")
    try:
        store.append(
            [],
            [
                signal("c", route="cloud"),
                Label("c", "feedback", True, T0),
                Label("orphan", "feedback", False, T0),  # no signal kept for it
                signal("other", sha="ef" * 32),
                Label("other", "shadow", True, T0),
                signal("bare", sha="ef" * 32, vector=False),  # no prompt vector kept
                Label("bare", "shadow", False, T0),
            ],
        )
        assert store.label_counts() == [
            LabelCount(SHA, feedback=1, shadow=0, usable=0),
            LabelCount("ef" * 32, feedback=0, shadow=2, usable=2, with_vector=1),
            LabelCount(None, feedback=1, shadow=0, usable=0),
        ]
    finally:
        store.close()


def test_usable_labels_since_a_time_count_a_label_given_again_as_new(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ledger.sqlite3")
    try:
        store.append(
            [],
            [
                signal("a"),
                Label("a", "shadow", True, T0 + 1),
                signal("b"),
                Label("b", "feedback", False, T0 + 2),
                signal("c", route="cloud"),
                Label("c", "feedback", True, T0 + 3),  # a cloud answer's: not usable
            ],
        )
        assert store.usable_since(SHA) == (2, T0 + 2)
        assert store.usable_since(SHA, T0 + 1) == (1, T0 + 2)
        assert store.usable_since(SHA, T0 + 2) == (0, None)
        assert store.usable_since("ef" * 32) == (0, None)
        # "a" is labelled again, the other way: the same number, but one labelled later.
        store.append([], [Label("a", "shadow", False, T0 + 9)])
        assert store.usable_since(SHA) == (2, T0 + 9)
        assert store.usable_since(SHA, T0 + 2) == (1, T0 + 9)
    finally:
        store.close()


def test_shadow_labels_of_escalated_requests_are_counted_apart(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ledger.sqlite3")
    try:
        store.append(
            [],
            [
                signal("kept"),  # a local answer graded against the cloud's
                Label("kept", "shadow", True, T0),
                signal("sent", route="cloud"),  # a local answer in the background
                Label("sent", "shadow", False, T0),
                signal("asked", route="cloud"),
                Label("asked", "feedback", True, T0),
            ],
        )
        [count] = store.label_counts()
        assert (count.shadow, count.shadow_escalated, count.feedback) == (2, 1, 1)
        assert count.to_dict()["shadow_escalated"] == 1
    finally:
        store.close()


def test_a_cascade_label_on_a_cloud_answer_is_usable_and_read_back_with_its_signal(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "ledger.sqlite3")
    try:
        store.append(
            [],
            [
                signal("d", route="cloud"),
                Label("d", "cascade", False, T0, note="the local answer declined the request"),
                signal("f", route="cloud"),
                Label("f", "feedback", True, T0),
            ],
        )
        assert store.label_counts() == [
            LabelCount(SHA, feedback=1, shadow=0, usable=1, cascade=1, with_vector=1)
        ]
        rows = {row.signal.request_id: row for row in store.labelled(SHA)}
        assert (rows["d"].feedback, rows["d"].shadow, rows["d"].cascade) == (None, None, False)
        assert (rows["f"].feedback, rows["f"].cascade) == (True, None)
    finally:
        store.close()


def test_the_answer_of_a_request_is_its_answer_leg_not_a_shadow_or_discarded_one(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "ledger.sqlite3")
    try:
        store.append(
            [
                local_record(id="a"),
                cloud_record(id="a", leg="shadow"),
                local_record(id="b", leg="cascade_local"),
                cloud_record(id="b", leg="cascade_cloud"),
            ]
        )
        answer_a, answer_b = store.answer("a"), store.answer("b")
        assert answer_a is not None and (answer_a.route, answer_a.leg) == ("local", None)
        assert answer_b is not None and answer_b.leg == "cascade_cloud"
        assert store.answer("missing") is None
    finally:
        store.close()


def test_a_shadow_leg_is_spend_but_not_a_request_in_sql_and_in_memory(tmp_path: Path) -> None:
    records = [local_record(id="a"), cloud_record(id="a", leg="shadow")]
    store = open_store(tmp_path / "ledger.sqlite3")
    try:
        store.append(records)
        in_sql = store.totals()
    finally:
        store.close()
    in_memory = Totals.of(records)
    assert in_sql == in_memory
    assert (in_sql.requests, in_sql.local, in_sql.cloud) == (1, 1, 0)
    assert in_sql.cloud_spend_usd == records[1].cloud_cost_usd


def test_a_version_3_ledger_gains_the_learning_tables_and_keeps_its_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = open_store(path)
    store.append([local_record(id="kept")])
    store.close()
    with sqlite3.connect(path) as conn:  # back to version 3, as hybrid before learning left it
        conn.execute("DROP TABLE signals")
        conn.execute("DROP TABLE labels")
        conn.execute("DROP TABLE rollups")
        conn.execute("ALTER TABLE requests DROP COLUMN instance")
        conn.execute("PRAGMA user_version = 3")
    store = open_store(path)
    try:
        assert [record.id for record in store.records()] == ["kept"]
        store.append([], [signal("kept")])
        assert [s.request_id for s in store.signals()] == ["kept"]
    finally:
        store.close()
