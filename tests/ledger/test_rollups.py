"""Hourly rollups: always the fold of the records they cover (appends, journal replay, pruning,
migration), read by every stats query, with percentiles from fixed buckets that bound the
exact ones."""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_records import T0, cloud_record, lan_record, local_record, refused_record

from hybrid.ledger import rollup, rollup_query
from hybrid.ledger.histogram import BOUNDS, BUCKETS, MAX_ERROR, Histogram, bucket, bucket_sql
from hybrid.ledger.journal import Journal, journal_path
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import GROUP_BYS, Latency, Totals, grouped, percentile
from hybrid.ledger.writer import LedgerWriter

HOUR = 3_600.0

route_status = st.sampled_from(
    [
        ("local", "ok"),
        ("cloud", "ok"),
        ("local", "error"),
        ("cloud", "cancelled"),
        ("lan", "ok"),
        ("lan", "error"),
        ("none", "refused"),
    ]
)
records = st.builds(
    lambda base, route_status, **changes: base(
        route=route_status[0], status=route_status[1], **changes
    ),
    st.sampled_from([local_record, cloud_record, lan_record, refused_record]),
    id=st.sampled_from(["a", "b", "c", "d"]),
    time=st.floats(min_value=T0 - 40 * HOUR, max_value=T0 + 40 * HOUR),
    route_status=route_status,
    decided=st.sampled_from([None, "router", "client", "mode"]),
    leg=st.sampled_from(
        [None, None, "cascade_local", "cascade_cloud", "shadow", "shadow_judge", "local_shadow"]
    ),
    model=st.sampled_from(["gemma", "gpt-4.1-mini", "gpu-box/qwen"]),
    provider=st.sampled_from(["local", "openai", "gpu-box"]),
    reasons=st.lists(
        st.sampled_from(["difficulty:0.7>0.5", "difficulty:0.1<=0.5", "privacy:email"]),
        max_size=2,
    ).map(tuple),
    prompt_tokens=st.integers(0, 10_000),
    cache_read_tokens=st.integers(0, 1000),
    latency_s=st.floats(min_value=0, max_value=1500, allow_nan=False),
    ttft_s=st.one_of(st.none(), st.floats(min_value=0, max_value=10, allow_nan=False)),
    cloud_cost_usd=st.one_of(st.none(), st.floats(min_value=0, max_value=10)),
    cost_avoided_usd=st.one_of(st.none(), st.floats(min_value=-1, max_value=10)),
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    opened = LedgerStore.open(tmp_path / "ledger.sqlite3")
    yield opened
    opened.close()


def table(path: Path) -> dict[tuple[Any, ...], list[Any]]:
    """The rollups table as stored: key -> values."""
    with sqlite3.connect(path) as conn:
        columns = ", ".join((*rollup.KEYS, *rollup.VALUES))
        rows = conn.execute(f"SELECT {columns} FROM rollups").fetchall()
    return {tuple(row[: len(rollup.KEYS)]): list(row[len(rollup.KEYS) :]) for row in rows}


def assert_rollups_fold(path: Path, records: list[LedgerRecord]) -> None:
    """The stored rollups are exactly the in-memory fold of ``records``."""
    expected = rollup.with_days(rollup.fold(records))
    actual = table(path)
    assert set(actual) == set(expected)
    for key, values in expected.items():
        assert actual[key] == [pytest.approx(value, rel=1e-9, abs=1e-12) for value in values]


def stored(path: Path) -> list[LedgerRecord]:
    store = LedgerStore.open(path)
    try:
        return store.records()
    finally:
        store.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(records, max_size=12), max_size=4))
