"""DashboardState: the figures a user reads off the monitor, from the events the daemon sends."""

from __future__ import annotations

from typing import Any

import pytest
from monitor_fakes import (
    T0,
    budget,
    cloud_record,
    hardware,
    record,
    refused_record,
    snapshot,
    totals,
)

from hybrid.monitor.state import (
    CHART_MINUTES,
    LOG_SIZE,
    DashboardState,
    log_matches,
    percentile,
)
from hybrid.monitor.wire import RequestRecord, parse_event

MIDNIGHT = 1_795_046_400.0  # 2026-11-19 00:00 UTC, the day after T0


def synced(**overrides: Any) -> DashboardState:
    state = DashboardState()
    state.receive("snapshot", snapshot(**overrides), now=T0)
    return state


def as_record(data: dict[str, Any]) -> RequestRecord:
    event = parse_event("request_finished", data)
    assert isinstance(event, RequestRecord)
    return event


# --- snapshot ------------------------------------------------------------------------------------


def test_nothing_is_known_before_the_first_snapshot() -> None:
    view = DashboardState().view(now=T0)

    assert not view.synced
    assert view.mode is None
    assert view.log == ()
    assert view.local_per_minute == (0,) * CHART_MINUTES


def test_the_snapshot_fills_totals_budget_mode_model_log_and_hardware() -> None:
    view = synced().view(now=T0)

    assert view.synced
    assert view.today.cost_avoided_usd == pytest.approx(0.0131)
    assert view.all_time.requests == 1480
    assert view.budget.daily_cap_usd == 1.0
    assert view.mode == "auto"
    assert view.model is not None and view.model.id == "gemma-3-270m-q4_k_m"
    assert [r.id for r in view.log] == ["r2", "r1"]
    assert view.hardware is not None and view.hardware.cpu_percent == 38.5
    assert view.decode_tokens_per_s == (68.9,)
    # The recent requests are on the charts too: r1 a minute and a half ago, r2 just now.
    assert view.local_per_minute[-1] == 1
    assert sum(view.cloud_per_minute) == 1


# --- request_finished ----------------------------------------------------------------------------


def test_a_local_answer_adds_to_cost_avoided_and_the_local_share() -> None:
    state = synced()

    state.receive("request_finished", record("n1", time=T0), now=T0 + 1)
    view = state.view(now=T0 + 1)

    assert view.today.requests == 13
    assert view.today.local == 10
    assert view.today.cost_avoided_usd == pytest.approx(0.0131 + 0.0000312)
    assert view.today.local_share == pytest.approx(10 / 13)
    assert view.today.prompt_tokens == 1804 + 31
    assert view.all_time.requests == 1481
    assert view.log[0].id == "n1"


def test_a_cloud_answer_adds_to_cloud_spend_and_errors_are_counted() -> None:
    state = synced()

    state.receive("request_finished", cloud_record("c1", time=T0), now=T0)
    state.receive(
        "request_finished",
        cloud_record("c2", time=T0, status="error", error="openai: [timeout]", cloud_cost_usd=0.0),
        now=T0,
    )
    view = state.view(now=T0)

    assert view.today.cloud == 5
    assert view.today.errors == 1
    assert view.today.cloud_spend_usd == pytest.approx(0.0042 + 0.00077)
    assert view.today.local_share == pytest.approx(9 / 14)


def test_a_refused_request_is_neither_local_nor_cloud_and_saves_nothing() -> None:
    state = synced()
    before = state.view(now=T0)

    state.receive("request_finished", refused_record("x1", time=T0), now=T0)
    view = state.view(now=T0)

    assert (view.today.requests, view.today.refused) == (13, 1)
    assert (view.today.local, view.today.cloud, view.today.errors) == (9, 3, 0)
    assert view.today.local_share == pytest.approx(0.75)
    assert view.today.cost_avoided_usd == pytest.approx(0.0131)
    assert view.local_per_minute == before.local_per_minute
    assert view.cloud_per_minute == before.cloud_per_minute
    assert log_matches(view.log[0], "refused") and not log_matches(view.log[0], "local")


def test_an_unpriced_request_adds_nothing_to_the_money() -> None:
    state = synced()

    state.receive(
        "request_finished",
        record("n1", price_known=False, counterfactual_cost_usd=None, cost_avoided_usd=None),
        now=T0,
    )

    assert state.view(now=T0).today.cost_avoided_usd == pytest.approx(0.0131)


