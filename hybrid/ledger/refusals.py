"""What the ledger's writer does with entries the database refuses for their data.

An outage is not a refusal.  When the database answers but refuses a batch for its data (a
value out of range, a broken constraint, a type the driver cannot send: a
:class:`~hybrid.errors.LedgerRefusedError`), waiting would not help.  :func:`append_or_set_aside`
then writes that batch one entry at a time, so the good ones land, and sets each entry refused
on its own aside in ``<ledger>.rejected`` beside the journal
(:func:`~hybrid.ledger.journal.set_aside`, flushed to the disk before the journal is emptied),
with a warning naming the file; then the writer goes on.  This holds for SQLite and PostgreSQL
alike, for new records and for those replayed from the journal at start or after an outage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hybrid.errors import LedgerRefusedError
from hybrid.ledger.journal import journal_path, rejected_path, set_aside
from hybrid.ledger.learning import Learned, Signal
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore

log = logging.getLogger(__name__)


def append_or_set_aside(
    store: LedgerStore,
    records: Sequence[LedgerRecord],
    learned: Sequence[Learned],
    *,
    ledger: Path,
    keep_signals: int | None,
    only_new: bool,
) -> int:
    """Store a batch in one transaction (see :meth:`LedgerStore.append`); when the database
    refuses it for its data, store its entries one at a time and set aside those refused on
    their own.

    Args:
        store: The open ledger.
        records: Request records.
        learned: Signals and labels, in written order.
        ledger: The ledger file, beside which the journal and the rejected file are kept.
        keep_signals: See :meth:`LedgerStore.append`.
        only_new: See :meth:`LedgerStore.append`.

    Returns:
        How many records were stored.

    Raises:
        HybridError: Anything but a refusal (the database is unavailable, the disk full, a
            rejected entry cannot be set aside): what was not stored yet is in the journal.
        Exception: An unexpected failure, likewise.
    """
    try:
        return store.append(records, learned, keep_signals=keep_signals, only_new=only_new)
    except LedgerRefusedError as exc:
        if len(records) + len(learned) == 1:
            _set_aside(records[0] if records else learned[0], exc, ledger)
            return 0
        log.info("%s; writing that batch one entry at a time", exc)

    def one(records: Sequence[LedgerRecord], learned: Sequence[Learned]) -> int:
        return append_or_set_aside(
            store, records, learned, ledger=ledger, keep_signals=keep_signals, only_new=only_new
        )

    stored = sum(one([record], []) for record in records)
    for entry in learned:  # in order: a later signal or label replaces an earlier one
        one([], [entry])
    return stored


def _set_aside(entry: LedgerRecord | Learned, exc: LedgerRefusedError, ledger: Path) -> None:
    """Move an entry the database refused out of the way of the rest, into the rejected file
    beside the journal, and say so."""
    path = rejected_path(ledger)
    if not set_aside(path, entry):
        return  # set aside (and said) before a crash left it in the journal as well
    log.warning(
        "%s; %s is refused for good and set aside in %s, so that the entries after it are "
        "written: to store it after all, correct its line there and, with hybrid stopped, "
        "append the line to %s (it is written at the next start)",
        exc,
        describe(entry),
        path,
        journal_path(ledger),
    )


def describe(entry: LedgerRecord | Learned) -> str:
    """How a log line names an entry: ``record 3f2a``, ``the shadow label of request 3f2a``."""
    if isinstance(entry, LedgerRecord):
        return f"record {entry.id}" + (f" ({entry.leg})" if entry.leg else "")
    if isinstance(entry, Signal):
        return f"the signal of request {entry.request_id}"
    return f"the {entry.source} label of request {entry.request_id}"