def test_rollups_equal_the_fold_of_the_records_batch_after_batch(
    store: LedgerStore, batches: list[list[LedgerRecord]]
) -> None:
    store.prune(math.inf)
    for batch in batches:
        store.append(batch)
    everything = [record for batch in batches for record in batch]
    assert_rollups_fold(store.path, everything)
    # The SQL fold of the records (migration, partial hours) agrees with the in-memory one.
    sql = rollup.fold_sql(store._conn, None, None)
    assert set(sql) == set(rollup.fold(everything))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batch=st.lists(records, max_size=30),
    since=st.one_of(st.none(), st.floats(min_value=T0 - 40 * HOUR, max_value=T0 + 40 * HOUR)),
    length=st.one_of(st.none(), st.floats(min_value=0, max_value=80 * HOUR)),
)
def test_any_window_is_exact_whole_hours_from_rollups_and_partial_hours_from_records(
    store: LedgerStore, batch: list[LedgerRecord], since: float | None, length: float | None
) -> None:
    store.prune(math.inf)
    store.append(batch)
    until = None if since is None or length is None else since + length
    inside = [
        r for r in batch if (since is None or r.time >= since) and (until is None or r.time < until)
    ]
    assert store.totals(since, until).to_dict() == pytest.approx(Totals.of(inside).to_dict())
    assert store.latency(since, until) == Latency.of(inside)
    for by in GROUP_BYS:
        actual, expected = store.grouped(by, since, until), grouped(inside, by)
        assert [key for key, _, _ in actual] == [key for key, _, _ in expected]
        assert [lat for _, _, lat in actual] == [lat for _, _, lat in expected]


@given(
    since=st.one_of(st.none(), st.floats(min_value=T0 - 90 * HOUR, max_value=T0 + 90 * HOUR)),
    length=st.one_of(st.none(), st.floats(min_value=0, max_value=200 * HOUR)),
)
def test_a_window_splits_into_contiguous_pieces_reading_few_rows(
    since: float | None, length: float | None
) -> None:
    until = None if since is None or length is None else since + length
    pieces = rollup_query.pieces(since, until)
    assert pieces[0][1] == since
    assert pieces[-1][2] == until
    for (_, _, end), (_, start, _) in itertools.pairwise(pieces):
        assert end == start
    hours = 0.0
    for span, start, end in pieces:
        if span == 0:  # records: at most an hour's worth at each end
            assert start is not None and end is not None and end - start <= 2 * HOUR
        elif span == HOUR:
            hours += end - start
        if span and start is not None:
            assert start % span == 0
    assert hours <= 46 * HOUR


def test_whole_hours_are_read_from_the_rollups_not_the_records(
    store: LedgerStore, tmp_path: Path
) -> None:
    start = math.floor(T0 / HOUR) * HOUR
    store.append([cloud_record(id=str(i), time=start + i * 60) for i in range(30)])
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
        conn.execute("DELETE FROM requests")  # behind the store's back
    assert store.totals(since=start).requests == 30
    assert store.spend_by_provider(start) == {"openai": pytest.approx(30 * 0.0012)}
    # A window starting mid-hour reads that hour's part from the records, now gone.
    assert store.totals(since=start + 1).requests == 0


def test_a_replayed_journal_lands_in_the_rollups_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    committed = [local_record(id="kept", time=T0), cloud_record(id="up", time=T0 + 5)]
    store = LedgerStore.open(path)
    store.append(committed)
    store.close()
    pending = [
        *committed,  # committed already, still in the journal: counted once
        cloud_record(id="x", time=T0 + 10, leg="shadow"),
        local_record(id="y", time=T0 + HOUR, leg="cascade_local"),
        refused_record(id="z", time=T0 + 2 * HOUR),
    ]
    journal = Journal(journal_path(path))
    for record in pending:
        journal.append(record)
    journal.close()

    writer = LedgerWriter(path, retention_days=0)
    writer.start()
    writer.close()

    records = stored(path)
    assert len(records) == 5
    assert_rollups_fold(path, records)


DAY_START = T0 - T0 % 86_400


@pytest.mark.parametrize(
    "cut",
    [T0 + 30 * 60, math.floor(T0 / HOUR) * HOUR + 2 * HOUR, DAY_START + 86_400, math.inf],
)
def test_pruning_keeps_the_rollups_equal_to_the_records_left(
    store: LedgerStore, cut: float
) -> None:
    store.append([local_record(id=str(i), time=T0 + i * 1800, latency_s=i) for i in range(80)])
    store.prune(cut)
    left = store.records()
    assert all(record.time >= cut for record in left)
    assert_rollups_fold(store.path, left)
    assert store.totals().requests == len(left)