def test_today_starts_over_at_utc_midnight_and_all_time_does_not() -> None:
    state = synced()

    assert state.view(now=MIDNIGHT + 5).today.requests == 0
    state.receive("request_finished", record("n1", time=MIDNIGHT + 10), now=MIDNIGHT + 12)
    view = state.view(now=MIDNIGHT + 12)

    assert view.today.requests == 1
    assert view.today.local_share == 1.0
    assert view.all_time.requests == 1481


# --- charts --------------------------------------------------------------------------------------


def test_requests_per_minute_split_local_and_cloud_current_minute_last() -> None:
    state = synced(recent=[])
    minute = 60 * (T0 // 60)
    for i, when in enumerate([minute + 1, minute + 2, minute - 50, minute - 60 * 40]):
        state.receive("request_finished", record(f"l{i}", time=when), now=T0)
    state.receive("request_finished", cloud_record("c", time=minute - 100), now=T0)

    view = state.view(now=T0)

    assert len(view.local_per_minute) == CHART_MINUTES
    assert view.local_per_minute[-2:] == (1, 2)  # 40 minutes ago is off the chart
    assert view.cloud_per_minute[-3:] == (1, 0, 0)


def test_the_charts_move_on_with_the_clock() -> None:
    state = synced(recent=[])
    state.receive("request_finished", record("n1", time=T0), now=T0)

    assert state.view(now=T0).local_per_minute[-1] == 1
    assert state.view(now=T0 + 120).local_per_minute[-3] == 1
    assert sum(state.view(now=T0 + 60 * CHART_MINUTES).local_per_minute) == 0


def test_latency_percentiles_cover_the_last_five_minutes_of_good_requests() -> None:
    state = synced(recent=[])
    for i, latency in enumerate([0.1, 0.2, 0.3, 0.4, 10.0]):
        state.receive("request_finished", record(f"n{i}", time=T0, latency_s=latency), now=T0)
    state.receive("request_finished", record("e", time=T0, latency_s=99.0, status="error"), now=T0)
    state.receive("request_finished", record("old", time=T0 - 600, latency_s=50.0), now=T0)

    view = state.view(now=T0)

    assert view.latency_p50_s == pytest.approx(0.3)
    assert view.latency_p95_s == pytest.approx(0.4 + 0.8 * 9.6)
    assert view.latency_p50_per_minute[-1] == pytest.approx(0.3)
    assert view.latency_p95_per_minute[-11] == pytest.approx(50.0)
    assert state.view(now=T0 + 400).latency_p50_s is None


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)


def test_decode_speed_follows_hardware_samples_over_ten_minutes() -> None:
    state = synced()
    for i, speed in enumerate([70.0, 71.5, None]):
        state.receive("hardware", hardware(time=T0 + i, decode_tokens_per_s=speed), now=T0 + i)

    view = state.view(now=T0 + 2)

    assert view.decode_tokens_per_s == (68.9, 70.0, 71.5)
    assert view.hardware is not None and view.hardware.decode_tokens_per_s is None
    assert state.view(now=T0 + 602).decode_tokens_per_s == ()


def test_a_loading_model_in_the_hardware_sample_wins_over_the_snapshot() -> None:
    state = synced()
    state.receive("hardware", hardware(time=T0, model_state="loading"), now=T0)

    model = state.view(now=T0).model

    assert model is not None and model.state == "loading"


# --- reconnects ----------------------------------------------------------------------------------


def test_a_reconnect_snapshot_replaces_totals_and_adds_only_the_missed_requests() -> None:
    state = synced()
    state.receive("request_finished", record("n1", time=T0 + 5), now=T0 + 5)
    # The daemon restarted; its snapshot already counts n1 and one request the monitor missed.
    state.receive(
        "snapshot",
        snapshot(
            today=totals(requests=14, local=11),
            recent=[
                record("missed", time=T0 + 30),
                record("n1", time=T0 + 5),
                record("r2", time=T0 - 20),
            ],
        ),
        now=T0 + 40,
    )
    view = state.view(now=T0 + 40)

    assert view.today.requests == 14
    assert [r.id for r in view.log] == ["missed", "n1", "r2", "r1"]
    assert sum(view.local_per_minute) == 3  # r2, n1 and missed, each once


