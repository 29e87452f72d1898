"""LAN answers in the monitor: counted apart from local and cloud, shown as ``lan`` in the log,
adding to cost avoided and never to cloud spend."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from monitor_fakes import T0, FakeDaemon, record, snapshot, synchronous
from test_app import live, log_rows, monitor, shown, until

from hybrid.monitor.screens.decision import summary
from hybrid.monitor.state import DashboardState, log_matches
from hybrid.monitor.widgets.savings import TITLE, TITLE_WITH_LAN, SavingsPanel, cloud_side
from hybrid.monitor.widgets.trend import Trend
from hybrid.monitor.wire import Budget, RequestRecord, Totals, parse_event


def lan_record(request_id: str = "7e4c", **overrides: Any) -> dict[str, Any]:
    """A ``request_finished`` body for an answer from the team's server ``gpu-box``."""
    body = record(
        request_id,
        route="lan",
        reasons=["lan:gpu-box/qwen2.5-32b", "capacity:eta_14s>8s"],
        verdicts=[],
        score=None,
        model="gpu-box/qwen2.5-32b",
        provider="gpu-box",
        prompt_tokens=1000,
        completion_tokens=500,
        cloud_cost_usd=0.0,
        counterfactual_model="openai/gpt-4.1-mini",
        counterfactual_cost_usd=0.0012,
        energy_cost_usd=0.0003,
        cost_avoided_usd=0.0009,
    )
    return body | overrides


def as_record(data: dict[str, Any]) -> RequestRecord:
    event = parse_event("request_finished", data)
    assert isinstance(event, RequestRecord)
    return event


def test_a_lan_answer_is_counted_apart_and_saves_without_spending() -> None:
    state = DashboardState()
    state.receive("snapshot", snapshot(), now=T0)
    before = state.view(now=T0)

    state.receive("request_finished", lan_record("n1", time=T0), now=T0 + 1)
    view = state.view(now=T0 + 1)

    assert (view.today.requests, view.today.lan) == (before.today.requests + 1, 1)
    assert view.today.local == before.today.local and view.today.cloud == before.today.cloud
    assert view.today.cloud_spend_usd == before.today.cloud_spend_usd
    assert view.today.cost_avoided_usd == pytest.approx(before.today.cost_avoided_usd + 0.0009)
    # Today: 9 local, 1 LAN, 3 cloud answers.
    assert view.today.local_share == pytest.approx(9 / 13)
    assert view.today.off_cloud_share == pytest.approx(10 / 13)
    assert view.all_time.lan == 1
    assert view.lan_per_minute[-1] == 1
    assert view.local_per_minute[-1] == before.local_per_minute[-1]
    assert view.cloud_per_minute == before.cloud_per_minute


def test_the_log_filter_lan_matches_the_route_exactly() -> None:
    lan = as_record(lan_record())
    local = as_record(record())

    assert log_matches(lan, "lan") and not log_matches(local, "lan")
    assert not log_matches(lan, "local") and not log_matches(lan, "cloud")
    assert log_matches(lan, "lan gpu-box")


def test_the_cloud_column_gives_todays_local_and_lan_shares_once_there_are_lan_answers() -> None:
    today = Totals(local=4, lan=5, cloud=1, local_share=0.4, off_cloud_share=0.9)
    lines = cloud_side(today, Totals(local=40, lan=5, local_share=0.8), Budget()).plain

    assert lines.splitlines()[3] == "local 40% · lan 50%"
    assert len(lines.splitlines()[3]) <= 28  # the column's width
    assert cloud_side(Totals(local_share=0.5), Totals(local_share=0.8), Budget()).plain.endswith(
        "local 50% · all time 80%"
    )


def test_the_decision_names_what_the_lan_server_cost() -> None:
    text = summary(as_record(lan_record()), UTC).plain

    assert text.startswith("LAN")
    assert "answered   gpu-box/qwen2.5-32b (gpu-box)" in text
    assert "cloud cost $0.00" in text
    assert "LAN cost   $0.0003" in text
    assert "energy" not in text


@synchronous
async def test_the_screen_shows_lan_answers_as_lan_and_as_saved() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        panel = app.query_one(SavingsPanel)
        lan_trend = app.query_one("#trend-lan", Trend)
        assert panel.border_title == TITLE and not lan_trend.display

        fake.send("request_finished", lan_record("n1", time=T0))
        await until(pilot, lambda: len(log_rows(app)) == 3, "the LAN answer")

        row = log_rows(app)[0]
        assert row[1] == "lan"
        assert row[-1] == "+$0.0009"
        assert "cloud today $0.0042" in shown(app, "#cloud-side")  # unchanged
        assert "lan 8%" in shown(app, "#cloud-side")  # 1 of 13 answered today
        assert panel.border_title == TITLE_WITH_LAN
        assert lan_trend.display and lan_trend.caption == "1"


@synchronous
async def test_marking_a_lan_answer_says_it_is_not_about_the_local_model() -> None:
    fake = FakeDaemon()
    fake.snapshot_body["recent"] = [lan_record("n1", time=T0 - 20)]
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        await pilot.press("minus")
        await until(pilot, lambda: bool(app._notifications), "the confirmation")
        messages = [notification.message for notification in app._notifications]

    assert fake.feedback_posts == [{"request_id": "n1", "good": False}]
    assert messages == [
        "marked n1 bad (a LAN answer says nothing about the local model: the label is kept, but "
        "no refit can learn from it)"
    ]
