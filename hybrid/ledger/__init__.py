"""The ledger: one record per request, its cost, and the totals and budgets built on them.

```
record.py    LedgerRecord / VerdictRecord: the request_finished event, as stored
prices.py    PriceTable: shipped prices (data/prices.json) plus the user's overrides
costing.py   Costing: cloud cost, local energy cost, counterfactual and cost avoided
totals.py    Totals / Latency: the definitions, folded in memory
learning.py  Signal / Label: what learning from traffic keeps (no prompt text)
learning_tables.py  their tables, and the SQL that writes and reads them
histogram.py Histogram: fixed latency buckets, percentiles read from them
rollup.py    the hourly and daily rollups every stats query reads, and their SQL
rollup_query.py  reading a window of them: its rows, totals and latency percentiles
dialect.py   Database / Dialect: one connection type over SQLite and PostgreSQL (ledger.url)
schema.py    the schema (SQLite and PostgreSQL) and its migrations
store.py     LedgerStore: append and query the file (the same totals, in SQL)
journal.py   the writer's journal, and the file entries the database refuses are set aside in
writer.py    LedgerWriter: a writer thread with group commit, awaited from the event loop
refusals.py  the writer's batches, written one entry at a time when the database refuses one
pg.py        a PostgreSQL ledger's connection (ledger.url), its errors and migrations
pg_watchdog.py  Watchdog: cuts a PostgreSQL call the database does not answer in time
pg_budget.py SharedBudget: the fleet's budget in PostgreSQL (fleet_budget.py runs it)
budget_tables.py  the shared budget's tables in PostgreSQL, and its statements
fleet_writer.py  FleetBudgetWriter: the thread that writes a daemon's changes to that budget
budget_carry.py  a SQLite ledger's spend of the day and month, counted once in that budget
budget.py    Budget: today's and this month's spend against the caps
```

Data flows one way: settings -> prices/costing -> record -> store/writer -> budget, totals.
Nothing here imports the server, the router or a backend.
"""

from __future__ import annotations

from hybrid.ledger.budget import Budget, BudgetState, SpendSeed
from hybrid.ledger.costing import Costing, Costs
from hybrid.ledger.prices import Price, PriceTable
from hybrid.ledger.record import LedgerRecord, VerdictRecord
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import GroupBy, Latency, Totals
from hybrid.ledger.writer import LedgerWriter

__all__ = [
    "Budget",
    "BudgetState",
    "Costing",
    "Costs",
    "GroupBy",
    "Latency",
    "LedgerRecord",
    "LedgerStore",
    "LedgerWriter",
    "Price",
    "PriceTable",
    "SpendSeed",
    "Totals",
    "VerdictRecord",
]