def test_the_two_legs_of_a_cascade_are_both_logged() -> None:
    state = synced(recent=[])
    state.receive("request_finished", record("a", leg="cascade_local"), now=T0)
    state.receive("request_finished", cloud_record("a", leg="cascade_cloud"), now=T0)

    view = state.view(now=T0)
    assert [r.leg for r in view.log] == ["cascade_cloud", "cascade_local"]
    # As the ledger counts it: one request (the cloud leg), both legs' tokens.
    assert (view.today.requests, view.today.local, view.today.cloud) == (13, 9, 4)
    assert view.today.prompt_tokens == 1804 + 31 + view.log[0].prompt_tokens


def test_a_local_shadow_answer_is_no_request_and_its_energy_comes_off_the_cost_avoided() -> None:
    state = synced(recent=[])
    before = state.view(now=T0).today
    state.receive("request_finished", cloud_record("a"), now=T0)
    shadow = record(
        "a",
        leg="local_shadow",
        reasons=["local:shadow"],
        verdicts=[],
        counterfactual_model=None,
        counterfactual_cost_usd=None,
        energy_cost_usd=0.0002,
        cost_avoided_usd=-0.0002,
    )
    state.receive("request_finished", shadow, now=T0)

    view = state.view(now=T0)
    assert [r.leg for r in view.log] == ["local_shadow", None]
    # As the ledger counts it: one more request (the cloud answer), both records' tokens.
    today = view.today
    assert (today.requests, today.local, today.cloud) == (
        before.requests + 1,
        before.local,
        before.cloud + 1,
    )
    assert today.cost_avoided_usd == pytest.approx(before.cost_avoided_usd - 0.0002)
    assert today.prompt_tokens == before.prompt_tokens + view.log[1].prompt_tokens + 31


def test_requests_in_flight() -> None:
    state = synced()
    state.receive("request_started", {"id": "a", "time": T0, "api": "openai"}, now=T0)
    state.receive("request_started", {"id": "b", "time": T0, "api": "openai"}, now=T0)
    state.receive("request_finished", record("a", time=T0), now=T0 + 1)

    assert state.view(now=T0 + 1).in_flight == 1
    # A finish lost to a daemon restart does not leave the request in flight forever.
    assert state.view(now=T0 + 3600).in_flight == 0
    state.receive("request_started", {"id": "c", "time": T0, "api": "openai"}, now=T0)
    state.receive("snapshot", snapshot(), now=T0 + 2)
    assert state.view(now=T0 + 2).in_flight == 0


# --- budget, mode, bad events, the log ----------------------------------------------------------


def test_budget_and_mode_events_replace_what_the_snapshot_said() -> None:
    state = synced()
    state.receive("budget", budget(daily_spend_usd=0.9, state="warning"), now=T0)
    state.receive("mode", {"mode": "local-only"}, now=T0)

    view = state.view(now=T0)

    assert view.budget.state == "warning"
    assert view.mode == "local-only"
    state.set_mode("cloud-only")
    assert state.view(now=T0).mode == "cloud-only"


def test_a_malformed_event_is_counted_and_described_and_changes_nothing() -> None:
    state = synced()
    before = state.view(now=T0)

    state.receive("request_finished", record("x", route=None), now=T0)
    state.receive("request_finished", "{not json", now=T0)
    state.receive("something_new", {"x": 1}, now=T0)
    view = state.view(now=T0)

    assert view.malformed_events == 2
    assert view.problem is not None and "request_finished" in view.problem
    assert view.log == before.log
    assert view.today == before.today


def test_the_log_keeps_the_newest_requests() -> None:
    state = synced(recent=[])
    for i in range(LOG_SIZE + 20):
        state.receive("request_finished", record(f"n{i}", time=T0), now=T0)

    log = state.view(now=T0).log

    assert len(log) == LOG_SIZE
    assert log[0].id == f"n{LOG_SIZE + 19}"
    assert log[-1].id == "n20"


@pytest.mark.parametrize(
    ("query", "local_shown", "cloud_shown"),
    [
        ("", True, True),
        ("cloud", False, True),
        ("LOCAL", True, False),
        ("difficulty", True, True),
        ("0.83", False, True),
        ("gemma", True, False),
        ("openai", False, True),
        ("cloud gemma", False, False),
        ("error", False, False),
        ("privacy:none", True, True),
    ],
)
def test_the_log_filter(query: str, local_shown: bool, cloud_shown: bool) -> None:
    assert log_matches(as_record(record()), query) is local_shown
    assert log_matches(as_record(cloud_record()), query) is cloud_shown
