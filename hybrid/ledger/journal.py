"""The ledger's journal: records made durable before SQLite has them.

A record is appended to ``<ledger>.pending`` as one JSON line, in a single ``write`` system call,
before its response ends.  Once that call returns the line is in the kernel's page cache, and a
SIGKILL of the server cannot lose it: only the machine itself going down could.  The writer
thread moves records into SQLite in batches and empties the journal whenever everything in it
has been committed; at start-up, whatever a killed server left in it is committed first.

This keeps the event loop's share of a record to a JSON dump and one append, with no wait on
another thread or on SQLite.  Signals and labels (:mod:`hybrid.ledger.learning`) travel the same
way, as lines with ``"kind": "signal"`` or ``"kind": "label"``.

An entry the database refuses for its data (a value out of range, a broken constraint) would
be refused at every try: the writer sets it aside (:func:`set_aside`) in ``<ledger>.rejected``
(:func:`rejected_path`), in the journal's own format, so that a person can correct it and move
its line back to the journal.

:class:`JournalSpend` reads the cloud spend of the records a journal holds, what a daemon whose
shared ledger is unavailable knows of its spend.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hybrid.errors import LedgerError
from hybrid.ledger.learning import Label, Learned, Signal
from hybrid.ledger.record import LedgerRecord

log = logging.getLogger(__name__)


def journal_path(ledger: Path) -> Path:
    """The journal that belongs to a ledger file."""
    return ledger.with_name(ledger.name + ".pending")


def rejected_path(ledger: Path) -> Path:
    """The file that keeps what the database refused of a ledger's journal."""
    return ledger.with_name(ledger.name + ".rejected")


def set_aside(path: Path, entry: LedgerRecord | Learned) -> bool:
    """Append an entry the database refused to a rejected-entries file, as a journal line, and
    flush it to the disk: once this returns, the entry may leave the journal.

    Args:
        path: The file (see :func:`rejected_path`), created with its folder when missing.
        entry: The record, signal or label.

    Returns:
        False when the file held the same line already (an entry set aside before a crash
        kept it in the journal too), True otherwise.

    Raises:
        LedgerError: The file cannot be read or written; the entry stays in the journal.
    """
    line = orjson.dumps(entry.to_dict()) + b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b") as file:
            file.seek(0)
            if line in file.read().splitlines(keepends=True):
                return False
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise LedgerError(
            f"cannot set a refused ledger entry aside in {path}: {exc.strerror}; it stays in "
            f"the journal"
        ) from exc
    return True


class Journal:
    """An append-only file of ledger records, one JSON line each.

    Args:
        path: The journal file (created, with its folder, when missing).

    Raises:
        LedgerError: The file cannot be opened for appending.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # a shared ledger creates no file
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LedgerError(
                f"cannot open the ledger journal {path}: {exc.strerror}; check that the data "
                f"folder is writable"
            ) from exc

    def append(self, record: LedgerRecord, data: Mapping[str, Any] | None = None) -> None:
        """Make one record durable (against a crash of this process).

        Args:
            record: The record.
            data: ``record.to_dict()``, when the caller has it already.

        Raises:
            LedgerError: The write failed (disk full, ...).
        """
        self._write(record.to_dict() if data is None else data)

    def append_learned(self, entry: Learned) -> None:
        """Make one signal or label durable (against a crash of this process).

        Raises:
            LedgerError: The write failed (disk full, ...).
        """
        self._write(entry.to_dict())

    def _write(self, data: Mapping[str, Any]) -> None:
        line = orjson.dumps(data) + b"\n"
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            raise LedgerError(f"cannot append to the ledger journal {self.path}: {exc}") from exc
        if written != len(line):
            raise LedgerError(f"the ledger journal {self.path} took a partial write (disk full?)")

    def clear(self) -> None:
        """Empty the journal: everything in it is committed to SQLite."""
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_journal(path: Path) -> Sequence[LedgerRecord]:
    """The records a journal holds, in order; a line that cannot be read is skipped and logged.

    Args:
        path: The journal file; a missing file holds nothing.
    """
    return [entry for entry in read_entries(path) if isinstance(entry, LedgerRecord)]


def read_entries(path: Path) -> Sequence[LedgerRecord | Learned]:
    """The records, signals and labels a journal holds, in order (see :func:`read_journal`).

    Args:
        path: The journal file; a missing file holds nothing.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger journal {path}: {exc.strerror}") from exc
    records: list[LedgerRecord | Learned] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(_entry(json.loads(line)))
        except (ValueError, TypeError, KeyError) as exc:
            # Only a crash of the machine mid-write leaves a torn line; the rest still counts.
            log.warning("skipping line %d of the ledger journal %s: %s", number, path, exc)
    return records


def _entry(data: Any) -> LedgerRecord | Learned:
    if not isinstance(data, dict):
        raise ValueError("a journal line holds a JSON object")
    kind = data.get("kind")
    if kind == "signal":
        return Signal.from_dict(data)
    if kind == "label":
        return Label.from_dict(data)
    return LedgerRecord.from_dict(data)


@dataclass(frozen=True)
class JournalSpend:
    """The cloud spend of the records a journal holds: what a daemon whose shared ledger is
    unavailable knows of its spend (a ``SpendSource`` for the budget's seed)."""

    path: Path

    def spend_by_provider(self, since: float) -> dict[str, float]:
        """Return the journaled cloud spend since a time of each provider that spent any."""
        spend: dict[str, float] = {}
        for record in read_journal(self.path):
            if record.time >= since and record.provider != "local" and record.cloud_cost_usd:
                spend[record.provider] = spend.get(record.provider, 0.0) + record.cloud_cost_usd
        return spend
