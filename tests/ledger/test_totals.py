"""Totals and percentiles, as defined in hybrid.ledger.totals."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_records import T0, cloud_record, local_record, refused_record

from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import Latency, Totals, grouped, percentile, reason_label


def test_a_cascade_that_escalated_is_one_request_whose_two_legs_both_count_tokens() -> None:
    discarded = local_record(id="c", leg="cascade_local", cost_avoided_usd=-0.0001)
    answer = cloud_record(id="c", leg="cascade_cloud")
    totals = Totals.of([discarded, answer])
    assert (totals.requests, totals.local, totals.cloud) == (1, 0, 1)
    assert totals.prompt_tokens == discarded.prompt_tokens + answer.prompt_tokens
    assert totals.cost_avoided_usd == pytest.approx(-0.0001)
    assert totals.cloud_spend_usd == pytest.approx(0.0012)


def test_a_local_shadow_answer_is_no_request_and_no_avoided_spend_in_memory_and_in_sql(
    tmp_path: Path,
) -> None:
    # An escalated request, answered again by the local model in the background: its leg
    # costs electricity, avoids nothing (it answered no client) and is no request.
    answer = cloud_record(id="e")
    shadow = local_record(
        id="e",
        leg="local_shadow",
        reasons=("local:shadow",),
        counterfactual_model=None,
        counterfactual_cost_usd=None,
        energy_cost_usd=0.0003,
        cost_avoided_usd=-0.0003,
    )
    kept = local_record(id="k")
    records = [answer, shadow, kept]
    store = LedgerStore.open(tmp_path / "ledger.sqlite3")
    try:
        store.append(records)
        for totals in (Totals.of(records), store.totals()):
            assert (totals.requests, totals.local, totals.cloud) == (2, 1, 1)
            assert totals.local_share == 0.5
            assert totals.cloud_spend_usd == pytest.approx(0.0012)
            assert totals.cost_avoided_usd == pytest.approx(0.0000312 - 0.0003)
            assert totals.prompt_tokens == 1000 + 31 + 31
        for groups in (grouped(records, "route"), store.grouped("route")):
            local = {key: totals for key, totals, _ in groups}["local"]
            assert (local.requests, local.local) == (1, 1)
            assert local.cost_avoided_usd == pytest.approx(0.0000312 - 0.0003)
        # The request's answer is the cloud's, not the leg's.
        assert store.answer("e") == answer
        assert Latency.of(records).samples == store.latency().samples == 2
    finally:
        store.close()


def test_unpriced_costs_add_nothing_and_local_share_is_local_over_answered_requests() -> None:
    records = [
        local_record(),
        local_record(cost_avoided_usd=None, price_known=False),
        cloud_record(cloud_cost_usd=None, price_known=False),
        local_record(status="error", error="boom"),
        refused_record(),
    ]
    totals = Totals.of(records)
    assert totals.to_dict() == {
        "requests": 5,
        "local": 3,
        "lan": 0,
        "cloud": 1,
        "errors": 1,
        "refused": 1,
        "prompt_tokens": 31 * 3 + 1000,
        "completion_tokens": 12 * 3 + 500,
        "cloud_spend_usd": 0.0,
        "cost_avoided_usd": pytest.approx(2 * 0.0000312),
        "local_share": 0.75,
        "off_cloud_share": 0.75,
        "prefill_saved_tokens": 0,
    }
    assert Totals().local_share == 0.0


def test_prefill_saved_counts_local_cache_reads_only() -> None:
    records = [
        local_record(cache_read_tokens=300),
        local_record(id="c", leg="cascade_local", cache_read_tokens=20),  # work done: counts
        cloud_record(cache_read_tokens=900),  # the provider's cache: priced as cloud spend
    ]
    totals = Totals.of(records)
    assert totals.prefill_saved_tokens == 320
    assert totals.to_dict()["prefill_saved_tokens"] == 320
    assert totals.plus(Totals.of([local_record(cache_read_tokens=5)])).prefill_saved_tokens == 325


def test_percentiles_are_nearest_rank_values() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) is None


def test_latency_counts_answered_requests_and_ttft_where_there_was_one() -> None:
    records = [local_record(latency_s=float(i), ttft_s=0.1 * i) for i in range(1, 11)]
    records += [
        local_record(latency_s=99.0, status="error"),
        local_record(latency_s=98.0, leg="cascade_local"),
        local_record(latency_s=5.0, ttft_s=None),
    ]
    latency = Latency.of(records)
    assert latency.samples == 11
    assert (latency.p50_s, latency.p95_s) == (5.0, 10.0)
    assert latency.ttft_p50_s == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("difficulty:0.21<=0.52", "difficulty"),
        ("capacity:cpu_91%>85%", "capacity:cpu"),
        ("capacity:eta_3.1s>20s", "capacity:eta"),
        ("capacity:queue_full:3", "capacity:queue_full"),
        ("length:9000>8192", "length"),
        ("privacy:email", "privacy:email"),
        ("budget:openai:daily_cap", "budget:openai:daily_cap"),
        ("explicit:gpt-4.1", "explicit:gpt-4.1"),
        # The model stage's reasons group by stage, not by score.
        ("difficulty:0.18~probe:0.52<=0.61", "difficulty~probe"),
        ("difficulty:0.41~probe:0.73>0.50", "difficulty~probe"),
        ("difficulty:0.05<=0.50~probe_unavailable:busy", "difficulty~probe_unavailable:busy"),
        ("difficulty(prior):0.71>0.50", "difficulty(prior)"),
        (None, "none"),
    ],
)
def test_reasons_group_without_their_measurements(reason: str | None, label: str) -> None:
    assert reason_label(reason) == label


def test_days_are_utc_and_oldest_first_other_groups_busiest_first() -> None:
    records = [
        local_record(time=T0 + 86_400),
        local_record(time=T0),
        cloud_record(time=T0),
        cloud_record(time=T0),
    ]
    assert [key for key, _, _ in grouped(records, "day")] == ["2026-11-18", "2026-11-19"]
    assert [key for key, _, _ in grouped(records, "route")] == ["cloud", "local"]
