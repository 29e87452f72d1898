"""A shared ledger whose database stops answering, against a real server: the ledger's own
connections (the writer's, the reader's, a store's as ``hybrid stats`` opens it) are cut after
the answer timeout, the database is reported unavailable as when it is down, the writer keeps
the records in its journal, and everything is stored once it answers again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from ledger_records import T0, local_record
from postgres import PASSWORD, PostgresDatabase, eventually

from hybrid.errors import LedgerUnavailableError
from hybrid.ledger.journal import journal_path, read_journal, rejected_path
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.writer import LedgerWriter

T = TypeVar("T")

LIMIT_S = 0.5
"""The answer timeout of these tests (35 s for a daemon's ledger)."""

CUT = r"did not answer within 0\.5 s"
"""What the error of a call cut at :data:`LIMIT_S` says."""

LEDGER = "hybrid ledger"
"""How the ledger's connections name themselves (the shared budget's are ``hybrid``)."""


async def eventually_async(call: Callable[[], Awaitable[T]], tries: int = 20) -> T:
    """:func:`eventually` for a coroutine."""
    for _ in range(tries - 1):
        try:
            return await call()
        except LedgerUnavailableError:
            await asyncio.sleep(0.05)
    return await call()


def ids_in(db: PostgresDatabase) -> list[str]:
    """Every record id the database holds, one per stored record (read on a connection of the
    test's own)."""
    with db.connect() as conn:
        return sorted(str(row[0]) for row in conn.execute("SELECT id FROM requests"))


async def until_stored(db: PostgresDatabase, expected: list[str], tries: int = 600) -> None:
    for _ in range(tries):
        held = await asyncio.to_thread(ids_in, db)
        assert len(held) <= len(expected), "a record was stored twice"
        if held == sorted(expected):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(held)} of {len(expected)} records stored")


def test_a_frozen_database_cuts_a_writer_and_its_reads_and_loses_nothing(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    asyncio.run(_frozen_writer(tmp_path, postgres_db))


async def _frozen_writer(tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    path = tmp_path / "ledger.sqlite3"
    writer = LedgerWriter(
        path,
        retention_days=0,
        url=postgres_db.url,
        commit_interval_s=0.02,
        retry_s=(0.05, 0.1),
        answer_timeout_s=LIMIT_S,
    )
    writer.start()
    try:
        await writer.write(local_record(id="before", time=T0))
        assert (await eventually_async(writer.totals)).requests == 1
        # Both of the writer's connections (its own and the reader's) stop answering: without
        # a limit, the commit below and the stats read wait until the test's guard ends it.
        with postgres_db.frozen(application_name=LEDGER):
            await writer.write(local_record(id="during", time=T0 + 1))
            with pytest.raises(LedgerUnavailableError, match=CUT) as cut:
                await writer.totals()
            message = str(cut.value)
            assert "wait in the journal" in message and PASSWORD not in message
        # The cut commit stayed in the journal and is stored once, on a new connection.
        await until_stored(postgres_db, ["before", "during"])
        assert (await eventually_async(writer.totals)).requests == 2
    finally:
        writer.close()
    assert read_journal(journal_path(path)) == []
    assert not rejected_path(path).exists()  # no answer is not a refusal


def test_a_frozen_database_cuts_a_stats_read_and_a_new_connection_reads_again(
    postgres_db: PostgresDatabase,
) -> None:
    seed = LedgerStore.open_url(postgres_db.url)
    seed.append([local_record(id="a", time=T0)])
    seed.close()
    store = eventually(lambda: LedgerStore.open_url(postgres_db.url, answer_timeout_s=LIMIT_S))
    try:
        with (
            postgres_db.frozen(application_name=LEDGER),
            pytest.raises(LedgerUnavailableError, match=CUT) as cut,
        ):
            store.totals()  # what `hybrid stats` and /v1/hybrid/stats read
        assert "(read)" in str(cut.value) and PASSWORD not in str(cut.value)
    finally:
        store.close()

    def read_again() -> int:
        store = LedgerStore.open_url(postgres_db.url, answer_timeout_s=LIMIT_S)
        try:
            return store.totals().requests
        finally:
            store.close()

    assert eventually(read_again) == 1


def test_a_frozen_database_cuts_a_write_and_nothing_of_it_is_stored(
    postgres_db: PostgresDatabase,
) -> None:
    store = eventually(lambda: LedgerStore.open_url(postgres_db.url, answer_timeout_s=LIMIT_S))
    try:
        with (
            postgres_db.frozen(application_name=LEDGER),
            pytest.raises(LedgerUnavailableError, match=CUT),
        ):
            store.append([local_record(id="cut", time=T0)])
    finally:
        store.close()
    assert ids_in(postgres_db) == []