def test_the_writer_prunes_rollups_with_the_records(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = LedgerStore.open(path)
    store.append([local_record(id=str(i), time=T0 - i * 86_400) for i in range(5)])
    store.close()
    writer = LedgerWriter(path, retention_days=2, clock=lambda: T0 + 1)
    writer.start()
    writer.close()
    left = stored(path)
    assert [record.id for record in left] == ["1", "0"]
    assert_rollups_fold(path, left)


def test_migrating_a_version_4_ledger_builds_its_rollups_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    old = [
        local_record(id="a", time=T0),
        cloud_record(id="b", time=T0 + HOUR, leg="cascade_cloud"),
        local_record(id="b", time=T0 + HOUR, leg="cascade_local"),
        lan_record(id="c", time=T0 + 2 * HOUR, ttft_s=None),
        refused_record(id="d", time=T0 + 3 * HOUR, reasons=()),
    ]
    store = LedgerStore.open(path)
    store.append(old)
    store.close()
    with sqlite3.connect(path) as conn:  # as hybrid before rollups left it
        conn.execute("DROP TABLE rollups")
        conn.execute("ALTER TABLE requests DROP COLUMN instance")
        conn.execute("PRAGMA user_version = 4")

    store = LedgerStore.open(path)
    try:
        assert_rollups_fold(path, old)
        assert store.totals().to_dict() == pytest.approx(Totals.of(old).to_dict())
        store.append([local_record(id="e", time=T0)])
    finally:
        store.close()
    LedgerStore.open(path).close()  # nothing left to migrate: no second build
    assert_rollups_fold(path, [*old, local_record(id="e", time=T0)])


# --- histograms ------------------------------------------------------------------------------


def test_bounds_are_the_r10_series_from_a_millisecond_to_a_thousand_seconds() -> None:
    assert BOUNDS[0] == 0.001
    assert BOUNDS[-1] == 1000.0
    assert BOUNDS[30:40] == (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
    assert BUCKETS == 62
    assert MAX_ERROR == pytest.approx(1.28)


@pytest.mark.parametrize("bound", BOUNDS)
def test_the_sql_bucket_agrees_with_python_at_every_bound(bound: float) -> None:
    values = [bound, math.nextafter(bound, 0), math.nextafter(bound, math.inf)]
    with sqlite3.connect(":memory:") as conn:
        for value in values:
            [(index,)] = conn.execute(
                f"SELECT {bucket_sql('v')} FROM (SELECT ? AS v)", (value,)
            ).fetchall()
            assert index == bucket(value)
    assert bucket(bound) == BOUNDS.index(bound)
    assert bucket(math.nextafter(bound, math.inf)) == BOUNDS.index(bound) + 1


@given(
    values=st.lists(st.floats(min_value=0, max_value=2000, allow_nan=False), min_size=1),
    percent=st.sampled_from([50, 90, 95, 99, 100]),
)
def test_percentiles_from_buckets_bound_the_exact_ones(values: list[float], percent: int) -> None:
    exact = percentile(sorted(values), percent)
    reported = Histogram.of(values).percentile(percent)
    assert exact is not None and reported is not None
    assert exact <= reported <= max(values)
    if exact <= BOUNDS[-1]:
        assert reported <= max(0.001, exact * MAX_ERROR)
    # The reported value is the bound of the exact value's bucket, or the largest value.
    assert reported in (BOUNDS[bucket(exact)] if exact <= BOUNDS[-1] else None, max(values))


def test_histograms_add_up() -> None:
    first, second = Histogram.of([0.1, 2.0]), Histogram.of([50.0])
    assert first.plus(second) == Histogram.of([0.1, 2.0, 50.0])
    assert Histogram().percentile(50) is None
    with pytest.raises(ValueError, match="62 buckets"):
        Histogram((1, 2))
