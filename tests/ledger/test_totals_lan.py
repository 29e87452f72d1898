"""LAN answers in the totals: counted apart, saving like local answers, never cloud spend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_records import T0, cloud_record, lan_record, local_record, refused_record

from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import Totals, grouped


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    opened = LedgerStore.open(tmp_path / "ledger.sqlite3")
    yield opened
    opened.close()


def mixed() -> list[LedgerRecord]:
    return [
        local_record(id="l1"),
        lan_record(id="n1", cache_read_tokens=700),  # the server's own cache: not prefill saved
        lan_record(id="n2", time=T0 + 1),
        lan_record(id="n3", time=T0 + 2, status="error", error="gpu-box: connection reset"),
        cloud_record(id="c1", time=T0 + 3),
        refused_record(id="r1", time=T0 + 4),
    ]


def test_lan_answers_are_counted_apart_and_save_without_spending() -> None:
    totals = Totals.of(mixed())

    assert (totals.requests, totals.local, totals.lan, totals.cloud) == (6, 1, 3, 1)
    assert (totals.refused, totals.errors) == (1, 1)
    assert totals.requests == totals.local + totals.lan + totals.cloud + totals.refused
    assert totals.cloud_spend_usd == pytest.approx(0.0012)  # the cloud answer alone
    assert totals.cost_avoided_usd == pytest.approx(0.0000312 + 3 * 0.00105)
    assert totals.prefill_saved_tokens == 0
    # Of five answered requests, one ran here, three on the LAN, one in the cloud.
    assert totals.local_share == pytest.approx(1 / 5)
    assert totals.off_cloud_share == pytest.approx(4 / 5)
    assert totals.to_dict()["lan"] == 3
    assert totals.to_dict()["off_cloud_share"] == pytest.approx(0.8)


def test_without_lan_answers_the_shares_agree() -> None:
    totals = Totals.of([local_record(), local_record(id="b"), cloud_record()])

    assert totals.lan == 0
    assert totals.local_share == totals.off_cloud_share == pytest.approx(2 / 3)
    assert Totals().off_cloud_share == 0.0


def test_plus_adds_the_lan_counts() -> None:
    records = mixed()
    added = Totals.of(records[:2]).plus(Totals.of(records[2:]))
    assert added.lan == 3
    assert added.to_dict() == pytest.approx(Totals.of(records).to_dict())


def test_grouped_by_route_gives_lan_a_group_of_its_own() -> None:
    groups = {key: totals for key, totals, _ in grouped(mixed(), "route")}

    assert set(groups) == {"local", "lan", "cloud", "none"}
    assert groups["lan"].lan == groups["lan"].requests == 3
    assert groups["lan"].cloud_spend_usd == 0.0


def test_the_stores_sql_counts_lan_answers_as_the_in_memory_fold_does(
    store: LedgerStore,
) -> None:
    records = mixed()
    store.append(records)

    assert store.totals().to_dict() == pytest.approx(Totals.of(records).to_dict())
    assert store.totals().lan == 3
    assert store.totals(since=T0 + 1).lan == 2
    sql = {key: totals.lan for key, totals, _ in store.grouped("route")}
    assert sql == {"lan": 3, "local": 0, "cloud": 0, "none": 0}


def test_a_lan_server_never_shows_up_in_cloud_spend(store: LedgerStore) -> None:
    store.append(mixed())

    assert store.spend(T0) == pytest.approx(0.0012)
    assert store.spend(T0, provider="gpu-box") == 0.0
    assert store.spend_by_provider(T0) == pytest.approx({"openai": 0.0012})
