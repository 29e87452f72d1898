"""``+`` and ``-`` in the monitor: the selected request's answer is marked good or bad through
``POST /v1/hybrid/feedback``, against the fake daemon; the keys are in the footer and the help."""

from __future__ import annotations

from typing import Any

from monitor_fakes import T0, FakeDaemon, cloud_record, record, synchronous
from test_app import live, monitor, until
from textual.widgets import Footer, Static

from hybrid.monitor.app import MonitorApp
from hybrid.monitor.screens.help import HelpScreen
from hybrid.monitor.state import DashboardState


def messages(app: MonitorApp) -> list[str]:
    return [notification.message for notification in app._notifications]


@synchronous
async def test_plus_and_minus_mark_the_selected_request() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        await pilot.press("plus")  # the cursor starts on the newest request, r2 (local)
        await until(pilot, lambda: bool(fake.feedback_posts), "a label sent")
        await until(pilot, lambda: "marked r2 good" in messages(app), "the confirmation")

        await pilot.press("down", "minus")  # r1, answered in the cloud
        await until(pilot, lambda: len(fake.feedback_posts) == 2, "a second label sent")
        await until(pilot, lambda: len(messages(app)) == 2, "the second confirmation")

    assert fake.feedback_posts == [
        {"request_id": "r2", "good": True},
        {"request_id": "r1", "good": False},
    ]
    assert messages(app) == [
        "marked r2 good",
        "marked r1 bad (a cloud answer says nothing about the local model: the label is kept, "
        "but no refit can learn from it)",
    ]


@synchronous
async def test_a_label_no_refit_can_learn_from_says_why_and_what_to_change() -> None:
    fake = FakeDaemon()
    fake.feedback_unusable = (
        "routing.learn.keep_signals is 0, so the ledger keeps no request's prompt features: the "
        "label is kept, but no refit can learn from it; set routing.learn.keep_signals above 0"
    )
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        await pilot.press("plus")  # r2, answered locally
        await until(pilot, lambda: bool(messages(app)), "the confirmation")
    assert messages(app) == [f"marked r2 good ({fake.feedback_unusable})"]


@synchronous
async def test_a_request_the_daemon_does_not_hold_is_not_marked_and_says_why() -> None:
    fake = FakeDaemon()
    fake.snapshot_body["recent"] = [record("gone", time=T0 - 20)]
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        fake.snapshot_body["recent"] = []  # the daemon's ledger no longer holds it
        await pilot.press("minus")
        await until(pilot, lambda: bool(messages(app)), "a notification")
    assert "the ledger holds no request with id 'gone'" in messages(app)[0]


@synchronous
async def test_a_shadow_call_has_no_answer_of_its_own_to_mark() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        shadow: dict[str, Any] = cloud_record("r2", time=T0, leg="shadow", reasons=["shadow"])
        fake.send("request_finished", shadow)
        await until(pilot, lambda: len(app.dashboard.log) == 3, "the shadow call")
        await pilot.press("plus")
        await until(pilot, lambda: bool(messages(app)), "a notification")
    assert fake.feedback_posts == []
    assert messages(app) == ["request r2 has no answer of its own to mark"]


@synchronous
async def test_the_keys_are_in_the_footer_and_the_help() -> None:
    app = monitor(FakeDaemon())
    async with app.run_test(size=(120, 30)) as pilot:
        await live(pilot, app)
        shown = {binding.key: binding.description for binding in app.BINDINGS}  # type: ignore[union-attr]
        assert (shown["plus"], shown["minus"]) == ("good", "bad")

        def footer_keys() -> set[str]:
            return {key.key for key in app.query_one(Footer).query("FooterKey")}  # type: ignore[attr-defined]

        await until(pilot, lambda: {"plus", "minus"} <= footer_keys(), "the keys in the footer")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one(Static).content)
        assert "+ -     mark the selected request's answer good or bad" in text


def test_a_shadow_call_is_spend_but_not_a_request_on_the_dashboard() -> None:
    state = DashboardState()
    state.receive("snapshot", {**_empty_snapshot()}, now=T0)
    state.receive("request_finished", record("a", time=T0 - 5), now=T0)
    shadow = cloud_record("a", time=T0 - 4, leg="shadow", cloud_cost_usd=0.001)
    state.receive("request_finished", shadow, now=T0)
    totals = state.view(now=T0).today
    assert (totals.requests, totals.local, totals.cloud) == (1, 1, 0)
    assert totals.cloud_spend_usd == 0.001


def _empty_snapshot() -> dict[str, Any]:
    from monitor_fakes import snapshot, totals

    empty = totals(
        requests=0,
        local=0,
        cloud=0,
        prompt_tokens=0,
        completion_tokens=0,
        cloud_spend_usd=0.0,
        cost_avoided_usd=0.0,
        local_share=0.0,
    )
    return snapshot(today=empty, all_time=empty, recent=[])
