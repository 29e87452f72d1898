"""The ledger file: schema versions and migrations, WAL, round trips, the queries in SQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_records import T0, cloud_record, lan_record, local_record, refused_record

from hybrid.errors import HybridError
from hybrid.ledger import schema
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import GROUP_BYS, Latency, Totals, grouped

# Version 1 as it shipped, written out by hand so the test does not trust schema.MIGRATIONS.
V1_SCHEMA = """
CREATE TABLE requests (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, time REAL NOT NULL, api TEXT NOT NULL,
    route TEXT NOT NULL, reasons TEXT NOT NULL, verdicts TEXT NOT NULL, score REAL,
    model_requested TEXT, model TEXT NOT NULL, provider TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    tokens_estimated INTEGER NOT NULL, ttft_s REAL, latency_s REAL NOT NULL,
    status TEXT NOT NULL, error TEXT, cloud_cost_usd REAL, counterfactual_model TEXT,
    counterfactual_cost_usd REAL, energy_cost_usd REAL, cost_avoided_usd REAL,
    price_known INTEGER NOT NULL
);
CREATE INDEX requests_time ON requests (time);
INSERT INTO requests VALUES (
    1, 'old', 1790000000.0, 'anthropic', 'cloud', '["explicit:cloud"]', '[]', NULL,
    'claude-haiku-4-5', 'claude-haiku-4-5', 'anthropic', 10, 20, 0, 0.3, 1.5, 'ok', NULL,
    0.00011, NULL, NULL, 0.0, 0.0, 1
);
PRAGMA user_version = 1;
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    opened = LedgerStore.open(tmp_path / "ledger.sqlite3")
    yield opened
    opened.close()


def indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows}


def test_a_new_ledger_is_created_with_its_folder_at_the_current_version_in_wal_mode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "deep" / "folder" / "ledger.sqlite3"
    LedgerStore.open(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == 6
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"requests_time", "requests_provider_time", "requests_id", "signals_model"} <= indexes(
        path
    )


def test_an_empty_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.touch()
    store = LedgerStore.open(path)
    store.append([local_record()])
    assert store.recent(1) == [local_record()]
    store.close()


def test_a_version_1_ledger_is_migrated_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
    store = LedgerStore.open(path)
    [old] = store.records()
    assert (old.id, old.provider, old.leg) == ("old", "anthropic", None)
    assert old.cloud_cost_usd == 0.00011
    store.append([local_record(leg="cascade_local")])
    assert store.recent(1)[0].leg == "cascade_local"
    store.close()
    assert "requests_provider_time" in indexes(path)
    # Opening again finds nothing to do.
    LedgerStore.open(path).close()


# Version 2 rows as version 2 wrote them: a refused request was a failed local (or, at a spend
# cap, cloud) request with provider 'none'; nothing said who decided a route.
V2_ROWS = [
    # (id, route, reason, provider, status, prompt_tokens)
    ("queue-full", "local", "error:rate_limit_exceeded", "none", "error", 40),
    ("unknown-model", "local", "error:model_not_found", "none", "error", 12),
    ("capped", "cloud", "error:insufficient_quota", "none", "error", 30),
    ("cloud-down", "cloud", "error:no_route", "none", "error", 25),
    ("pinned", "local", "explicit:local", "local", "ok", 31),
    ("local-only", "local", "mode:local-only", "local", "ok", 31),
    ("kept-local", "local", "difficulty:0.21<=0.52", "local", "ok", 31),
]


def test_a_version_2_ledger_learns_refusals_and_who_decided_each_route(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA.replace("PRAGMA user_version = 1;", ""))
        conn.execute("DELETE FROM requests")
        conn.execute("ALTER TABLE requests ADD COLUMN leg TEXT")
        for seq, (rid, route, reason, provider, status, prompt) in enumerate(V2_ROWS, 1):
            conn.execute(
                "INSERT INTO requests VALUES (?, ?, ?, 'openai', ?, ?, '[]', NULL, 'hybrid',"
                " 'm', ?, ?, 0, 1, NULL, 0.1, ?, NULL, 0.0, NULL, NULL, 0.0, 0.0, 1, NULL)",
                (seq, rid, T0 + seq, route, json.dumps([reason]), provider, prompt, status),
            )
        conn.execute("PRAGMA user_version = 2")
    store = LedgerStore.open(path)
    try:
        by_id = {record.id: record for record in store.records()}
        totals = store.totals()
        decided = {key: t.requests for key, t, _ in store.grouped("decided")}
    finally:
        store.close()
    refused = {rid for rid, r in by_id.items() if (r.route, r.status) == ("none", "refused")}
    assert refused == {"queue-full", "unknown-model", "capped"}
    assert by_id["queue-full"].prompt_tokens == 0
    assert (by_id["cloud-down"].route, by_id["cloud-down"].status) == ("cloud", "error")
    assert (totals.requests, totals.local, totals.cloud, totals.refused) == (7, 3, 1, 3)
    assert totals.local_share == 0.75
    assert decided == {"none": 4, "router": 1, "client": 1, "mode": 1}


def test_a_ledger_from_a_newer_hybrid_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(HybridError, match=r"schema version 99.*upgrade hybrid"):
        LedgerStore.open(path)


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is no database, just a text file that is long enough" * 20)
    with pytest.raises(HybridError, match=str(path)):
        LedgerStore.open(path)


def test_records_round_trip_newest_first(store: LedgerStore) -> None:
    records = [
        local_record(id="a", time=T0),
        cloud_record(id="b", time=T0 + 1, tokens_estimated=True, error="x", status="error"),
        local_record(id="c", time=T0 + 2, verdicts=(), reasons=(), score=None, ttft_s=None),
        cloud_record(id="d", time=T0 + 3, cache_read_tokens=600, cache_write_tokens=20),
        local_record(id="e", time=T0 + 4, decided="client"),
        refused_record(id="f", time=T0 + 5),
    ]
    store.append(records)
    assert store.recent(10) == records[::-1]
    assert store.recent(1) == [records[-1]]
    assert store.records() == records


