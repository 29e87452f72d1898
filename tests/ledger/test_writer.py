"""The writer: a journal that survives a SIGKILL, a thread that group-commits to SQLite, and
records SQLite refuses set aside without holding up the rest."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from ledger_records import T0, local_record

from hybrid.errors import HybridError
from hybrid.ledger.journal import (
    Journal,
    journal_path,
    read_entries,
    read_journal,
    rejected_path,
    set_aside,
)
from hybrid.ledger.learning import Label
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.writer import LedgerWriter

CHILD = Path(__file__).with_name("ledger_child.py")


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def stored_ids(path: Path) -> list[str]:
    store = LedgerStore.open(path)
    try:
        return [record.id for record in store.records()]
    finally:
        store.close()


def recovered_ids(path: Path) -> list[str]:
    """What the ledger holds once a new writer has started (and read the journal)."""
    writer = LedgerWriter(path, retention_days=0)
    writer.start()
    writer.close()
    return stored_ids(path)


class GatedStore(LedgerStore):
    """A real store whose first append says it started, then waits for the test's gate."""

    def __init__(self, store: LedgerStore) -> None:
        super().__init__(store._conn, store.path)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.batches: list[int] = []

    def append(self, records: list[LedgerRecord], *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.entered.set()
        self.gate.wait(timeout=5)
        self.batches.append(len(records))
        super().append(records, *args, **kwargs)


class FailingStore(LedgerStore):
    def append(self, records: object, *args: Any, **kwargs: Any) -> None:
        raise HybridError("disk full")


class BuggyStore(LedgerStore):
    """Fails its first append with an unexpected exception, then works."""

    failed = False

    def append(self, records: list[LedgerRecord], *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if not self.failed:
            self.failed = True
            raise TypeError("not JSON serializable")
        super().append(records, *args, **kwargs)


@synchronous
async def test_concurrent_writes_are_all_readable_after_close(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    writer = LedgerWriter(path, retention_days=0)
    writer.start()
    await asyncio.gather(*(writer.write(local_record(id=str(i))) for i in range(300)))
    writer.close()
    assert sorted(stored_ids(path), key=int) == [str(i) for i in range(300)]
    assert writer.transactions < 300


@synchronous
async def test_writes_queued_during_a_commit_share_the_next_transaction(tmp_path: Path) -> None:
    stores: list[GatedStore] = []

    def open_gated(path: Path) -> LedgerStore:
        stores.append(GatedStore(LedgerStore.open(path)))
        return stores[-1]

    writer = LedgerWriter(tmp_path / "ledger.sqlite3", retention_days=0, open_store=open_gated)
    writer.start()
    first = asyncio.create_task(writer.write(local_record(id="first")))
    gated = stores[0]
    assert await asyncio.to_thread(gated.entered.wait, 5)  # the first commit is under way
    rest = [asyncio.create_task(writer.write(local_record(id=str(i)))) for i in range(99)]
    await asyncio.sleep(0)  # every task queues its record and waits
    gated.gate.set()
    await asyncio.gather(first, *rest)
    writer.close()
    assert gated.batches == [1, 99]
    assert writer.transactions == 2


@synchronous
async def test_a_record_is_journaled_when_its_write_returns_and_committed_soon_after(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    writer = LedgerWriter(path, retention_days=0)
    writer.start()
    await writer.write(local_record(id="now"))
    for _ in range(500):
        if [r.id for r in await writer.recent(5)] == ["now"]:
            break
        await asyncio.sleep(0.01)
    assert (await writer.totals()).requests == 1
    # Everything in the journal is committed, so the journal is empty again.
    assert journal_path(path).stat().st_size == 0
    writer.close()


def test_what_a_killed_server_left_in_the_journal_is_committed_once_at_the_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = LedgerStore.open(path)
    store.append([local_record(id="committed")])
    store.close()
    journal = Journal(journal_path(path))
    for record_id in ("committed", "only-journaled"):  # the first made it to SQLite too
        journal.append(local_record(id=record_id))
    journal.close()
    with journal_path(path).open("ab") as torn:
        torn.write(b'{"id": "half a li')  # a crash of the machine mid-write

    assert sorted(recovered_ids(path)) == ["committed", "only-journaled"]
    assert not journal_path(path).exists() or journal_path(path).stat().st_size == 0
    assert sorted(recovered_ids(path)) == ["committed", "only-journaled"]


@synchronous
async def test_write_nowait_is_flushed_by_close(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    writer = LedgerWriter(path, retention_days=0)
    writer.start()
    writer.write_nowait(local_record(id="last"))
    writer.close()
    writer.close()  # twice is fine
    assert stored_ids(path) == ["last"]


@synchronous
async def test_records_whose_commit_failed_stay_journaled_for_the_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    writer = LedgerWriter(
        path,
        retention_days=0,
        open_store=lambda path: FailingStore(LedgerStore.open(path)._conn, path),
    )
    writer.start()
    for i in range(3):
        await writer.write(local_record(id=str(i)))
    writer.close()
    assert stored_ids(path) == []
    assert not rejected_path(path).exists()  # a failure that is not a refusal sets none aside
    assert sorted(recovered_ids(path)) == ["0", "1", "2"]


@synchronous
async def test_an_unexpected_failure_keeps_that_batch_journaled_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    stores: list[BuggyStore] = []

    def open_buggy(path: Path) -> LedgerStore:
        stores.append(BuggyStore(LedgerStore.open(path)._conn, path))
        return stores[-1]

    writer = LedgerWriter(path, retention_days=0, open_store=open_buggy, commit_interval_s=0.01)
    writer.start()
    await writer.write(local_record(id="first"))
    for _ in range(500):  # the first batch fails alone
        if stores[0].failed:
            break
        await asyncio.sleep(0.01)
    assert stores[0].failed and writer.transactions == 0
    await writer.write(local_record(id="kept"))
    writer.close()
    assert "kept" in stored_ids(path)
    assert sorted(recovered_ids(path)) == ["first", "kept"]


@synchronous
async def test_writing_to_a_writer_that_is_not_running_says_so(tmp_path: Path) -> None:
    writer = LedgerWriter(tmp_path / "ledger.sqlite3", retention_days=0)
    with pytest.raises(HybridError, match="not running"):
        await writer.write(local_record())
    writer.start()
    writer.close()
    with pytest.raises(HybridError, match="not running"):
        writer.write_nowait(local_record())


def test_records_past_the_retention_period_are_deleted_at_start(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = LedgerStore.open(path)
    store.append([local_record(id="old", time=T0 - 31 * 86_400), local_record(id="new", time=T0)])
    store.close()
    writer = LedgerWriter(path, retention_days=30, clock=lambda: T0)
    writer.start()
    writer.close()
    assert stored_ids(path) == ["new"]


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = LedgerStore.open(path)
    store.append([local_record(id="ancient", time=0.0)])
    store.close()
    writer = LedgerWriter(path, retention_days=0, clock=lambda: T0)
    writer.start()
    writer.close()
    assert stored_ids(path) == ["ancient"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_sigkill_under_load_loses_no_record_whose_write_returned(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(CHILD.parent)},
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < 200:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.append(line.strip())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        rest, errors = child.communicate(timeout=10)
    acknowledged += rest.split()
    assert len(acknowledged) >= 200, errors
    assert child.returncode == -signal.SIGKILL
    stored = set(recovered_ids(path))
    assert [i for i in acknowledged if i not in stored] == []


@synchronous
async def test_close_waits_for_a_read_in_flight(tmp_path: Path) -> None:
    # Closing the read connection while another thread queries it crashes SQLite: close()
    # waits for the read, which returns its result.
    writer = LedgerWriter(tmp_path / "ledger.sqlite3", retention_days=0)
    writer.start()
    await writer.write(local_record(id="a"))
    started, release = threading.Event(), threading.Event()

    def slow(store: LedgerStore) -> list[str]:
        started.set()
        release.wait(timeout=30)
        return [record.id for record in store.recent(5)]

    reading = asyncio.ensure_future(writer.read(slow))
    await asyncio.to_thread(started.wait, 30)
    closing = threading.Thread(target=writer.close)
    closing.start()
    # Given time to finish, close() is still waiting for the read (it holds the reader).
    await asyncio.to_thread(closing.join, 1.0)
    assert closing.is_alive()
    release.set()
    assert await reading == ["a"]
    await asyncio.to_thread(closing.join, 30)
    assert not closing.is_alive()
    with pytest.raises(HybridError, match=r"not running|not open"):
        await writer.read(lambda store: store.recent(1))


# Records SQLite refuses at every try: a NULL where the schema says NOT NULL, an integer past
# 64 bits (the sqlite3 module cannot bind it).
REFUSED = [
    pytest.param({"model": None}, id="not-null"),
    pytest.param({"prompt_tokens": 2**63}, id="past-64-bits"),
]


def rejected_ids(path: Path) -> list[str]:
    return [record.id for record in read_journal(rejected_path(path))]


@pytest.mark.parametrize("poison", REFUSED)
@synchronous
async def test_a_record_sqlite_refuses_is_set_aside_and_the_records_around_it_are_written(
    tmp_path: Path, poison: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.sqlite3"
    writer = LedgerWriter(path, retention_days=0, commit_interval_s=0.01)
    writer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="hybrid.ledger"):
            # One batch: the refused record between two good ones, a label after them.
            writer.write_nowait(local_record(id="before"))
            writer.write_nowait(local_record(id="poison", **poison))
            writer.write_nowait(local_record(id="after"))
            writer.learn_nowait(Label("after", "feedback", True, T0))
            writer.learn_nowait(Label(None, "feedback", False, T0))  # type: ignore[arg-type]
            assert sorted(r.id for r in await writer.recent(10)) == ["after", "before"]
        await writer.write(local_record(id="later"))
        assert (await writer.totals()).requests == 3
        labels = await writer.read(lambda store: store.labels())
        assert [label.request_id for label in labels] == ["after"]
        # Set aside, not lost; the journal no longer holds it.
        assert rejected_ids(path) == ["poison"]
        assert len(read_entries(rejected_path(path))) == 2  # and the label without a request
        assert journal_path(path).stat().st_size == 0
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("record poison" in w and str(rejected_path(path)) in w for w in warnings)
    finally:
        writer.close()


@pytest.mark.parametrize("poison", REFUSED)
def test_a_journal_holding_a_refused_record_no_longer_stops_the_start(
    tmp_path: Path, poison: dict[str, Any]
) -> None:
    path = tmp_path / "ledger.sqlite3"
    journal = Journal(journal_path(path))  # left by a run that could not store the middle one
    for record_id in ("before", "poison", "after"):
        journal.append(local_record(id=record_id, **(poison if record_id == "poison" else {})))
    journal.close()
    assert sorted(recovered_ids(path)) == ["after", "before"]  # start() raised LedgerError
    assert rejected_ids(path) == ["poison"]
    assert journal_path(path).stat().st_size == 0


def test_an_entry_set_aside_twice_is_kept_once(tmp_path: Path) -> None:
    # A crash after setting an entry aside, before the journal was emptied, replays it.
    rejected = rejected_path(tmp_path / "ledger.sqlite3")
    record = local_record(id="poison", model=None)
    assert set_aside(rejected, record) is True
    assert set_aside(rejected, record) is False
    assert set_aside(rejected, local_record(id="other", model=None)) is True
    assert [r.id for r in read_journal(rejected)] == ["poison", "other"]
