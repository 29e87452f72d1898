"""The raw-record path: how the ledger answered the benchmark's queries before rollups.

Totals and groups are computed in SQL over every record of the window, and latency percentiles
from every latency read into Python.  The ledger benchmark runs these beside the rollup path, in
the same run, as its baseline; the SQL is SQLite's (``TOTAL``, ``json_extract`` and the
``reason_label``/``day_label`` functions :mod:`hybrid.ledger.schema` registers), so it runs on
SQLite ledgers only.
"""

from __future__ import annotations

from typing import Any

from hybrid.ledger.record import NOT_REQUESTS
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import Latency

_IS_REQUEST = f"(leg IS NULL OR leg NOT IN ({', '.join(repr(leg) for leg in NOT_REQUESTS)}))"
_OLD_TOTALS = f"""
    COUNT(*) FILTER (WHERE {_IS_REQUEST}),
    COUNT(*) FILTER (WHERE {_IS_REQUEST} AND route = 'local'),
    COUNT(*) FILTER (WHERE {_IS_REQUEST} AND route = 'cloud'),
    COUNT(*) FILTER (WHERE {_IS_REQUEST} AND status = 'error'),
    COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), TOTAL(cloud_cost_usd),
    TOTAL(cost_avoided_usd), COUNT(*) FILTER (WHERE {_IS_REQUEST} AND status = 'refused'),
    COALESCE(SUM(cache_read_tokens) FILTER (WHERE route = 'local'), 0),
    COUNT(*) FILTER (WHERE {_IS_REQUEST} AND route = 'lan')
"""
_OLD_KEYS = {
    "model": "model",
    "reason": "reason_label(json_extract(reasons, '$[0]'))",
    "day": "day_label(time)",
    "instance": "instance",
}


def _where(since: float | None) -> tuple[str, list[Any]]:
    return ("WHERE time >= ?", [since]) if since is not None else ("", [])


def old_totals(store: LedgerStore, since: float | None) -> Any:
    where, params = _where(since)
    return store._rows(f"SELECT {_OLD_TOTALS} FROM requests {where}", params)


def old_latency(store: LedgerStore, since: float | None) -> Latency:
    where, params = _where(since)
    where = f"{where} {'AND' if where else 'WHERE'} {_IS_REQUEST} AND status = 'ok'"
    rows = store._rows(f"SELECT latency_s, ttft_s FROM requests {where}", params)
    return Latency.from_samples([r[0] for r in rows], [r[1] for r in rows if r[1] is not None])


def old_grouped(store: LedgerStore, by: str, since: float | None) -> Any:
    key = _OLD_KEYS[by]
    where, params = _where(since)
    totals = store._rows(
        f"SELECT {key} AS k, {_OLD_TOTALS} FROM requests {where} GROUP BY k", params
    )
    where = f"{where} {'AND' if where else 'WHERE'} {_IS_REQUEST} AND status = 'ok'"
    samples: dict[str, list[tuple[float, float | None]]] = {}
    for group, latency, ttft in store._rows(
        f"SELECT {key}, latency_s, ttft_s FROM requests {where}", params
    ):
        samples.setdefault(group, []).append((latency, ttft))
    return totals, {
        k: Latency.from_samples([a for a, _ in v], [b for _, b in v if b is not None])
        for k, v in samples.items()
    }


def old_newest(store: LedgerStore) -> Any:
    return store._rows("SELECT instance, MAX(time) FROM requests GROUP BY instance", [])


def old_spend_by_provider(store: LedgerStore, since: float) -> dict[str, float]:
    rows = store._rows(
        "SELECT provider, TOTAL(cloud_cost_usd) FROM requests WHERE time >= ? "
        "AND provider != 'local' GROUP BY provider",
        [since],
    )
    return {provider: float(usd) for provider, usd in rows if usd}


class OldSpend:
    """The budget's spend source before rollups: each provider's spend summed over its records."""

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def spend_by_provider(self, since: float) -> dict[str, float]:
        return old_spend_by_provider(self._store, since)
