"""The writer on a shared PostgreSQL ledger, against a real server: records journaled locally,
committed in batches, stamped with their instance; a database that goes away (mid-run or at
start) loses nothing and stores nothing twice once it returns; a record it refuses is set aside
and holds nothing else up."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal

import pytest
from ledger_records import T0, cloud_record, local_record, refused_record
from postgres import PASSWORD, PostgresDatabase

from hybrid.errors import LedgerUnavailableError
from hybrid.ledger.journal import (
    Journal,
    journal_path,
    read_entries,
    read_journal,
    rejected_path,
)
from hybrid.ledger.learning import Label
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.writer import LedgerWriter

CHILD = Path(__file__).with_name("ledger_child.py")


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def writer_for(tmp_path: Path, db: PostgresDatabase, instance: str = "edge-a") -> LedgerWriter:
    return LedgerWriter(
        tmp_path / "ledger.sqlite3",
        retention_days=0,
        url=db.url,
        instance=instance,
        commit_interval_s=0.02,
        retry_s=(0.05, 0.1),
    )


def ids_in(db: PostgresDatabase) -> list[str]:
    """Every record id the database holds, one per stored record."""
    store = LedgerStore.open_url(db.url)
    try:
        return sorted(record.id for record in store.records())
    finally:
        store.close()


async def until_stored(db: PostgresDatabase, expected: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while (held := await asyncio.to_thread(ids_in, db)) != sorted(expected):
        assert len(held) <= len(expected), "a record was stored twice"
        assert time.monotonic() < deadline, f"{len(held)} of {len(expected)} records synced"
        await asyncio.sleep(0.05)


@synchronous
async def test_records_reach_postgresql_stamped_with_this_instance(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    writer = writer_for(tmp_path, postgres_db, instance="edge-a")
    writer.start()
    try:
        assert writer.connected
        for i in range(30):
            await writer.write(local_record(id=f"r{i}", time=T0 + i))
        assert (await writer.totals()).requests == 30
        recent = await writer.recent(30)
        assert {record.instance for record in recent} == {"edge-a"}
        assert journal_path(tmp_path / "ledger.sqlite3").stat().st_size == 0
        assert not (tmp_path / "ledger.sqlite3").exists()  # no SQLite ledger beside it
    finally:
        writer.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
@synchronous
async def test_a_database_stopped_mid_run_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, postgres_db: PostgresDatabase, mode: Literal["fast", "immediate"]
) -> None:
    writer = writer_for(tmp_path, postgres_db)
    writer.start()
    try:
        written = []
        for i in range(20):
            await writer.write(local_record(id=f"before{i}", time=T0 + i))
            written.append(f"before{i}")
        await writer.totals()  # committed
        with postgres_db.server.admin() as admin:
            # The test server commits asynchronously (synchronous_commit=off): flush what it
            # acknowledged, as a production server does at every commit, before it crashes.
            admin.execute("CHECKPOINT")
        with postgres_db.server.down(mode):
            for i in range(40):  # the daemon keeps serving: writes return at once
                writer.write_nowait(cloud_record(id=f"during{i}", time=T0 + 100 + i))
                written.append(f"during{i}")
            with pytest.raises(LedgerUnavailableError) as caught:
                await writer.totals()
            message = str(caught.value)
            assert "journal" in message and PASSWORD not in message and "***" in message
            await asyncio.sleep(0.3)  # a few reconnect attempts fail meanwhile
            assert not writer.connected
            assert len(read_journal(journal_path(tmp_path / "ledger.sqlite3"))) >= 40
        for i in range(5):
            await writer.write(local_record(id=f"after{i}", time=T0 + 200 + i))
            written.append(f"after{i}")
        await until_stored(postgres_db, written)
        assert (await writer.totals()).requests == 65
    finally:
        writer.close()
    assert journal_path(tmp_path / "ledger.sqlite3").stat().st_size == 0
    assert ids_in(postgres_db) == sorted(written)
    assert not rejected_path(tmp_path / "ledger.sqlite3").exists()  # an outage refuses nothing


@synchronous
async def test_a_database_down_at_start_leaves_the_daemon_serving_and_syncs_later(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    home = tmp_path / "not-yet-made"  # nothing creates a SQLite file that makes the folder
    journal = journal_path(home / "ledger.sqlite3")
    writer = writer_for(home, postgres_db)
    try:
        with postgres_db.server.down():
            writer.start()  # no error: serving
            assert not writer.connected
            spent = cloud_record(id="c", time=time.time())
            await writer.write(spent)
            await writer.write(local_record(id="l", time=time.time()))
            with pytest.raises(LedgerUnavailableError, match="2 record"):
                await writer.totals()
            # What the budget is seeded with meanwhile: the spend this daemon journaled.
            assert writer.journaled.spend_by_provider(0.0) == {
                "openai": pytest.approx(spent.cloud_cost_usd)
            }
        await until_stored(postgres_db, ["c", "l"])
        assert (await writer.totals()).requests == 2
    finally:
        writer.close()
    assert journal.stat().st_size == 0


@synchronous
async def test_what_a_previous_daemon_left_in_the_journal_is_synced_once(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    first = writer_for(tmp_path, postgres_db)
    with postgres_db.server.down():
        first.start()
        for i in range(10):
            await first.write(local_record(id=f"r{i}", time=T0 + i))
        first.close()  # stopped while the database was away: all in the journal
    assert len(read_journal(journal_path(tmp_path / "ledger.sqlite3"))) == 10
    # Half of them made it to the database some other way (a commit whose answer was lost).
    store = LedgerStore.open_url(postgres_db.url)
    store.append(read_journal(journal_path(tmp_path / "ledger.sqlite3"))[:5])
    store.close()
    second = writer_for(tmp_path, postgres_db)
    second.start()
    second.close()
    assert ids_in(postgres_db) == sorted(f"r{i}" for i in range(10))


def test_a_daemon_killed_while_the_database_was_away_loses_nothing(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """kill -9 of a daemon whose records wait in its journal: the next start syncs them."""
    path = tmp_path / "ledger.sqlite3"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), postgres_db.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(CHILD.parent)},
    )
    assert child.stdout is not None
    acknowledged: list[str] = []

    def read(count: int) -> None:
        assert child.stdout is not None
        while len(acknowledged) < count:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            acknowledged.append(line.strip())

    try:
        read(100)
        with postgres_db.server.down():
            mark = len(acknowledged)
            read(mark + 200)  # acknowledged while the database is away: journaled
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            rest = child.stdout.read()  # through the same buffer as the lines read so far
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    acknowledged += rest.splitlines()[: rest.count("\n")]  # a torn last line was not printed
    assert child.returncode == -signal.SIGKILL
    assert len(read_journal(journal_path(path))) >= 200
    writer = LedgerWriter(path, retention_days=0, url=postgres_db.url)
    writer.start()
    writer.close()
    held = ids_in(postgres_db)
    assert len(held) == len(set(held)), "a record was stored twice"
    assert set(acknowledged) <= set(held)
    assert journal_path(path).stat().st_size == 0 or not journal_path(path).exists()


@synchronous
async def test_a_record_holding_a_nul_is_stored_and_the_writer_stays_connected(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    writer = writer_for(tmp_path, postgres_db)
    writer.start()
    try:
        # A client asked for the model "gpt\u0000x": PostgreSQL's text cannot hold the NUL.
        await writer.write(refused_record(id="nul", time=T0, model_requested="gpt\x00x"))
        for i in range(3):
            await writer.write(local_record(id=f"after{i}", time=T0 + 1 + i))
        await until_stored(postgres_db, ["nul", "after0", "after1", "after2"])
        assert writer.connected
        assert (await writer.totals()).requests == 4
        recent = await writer.recent(4)
        assert [r.model_requested for r in recent if r.id == "nul"] == ["gpt\ufffdx"]
        assert journal_path(tmp_path / "ledger.sqlite3").stat().st_size == 0
    finally:
        writer.close()


def test_a_journal_holding_a_nul_is_replayed_at_start(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    # Left by an earlier run that could not store it.
    journal = Journal(journal_path(tmp_path / "ledger.sqlite3"))
    journal.append(refused_record(id="nul", time=T0, model_requested="gpt\x00x"))
    journal.append(local_record(id="next", time=T0 + 1))
    journal.close()
    writer = writer_for(tmp_path, postgres_db)
    writer.start()  # raised LedgerError, which stopped `hybrid serve`
    try:
        assert writer.connected
    finally:
        writer.close()
    assert ids_in(postgres_db) == ["next", "nul"]
    assert journal_path(tmp_path / "ledger.sqlite3").stat().st_size == 0


# Records PostgreSQL refuses at every try: a NULL in a NOT NULL column (23502), an integer
# past BIGINT (22003).
REFUSED = [
    pytest.param({"model": None}, id="not-null"),
    pytest.param({"prompt_tokens": 2**63}, id="out-of-range"),
]


@pytest.mark.parametrize("poison", REFUSED)
@synchronous
async def test_a_record_postgresql_refuses_is_set_aside_and_the_writer_goes_on(
    tmp_path: Path,
    postgres_db: PostgresDatabase,
    poison: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    writer = writer_for(tmp_path, postgres_db)
    writer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="hybrid.ledger"):
            writer.write_nowait(local_record(id="before", time=T0))
            writer.write_nowait(local_record(id="poison", time=T0 + 1, **poison))
            writer.write_nowait(local_record(id="after", time=T0 + 2))
            writer.learn_nowait(Label(None, "feedback", False, T0))  # type: ignore[arg-type]
            await until_stored(postgres_db, ["after", "before"])
            await writer.write(local_record(id="later", time=T0 + 3))
            await until_stored(postgres_db, ["after", "before", "later"])
        assert writer.connected  # a refusal is not an outage
        assert [r.id for r in read_journal(rejected_path(path))] == ["poison"]
        assert len(read_entries(rejected_path(path))) == 2
        assert journal_path(path).stat().st_size == 0
        [warning] = [r.getMessage() for r in caplog.records if "record poison" in r.message]
        assert str(rejected_path(path)) in warning and PASSWORD not in warning
        assert not [r for r in caplog.records if "keeping records in" in r.message]
    finally:
        writer.close()


@pytest.mark.parametrize("poison", REFUSED)
def test_a_refused_record_in_the_journal_does_not_hold_up_the_replay(
    tmp_path: Path, postgres_db: PostgresDatabase, poison: dict[str, Any]
) -> None:
    path = tmp_path / "ledger.sqlite3"
    journal = Journal(journal_path(path))  # kept while the database was away
    journal.append(local_record(id="before", time=T0))
    journal.append(local_record(id="poison", time=T0 + 1, **poison))
    journal.append(local_record(id="after", time=T0 + 2))
    journal.close()
    writer = writer_for(tmp_path, postgres_db)
    writer.start()
    try:
        assert writer.connected
    finally:
        writer.close()
    assert ids_in(postgres_db) == ["after", "before"]
    assert [r.id for r in read_journal(rejected_path(path))] == ["poison"]
    assert journal_path(path).stat().st_size == 0
