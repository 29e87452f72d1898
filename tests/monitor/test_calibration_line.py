"""The monitor shows when the local model routes on a prior, and background calibration's
progress, from the daemon's ``/health``."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from monitor_fakes import T0, FakeDaemon, synchronous
from test_app import URL, shown, until

from hybrid.monitor.app import MonitorApp
from hybrid.monitor.link import Backoff
from hybrid.monitor.widgets.calibration import CalibrationLine, CalibrationView


def health(state: str = "prior", background: dict[str, Any] | None = None) -> dict[str, Any]:
    prior = {"expected_accuracy": 0.47, "parameters": 1e9, "family": "gemma3"}
    return {
        "status": "ok",
        "calibration": {
            "state": state,
            "source": "prior" if state == "prior" else "user",
            "prior": prior if state == "prior" else None,
            "background": background,
        },
    }


def progress(state: str, done: int, correct: int, message: str | None = None) -> dict[str, Any]:
    return {
        "state": state,
        "done": done,
        "total": 540,
        "correct": correct,
        "accuracy": round(correct / done, 4) if done else None,
        "message": message,
        "updated": "2026-12-05T10:00:00+00:00",
    }


def monitor(fake: FakeDaemon) -> MonitorApp:
    return MonitorApp.for_url(
        URL,
        transport=fake.transport(),
        clock=lambda: T0,
        tz=UTC,
        backoff=Backoff(first_s=0.01, max_s=0.02),
        health_interval_s=0.02,
    )


def line_visible(app: MonitorApp) -> bool:
    return bool(app.query_one(CalibrationLine).display)


@synchronous
async def test_background_calibration_progress_moves_on_the_calibration_line() -> None:
    fake = FakeDaemon()
    fake.health_body = health(background=progress("waiting", 0, 0))
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "waiting" in shown(app, "#calibration"), "waiting")
        assert line_visible(app)
        assert "on a prior (expected 47% right)" in shown(app, "#calibration")
        fake.health_body = health(background=progress("running", 120, 36))
        await until(pilot, lambda: "120/540" in shown(app, "#calibration"), "progress")
        assert "running 120/540 items, 30% right so far" in shown(app, "#calibration")
        fake.health_body = health("found", background=progress("adopted", 540, 170))
        await until(pilot, lambda: "adopted" in shown(app, "#calibration"), "the outcome")
        text = shown(app, "#calibration")
        assert "calibrated · calibrating adopted 540/540 items, 31% right" in text


@synchronous
async def test_a_kept_prior_says_why() -> None:
    fake = FakeDaemon()
    fake.health_body = health(
        background=progress("kept-prior", 540, 100, "the fit predicts no better than the prior")
    )
    app = monitor(fake)
    async with app.run_test(size=(160, 30)) as pilot:
        await until(pilot, lambda: "kept-prior" in shown(app, "#calibration"), "kept-prior")
        assert "(the fit predicts no better than the prior)" in shown(app, "#calibration")


@synchronous
async def test_a_calibrated_model_or_an_old_daemon_shows_no_calibration_line() -> None:
    fake = FakeDaemon()  # no /health: a daemon without it
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.state == "live", "live data")
        assert not line_visible(app)
        fake.health_body = health("found")
        await until(pilot, lambda: app.query_one(CalibrationLine).calibration is not None, "health")
        assert not line_visible(app)


def test_a_malformed_health_body_shows_nothing() -> None:
    assert CalibrationView.from_health("nope") is None
    assert CalibrationView.from_health({"calibration": {"state": 3}}) is None
    view = CalibrationView.from_health({"calibration": {"state": "prior", "background": 7}})
    assert view is not None and view.background is None and view.worth_showing


def test_the_last_refit_from_traffic_is_shown_on_the_calibration_line() -> None:
    from hybrid.monitor.widgets.calibration import calibration_text

    body = health("found")
    assert CalibrationView.from_health(body) is not None
    assert not CalibrationView.from_health(body).worth_showing  # type: ignore[union-attr]
    last = {"time": "2026-12-05T10:00:00+00:00", "labels": 373, "adopted": True, "message": "m"}
    body["calibration"]["refit"] = {"refit_after": 50, "labels": 373, "last": last}
    view = CalibrationView.from_health(body)
    assert view is not None and view.worth_showing
    assert calibration_text(view).plain == " difficulty calibrated · refit from 373 labels adopted"
    body["calibration"]["refit"]["last"] = {**last, "adopted": False}
    view = CalibrationView.from_health(body)
    assert view is not None
    assert calibration_text(view).plain.endswith("refit from 373 labels not adopted")
    # No refit yet, or a daemon without refits: nothing to say about it.
    body["calibration"]["refit"] = {"refit_after": 50, "labels": 12, "last": None}
    assert not CalibrationView.from_health(body).worth_showing  # type: ignore[union-attr]


def test_a_paused_calibration_says_why_and_how_far_it_got() -> None:
    from hybrid.monitor.widgets.calibration import calibration_text

    message = "on battery power; resumes on AC power, or with local.background_on_battery"
    view = CalibrationView.from_health(health(background=progress("paused", 120, 36, message)))
    assert view is not None and view.worth_showing
    assert calibration_text(view).plain == (
        " difficulty on a prior (expected 47% right) · calibrating paused 120/540 items, "
        f"30% right so far ({message})"
    )


def test_where_requests_escalate_and_whether_answers_are_read_is_on_the_line() -> None:
    from hybrid.monitor.widgets.calibration import calibration_text

    body = health("found")
    cascade = {"enabled": True, "reads_answers": True, "min_confidence": 0.35}
    body["routing"] = {"escalates_to": "openai/gpt-5.4-mini", "cascade": cascade}
    view = CalibrationView.from_health(body)
    assert view is not None and view.worth_showing
    assert calibration_text(view).plain == (
        " difficulty calibrated · escalating to openai/gpt-5.4-mini, local answers read first"
    )
    body["routing"]["cascade"] = {"enabled": False, "reads_answers": False}
    view = CalibrationView.from_health(body)
    assert view is not None
    assert calibration_text(view).plain.endswith("local answers sent unread")
    # With no cloud and no LAN server, every request is answered here: nothing to say.
    body["routing"] = {"escalates_to": None, "lan_first": [], "cascade": cascade}
    assert not CalibrationView.from_health(body).worth_showing  # type: ignore[union-attr]
    # LAN servers are tried first, with or without a cloud after them.
    body["routing"] = {"escalates_to": None, "lan_first": ["gpu-box", "spare"], "cascade": cascade}
    view = CalibrationView.from_health(body)
    assert view is not None and view.worth_showing
    assert calibration_text(view).plain == (
        " difficulty calibrated · escalating to gpu-box, spare (LAN), local answers read first"
    )
    body["routing"]["escalates_to"] = "openai/gpt-5.4-mini"
    view = CalibrationView.from_health(body)
    assert view is not None
    assert calibration_text(view).plain.endswith(
        "escalating to gpu-box, spare (LAN), then openai/gpt-5.4-mini, local answers read first"
    )


@synchronous
async def test_the_monitor_shows_the_escalation_target_with_a_prior() -> None:
    fake = FakeDaemon()
    body = health()
    cascade = {"enabled": True, "reads_answers": True, "min_confidence": 0.35}
    body["routing"] = {"escalates_to": "anthropic/claude-haiku-4-5", "cascade": cascade}
    fake.health_body = body
    app = monitor(fake)
    async with app.run_test(size=(160, 30)) as pilot:
        await until(pilot, lambda: "escalating" in shown(app, "#calibration"), "routing")
        assert "on a prior (expected 47% right) · escalating to anthropic/claude-haiku-4-5" in (
            shown(app, "#calibration")
        )