def test_totals_respect_the_time_window(store: LedgerStore) -> None:
    store.append([local_record(time=T0 + i) for i in range(10)])
    assert store.totals().requests == 10
    assert store.totals(since=T0 + 3).requests == 7
    assert store.totals(since=T0 + 3, until=T0 + 5).requests == 2


def test_spend_per_provider_and_since(store: LedgerStore) -> None:
    store.append(
        [
            cloud_record(time=T0, cloud_cost_usd=0.5),
            cloud_record(time=T0 + 10, cloud_cost_usd=0.25),
            cloud_record(time=T0 + 10, provider="anthropic", cloud_cost_usd=1.0),
            cloud_record(time=T0 + 10, provider="groq", cloud_cost_usd=None),
            local_record(time=T0 + 10),
        ]
    )
    assert store.spend(T0) == pytest.approx(1.75)
    assert store.spend(T0 + 5, provider="openai") == pytest.approx(0.25)
    assert store.spend_by_provider(T0) == {"openai": 0.75, "anthropic": 1.0}


def test_prune_deletes_only_older_records(store: LedgerStore) -> None:
    store.append([local_record(id=str(i), time=T0 + i) for i in range(5)])
    assert store.prune(T0 + 2) == 2
    assert [r.id for r in store.records()] == ["2", "3", "4"]


def test_latency_percentiles_are_bucket_upper_bounds(store: LedgerStore) -> None:
    store.append([local_record(latency_s=float(i), ttft_s=i / 10) for i in range(1, 21)])
    store.append([local_record(latency_s=500.0, status="error")])
    # Exact: p50 10 s, p95 19 s (bucket up to 20 s, the largest value), TTFT 1.0 and 1.9 s.
    assert store.latency() == Latency(20, 10.0, 20.0, 1.0, 2.0)


# --- the SQL agrees with the in-memory definitions ------------------------------------------

money = st.one_of(st.none(), st.floats(min_value=-1.0, max_value=10.0, allow_nan=False))
records = st.builds(
    lambda base, route_status, **changes: base(
        route=route_status[0], status=route_status[1], **changes
    ),
    st.sampled_from([local_record, cloud_record, lan_record, refused_record]),
    id=st.sampled_from(["a", "b", "c"]),
    time=st.floats(min_value=T0 - 3 * 86_400, max_value=T0 + 3 * 86_400),
    route_status=st.sampled_from(
        [
            ("local", "ok"),
            ("cloud", "ok"),
            ("local", "error"),
            ("cloud", "cancelled"),
            ("lan", "ok"),
            ("lan", "error"),
            ("none", "refused"),
        ]
    ),
    decided=st.sampled_from([None, "router", "client", "mode"]),
    cache_read_tokens=st.integers(0, 1000),
    cache_write_tokens=st.integers(0, 1000),
    leg=st.sampled_from([None, None, "cascade_local", "cascade_cloud"]),
    model=st.sampled_from(["gemma", "gpt-4.1-mini", "claude-haiku-4-5", "gpu-box/qwen"]),
    provider=st.sampled_from(["local", "openai", "anthropic", "gpu-box"]),
    reasons=st.lists(
        st.sampled_from(["difficulty:0.7>0.5", "difficulty:0.1<=0.5", "privacy:email", "x"]),
        max_size=2,
    ).map(tuple),
    prompt_tokens=st.integers(0, 10_000),
    completion_tokens=st.integers(0, 10_000),
    latency_s=st.floats(min_value=0, max_value=100, allow_nan=False),
    ttft_s=st.one_of(st.none(), st.floats(min_value=0, max_value=10, allow_nan=False)),
    cloud_cost_usd=money,
    cost_avoided_usd=money,
)


def assert_same_totals(actual: Totals, expected: Totals) -> None:
    assert actual.to_dict() == {
        key: pytest.approx(value, rel=1e-9, abs=1e-12) for key, value in expected.to_dict().items()
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(records, max_size=25), window=st.sampled_from([None, T0 - 86_400, T0]))
def test_sql_totals_and_groups_agree_with_the_in_memory_fold(
    store: LedgerStore, batch: list[LedgerRecord], window: float | None
) -> None:
    store.prune(float("inf"))
    store.append(batch)
    inside = [r for r in batch if window is None or r.time >= window]
    assert_same_totals(store.totals(since=window), Totals.of(inside))
    assert store.latency(since=window) == Latency.of(inside)
    for by in GROUP_BYS:
        actual, expected = store.grouped(by, since=window), grouped(inside, by)
        assert [key for key, _, _ in actual] == [key for key, _, _ in expected]
        for (_, totals, latency), (_, want_totals, want_latency) in zip(
            actual, expected, strict=True
        ):
            assert_same_totals(totals, want_totals)
            assert latency == want_latency


def test_reasons_and_verdicts_are_stored_as_json(store: LedgerStore, tmp_path: Path) -> None:
    store.append([local_record()])
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
        reasons, verdicts = conn.execute("SELECT reasons, verdicts FROM requests").fetchone()
    assert json.loads(reasons) == ["difficulty:0.21<=0.52"]
    assert json.loads(verdicts)[1]["score"] == 0.21


def test_a_ledger_path_naming_a_folder_is_refused_as_configuration(tmp_path: Path) -> None:
    from hybrid.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        LedgerStore.open(tmp_path)
    assert str(refused.value) == (
        f"ledger.path {tmp_path} is a folder; name the file, e.g. {tmp_path / 'ledger.sqlite3'}"
    )
