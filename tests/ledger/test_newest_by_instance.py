"""``LedgerStore.newest_by_instance``: when each daemon of a fleet wrote its newest record, read
through the rollups (newest day, newest hour, then that hour's records), equal on SQLite and
PostgreSQL to the newest time among the records, before and after pruning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_records import T0, cloud_record, local_record
from postgres import PostgresDatabase

from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore

HOUR = 3_600.0
DAY = 86_400.0


def fleet() -> list[LedgerRecord]:
    """Three daemons: edge-a busy until now, edge-b quiet since two days ago (its last record in
    the middle of an hour), and records from before instances were named ('')."""
    records = [
        local_record(id=f"a{i}", time=T0 - 3 * DAY + i * 1_801.0, instance="edge-a")
        for i in range(int(3 * DAY / 1_801.0))
    ]
    records += [
        cloud_record(id=f"b{i}", time=T0 - 5 * DAY + i * 2_417.0, instance="edge-b")
        for i in range(int(3 * DAY / 2_417.0))
    ]
    records.append(local_record(id="old", time=T0 - 6 * DAY + 12.5, instance=""))
    return records


def newest(records: list[LedgerRecord]) -> dict[str, float]:
    found: dict[str, float] = {}
    for record in records:
        found[record.instance] = max(found.get(record.instance, record.time), record.time)
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LedgerStore, list[LedgerRecord]]]:
    if request.param == "sqlite":
        opened = LedgerStore.open(tmp_path / "ledger.sqlite3")
    else:
        database: PostgresDatabase = request.getfixturevalue("postgres_db")
        opened = LedgerStore.open_url(database.url)
    records = fleet()
    for start in range(0, len(records), 40):  # in batches, as the writer commits them
        opened.append(records[start : start + 40])
    yield opened, records
    opened.close()


def test_each_instance_is_dated_by_its_newest_record(
    store: tuple[LedgerStore, list[LedgerRecord]],
) -> None:
    ledger, records = store
    assert ledger.newest_by_instance() == pytest.approx(newest(records))
    assert set(ledger.newest_by_instance()) == {"edge-a", "edge-b", ""}


def test_pruning_forgets_the_instances_whose_records_all_went(
    store: tuple[LedgerStore, list[LedgerRecord]],
) -> None:
    ledger, records = store
    cut = T0 - 2 * DAY - 0.4 * HOUR  # inside an hour of edge-b's last day
    ledger.prune(cut)
    kept = [record for record in records if record.time >= cut]
    assert ledger.newest_by_instance() == pytest.approx(newest(kept))
    assert "" not in ledger.newest_by_instance()
