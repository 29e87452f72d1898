"""One LedgerStore on both databases: the same records give the same answers on SQLite and on a
real PostgreSQL server; records are stored once by id and leg; a newer schema or a wrong
password is refused in one line with the password masked."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from ledger_records import T0, cloud_record, lan_record, local_record, refused_record
from postgres import PASSWORD, PostgresDatabase

from hybrid.errors import (
    LedgerAccessError,
    LedgerError,
    LedgerRefusedError,
    LedgerSchemaError,
)
from hybrid.ledger import rollup, schema
from hybrid.ledger.dialect import SQLITE
from hybrid.ledger.learning import Label, Signal
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import GROUP_BYS, Totals, grouped

HOUR = 3_600.0
DAY = 86_400.0


def fleet_records() -> list[LedgerRecord]:
    """Three days of traffic from two instances: every route, status and leg, over whole and
    partial hours and days."""
    records: list[LedgerRecord] = []
    for i in range(240):
        at = T0 - 2 * DAY + i * 997.0
        instance = "edge-a" if i % 3 else "edge-b"
        latency = 0.01 * (1 + i % 37)
        kind = i % 8
        if kind < 4:
            record = local_record(
                id=f"l{i}", time=at, latency_s=latency, cache_read_tokens=i % 7, instance=instance
            )
        elif kind == 4:
            record = lan_record(id=f"n{i}", time=at, latency_s=latency, instance=instance)
        elif kind == 5:
            record = refused_record(id=f"r{i}", time=at, instance=instance)
        else:
            record = cloud_record(
                id=f"c{i}",
                time=at,
                latency_s=latency * 3,
                ttft_s=None if i % 5 == 0 else latency,
                status="error" if i % 11 == 0 else "ok",
                reasons=(f"difficulty:0.{50 + i % 40}>0.52",),
                instance=instance,
            )
        records.append(record)
        if kind == 6:  # a cascade: the discarded local leg shares the answer's id
            records.append(local_record(id=f"c{i}", time=at, leg="cascade_local"))
            records[-2] = dataclasses.replace(records[-2], leg="cascade_cloud")
        if kind == 7:
            records.append(dataclasses.replace(record, leg="shadow", decided=None))
            # The local model answered it too, in the background: its energy, nothing avoided.
            shadow = local_record(
                id=f"c{i}",
                time=at,
                leg="local_shadow",
                reasons=("local:shadow",),
                counterfactual_model=None,
                counterfactual_cost_usd=None,
                cost_avoided_usd=-0.0000004,
                instance=instance,
            )
            records.append(shadow)
    return records


def learned(ids: list[str]) -> list[Signal | Label]:
    entries: list[Signal | Label] = []
    for index, request_id in enumerate(ids):
        entries.append(
            Signal.of(
                request_id=request_id,
                time=T0 + index,
                model_sha256="ab" * 32,
                feature_version=1,
                features=np.arange(4, dtype=np.float64) / (index + 1),
                route="local",
                score=0.5,
                prompt_chars=10 + index,
                vector=None,
            )
        )
        entries.append(Label(request_id, "feedback", index % 2 == 0, T0 + index))
        if index % 2:  # and a cascade's label (a local answer that declined)
            entries.append(Label(request_id, "cascade", False, T0 + index))
    return entries


@pytest.fixture
def both(tmp_path: Path, postgres_db: PostgresDatabase) -> Iterator[tuple[LedgerStore, ...]]:
    """The same records in a SQLite ledger and a PostgreSQL ledger."""
    records = fleet_records()
    stores = (LedgerStore.open(tmp_path / "ledger.sqlite3"), LedgerStore.open_url(postgres_db.url))
    for store in stores:
        # In batches, as the writer commits them: the rollups add up across transactions.
        for start in range(0, len(records), 50):
            store.append(records[start : start + 50])
        store.append([], learned(["l0", "l1", "l2", "c6"]), keep_signals=3)
    yield stores
    for store in stores:
        store.close()


WINDOWS = [
    (None, None),
    (T0 - DAY - 123.0, None),
    (T0 - 1.5 * DAY + 17.0, T0 - 5 * HOUR - 41.0),
    (T0 - 300.0, T0 + 200.0),  # inside one hour: records only
]


@pytest.mark.parametrize(("since", "until"), WINDOWS)
def test_totals_groups_and_percentiles_are_the_same_on_sqlite_and_postgresql(
    both: tuple[LedgerStore, LedgerStore], since: float | None, until: float | None
) -> None:
    lite, pg = both
    assert pg.shared and not lite.shared
    assert pg.totals(since, until).to_dict() == pytest.approx(lite.totals(since, until).to_dict())
    assert pg.latency(since, until) == lite.latency(since, until)
    for by in GROUP_BYS:
        on_pg, on_lite = pg.grouped(by, since, until), lite.grouped(by, since, until)
        assert [key for key, _, _ in on_pg] == [key for key, _, _ in on_lite]
        for (_, pg_totals, pg_latency), (_, lite_totals, lite_latency) in zip(
            on_pg, on_lite, strict=True
        ):
            assert pg_totals.to_dict() == pytest.approx(lite_totals.to_dict())
            assert pg_latency == lite_latency
    assert pg.spend_by_provider(since or 0.0) == pytest.approx(lite.spend_by_provider(since or 0.0))


def test_the_rollups_hold_the_same_rows_and_equal_a_fold_of_the_records(
    both: tuple[LedgerStore, LedgerStore],
) -> None:
    pg = both[1]
    records = fleet_records()
    expected = rollup.with_days(rollup.fold(records))
    for store in both:
        rows = store._conn.execute(
            f"SELECT {', '.join((*rollup.KEYS, *rollup.VALUES))} FROM rollups"
        ).fetchall()
        held = {tuple(row[: len(rollup.KEYS)]): list(row[len(rollup.KEYS) :]) for row in rows}
        assert held.keys() == expected.keys()
        for key, values in expected.items():
            assert [float(v) if v is not None else None for v in held[key]] == pytest.approx(
                [float(v) if v is not None else None for v in values]
            )
    assert rollup.fold_sql(pg._conn, None, None).keys() == rollup.fold(records).keys()


def test_records_learning_and_pruning_read_back_the_same(
    both: tuple[LedgerStore, LedgerStore],
) -> None:
    lite, pg = both
    assert pg.records() == lite.records() == sorted(fleet_records(), key=lambda r: r.time)
    assert pg.recent(7) == lite.recent(7)
    assert pg.answer("c6") == lite.answer("c6")
    assert pg.answer("c6") is not None and pg.answer("c6").leg == "cascade_cloud"  # type: ignore[union-attr]
    assert pg.signals() == lite.signals()
    assert [s.request_id for s in pg.signals()] == ["l1", "l2", "c6"]  # keep_signals=3
    assert pg.labels() == lite.labels()
    assert pg.label_counts() == lite.label_counts()
    assert [(c.feedback, c.cascade) for c in pg.label_counts()] == [(3, 2), (1, 0)]
    assert pg.labelled("ab" * 32) == lite.labelled("ab" * 32)
    assert [row.cascade for row in pg.labelled("ab" * 32)] == [False, None, False]
    times = sorted(row.labelled_at for row in lite.labelled("ab" * 32) if row.labelled_at)
    for after in (None, times[0]):
        assert pg.usable_since("ab" * 32, after) == lite.usable_since("ab" * 32, after)
    assert lite.usable_since("ab" * 32, times[-1]) == (0, None)
    cut = T0 - DAY + 1234.5
    assert pg.prune(cut) == lite.prune(cut) > 0
    assert pg.totals().to_dict() == pytest.approx(lite.totals().to_dict())
    kept = [r for r in fleet_records() if r.time >= cut]
    assert pg.totals().to_dict() == pytest.approx(Totals.of(kept).to_dict())


def test_grouping_by_instance_tells_the_daemons_of_a_fleet_apart(
    both: tuple[LedgerStore, LedgerStore],
) -> None:
    expected = grouped(fleet_records(), "instance")
    for store in both:
        groups = store.grouped("instance")
        assert [key for key, _, _ in groups] == [key for key, _, _ in expected]
        assert {"edge-a", "edge-b"} <= {key for key, _, _ in groups}
        for (_, totals, _), (_, want, _) in zip(groups, expected, strict=True):
            assert totals.requests == want.requests


def test_a_record_synced_twice_is_stored_once(postgres_db: PostgresDatabase) -> None:
    store = LedgerStore.open_url(postgres_db.url)
    try:
        batch = [
            cloud_record(id="x", leg="cascade_cloud"),
            local_record(id="x", leg="cascade_local"),
            local_record(id="y"),
        ]
        assert store.append(batch, only_new=True) == 3
        before = store.totals()
        assert store.append([*batch, local_record(id="z")], only_new=True) == 1
        assert store.totals().requests == before.requests + 1
        # Without the check, the database itself refuses a second copy (and stores nothing).
        with pytest.raises(LedgerRefusedError):
            store.append([local_record(id="y"), local_record(id="w")])
        assert sorted(r.id for r in store.records()) == ["x", "x", "y", "z"]
        assert store.totals().requests == before.requests + 1
    finally:
        store.close()


def test_text_holding_a_nul_is_stored_the_same_on_sqlite_and_postgresql(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    # A client's text: a requested model echoed into the record and its error, a feedback note.
    record = refused_record(
        id="nul", model_requested="gpt\x00x", error="the model 'gpt\x00x' does not exist"
    )
    label = Label("nul", "feedback", False, T0, note="bad\x00answer")
    stores = (LedgerStore.open(tmp_path / "ledger.sqlite3"), LedgerStore.open_url(postgres_db.url))
    try:
        for store in stores:
            assert store.append([record, local_record(id="next")], [label]) == 2
        lite, pg = stores
        assert pg.records() == lite.records()
        assert pg.labels() == lite.labels()
        stored = next(r for r in pg.records() if r.id == "nul")
        assert stored.model_requested == "gpt\ufffdx"
        assert stored.error == "the model 'gpt\ufffdx' does not exist"
        assert [label.note for label in pg.labels()] == ["bad\ufffdanswer"]
        assert pg.totals().to_dict() == pytest.approx(lite.totals().to_dict())
    finally:
        for store in stores:
            store.close()


# Data both databases refuse at every try: a NULL where the schema says NOT NULL, an integer
# past 64 bits.
@pytest.mark.parametrize(
    "poison",
    [
        pytest.param({"model": None}, id="not-null"),
        pytest.param({"prompt_tokens": 2**63}, id="past-64-bits"),
    ],
)
def test_data_the_database_refuses_is_a_refusal_on_sqlite_and_postgresql(
    tmp_path: Path, postgres_db: PostgresDatabase, poison: dict[str, object]
) -> None:
    stores = (LedgerStore.open(tmp_path / "ledger.sqlite3"), LedgerStore.open_url(postgres_db.url))
    try:
        for store in stores:
            batch = [local_record(id="good"), local_record(id="poison", **poison)]
            with pytest.raises(LedgerRefusedError, match="refused to record") as caught:
                store.append(batch)
            message = str(caught.value)
            assert store.name in message and PASSWORD not in message and "\n" not in message
            assert store.records() == []  # nothing of the batch
    finally:
        for store in stores:
            store.close()


def test_the_schema_is_created_at_the_current_version(postgres_db: PostgresDatabase) -> None:
    assert len(schema.POSTGRESQL_MIGRATIONS) == schema.SCHEMA_VERSION
    LedgerStore.open_url(postgres_db.url).close()
    LedgerStore.open_url(postgres_db.url).close()  # a second daemon finds it done
    with postgres_db.connect() as conn:
        row = conn.execute("SELECT version FROM hybrid_schema WHERE part = 'ledger'").fetchone()
        assert row == (schema.SCHEMA_VERSION,)


def test_a_database_migrated_by_a_newer_hybrid_is_refused_in_one_masked_line(
    postgres_db: PostgresDatabase,
) -> None:
    LedgerStore.open_url(postgres_db.url).close()
    with postgres_db.connect() as conn:
        conn.execute("UPDATE hybrid_schema SET version = 99 WHERE part = 'ledger'")
    with pytest.raises(LedgerSchemaError) as caught:
        LedgerStore.open_url(postgres_db.url)
    message = str(caught.value)
    assert "99" in message and "upgrade hybrid" in message
    assert PASSWORD not in message and "***" in message and "\n" not in message


def test_a_wrong_password_is_refused_in_one_masked_line(postgres_db: PostgresDatabase) -> None:
    wrong = "not-" + PASSWORD
    with pytest.raises(LedgerAccessError) as caught:
        LedgerStore.open_url(postgres_db.url_with(password=wrong))
    message = str(caught.value)
    assert wrong not in message and PASSWORD not in message and "\n" not in message
    assert "ledger.url" in message


def test_a_version_5_file_gains_instances_and_keeps_its_figures(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    old = [dataclasses.replace(r, instance="") for r in fleet_records()]
    store = LedgerStore.open(path)
    store.append(old)
    want = store.totals().to_dict(), store.latency()
    store.close()
    with sqlite3.connect(path) as conn:  # as hybrid 5 left it: no instances anywhere
        conn.execute("ALTER TABLE requests DROP COLUMN instance")
        conn.execute("DROP TABLE rollups")
        conn.execute(schema.rollups_table(SQLITE, instance=False))
        conn.execute("PRAGMA user_version = 5")
    store = LedgerStore.open(path)
    try:
        assert (store.totals().to_dict(), store.latency()) == (pytest.approx(want[0]), want[1])
        assert [key for key, _, _ in store.grouped("instance")] == [""]
        assert {r.instance for r in store.records()} == {""}
    finally:
        store.close()


def test_psycopg_errors_never_leak_past_the_store(postgres_db: PostgresDatabase) -> None:
    store = LedgerStore.open_url(postgres_db.url)
    try:
        with postgres_db.connect() as conn:
            conn.execute("DROP TABLE rollups")
        with pytest.raises(LedgerError) as caught:
            store.totals()
        assert not isinstance(caught.value, psycopg.Error | LedgerRefusedError)
        assert PASSWORD not in str(caught.value)
    finally:
        store.close()
