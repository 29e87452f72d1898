"""MonitorApp driven by Textual's pilot against a fake daemon speaking docs/events.md."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest
from monitor_fakes import (
    T0,
    FakeDaemon,
    cloud_record,
    hardware,
    record,
    refused_record,
    synchronous,
)
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Digits, Input, Static

from hybrid.monitor.app import MonitorApp
from hybrid.monitor.link import Backoff
from hybrid.monitor.screens.decision import DecisionScreen
from hybrid.monitor.screens.help import HelpScreen
from hybrid.monitor.widgets.savings import SavingsPanel
from hybrid.monitor.widgets.status_line import StatusLine

URL = "http://127.0.0.1:8642"


def monitor(fake: FakeDaemon, **options: Any) -> MonitorApp:
    return MonitorApp.for_url(
        URL,
        transport=fake.transport(),
        clock=options.pop("clock", lambda: T0),
        tz=UTC,
        backoff=Backoff(first_s=0.01, max_s=0.02),
        **options,
    )


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str) -> None:
    """Let the app run until ``condition`` holds (at most about two seconds)."""
    for _ in range(200):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"the monitor never showed {what}")


def shown(app: MonitorApp, selector: str) -> str:
    """The text a Static (or the status line) shows."""
    widget = app.screen.query_one(selector)
    if isinstance(widget, StatusLine):
        return widget.render().plain
    assert isinstance(widget, Static)
    content = widget.content
    return content.plain if isinstance(content, Text) else str(content)


def rendered(renderable: object) -> str:
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def log_rows(app: MonitorApp) -> list[list[str]]:
    table: DataTable[Text] = app.query_one("#log-table", DataTable)
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


def avoided_today(app: MonitorApp) -> str:
    return app.query_one("#avoided-today", Digits).value


def showing(app: MonitorApp, screen: type[Screen[Any]]) -> bool:
    """Whether ``screen`` is on top (a function, so mypy does not narrow app.screen)."""
    return isinstance(app.screen, screen)


async def live(pilot: Pilot[None], app: MonitorApp) -> None:
    await until(pilot, lambda: app.link.state == "live" and app.dashboard.synced, "live data")


@synchronous
async def test_figures_update_as_events_arrive() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        assert avoided_today(app) == "$0.013"
        assert [row[1] for row in log_rows(app)] == ["local", "cloud"]
        assert "local 75%" in shown(app, "#cloud-side")

        fake.send("request_finished", record("n1", time=T0, cost_avoided_usd=0.0069))
        fake.send("request_finished", cloud_record("n2", time=T0, cloud_cost_usd=0.0012))
        fake.send("hardware", hardware(time=T0, cpu_percent=91.0, queue_depth=3))
        await until(pilot, lambda: len(log_rows(app)) == 4, "the new requests")
        await until(pilot, lambda: "CPU 91%" in shown(app, "#machine"), "the new sample")

        assert avoided_today(app) == "$0.02"
        assert log_rows(app)[0][1:4] == ["cloud", "difficulty:0.83>0.52", "gpt-4.1-mini"]
        assert log_rows(app)[0][-1] == "-$0.0012"
        assert log_rows(app)[1][-1] == "+$0.0069"
        assert "cloud today $0.0054" in shown(app, "#cloud-side")
        assert "queue 3" in shown(app, "#machine")


@synchronous
async def test_a_refused_request_is_logged_as_refused_and_moves_no_figure() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        fake.send("request_finished", refused_record("x1", time=T0))
        await until(pilot, lambda: len(log_rows(app)) == 3, "the refused request")

        route, reason = log_rows(app)[0][1:3]
        assert route == "none" and reason.startswith("refused:")
        assert log_rows(app)[0][-1] == "—"
        assert avoided_today(app) == "$0.013"
        assert "local 75%" in shown(app, "#cloud-side")


@synchronous
async def test_the_savings_panel_says_what_cost_avoided_counts() -> None:
    app = monitor(FakeDaemon())
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        panel = app.query_one(SavingsPanel)
        assert panel.border_title == "savings: cloud price of the local answers, less electricity"
        tooltip = str(panel.tooltip)
        for part in ("pricing.reference_model", "less the electricity", "refused", "--by decided"):
            assert part in tooltip


@synchronous
async def test_the_mode_key_asks_the_daemon_for_the_next_mode() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test() as pilot:
        await live(pilot, app)
        await pilot.press("m")
        await until(pilot, lambda: "mode local-only" in shown(app, "#status"), "the new mode")
        await pilot.press("m")
        await until(pilot, lambda: "mode cloud-only" in shown(app, "#status"), "the next mode")

    assert fake.mode_posts == [{"mode": "local-only"}, {"mode": "cloud-only"}]


@synchronous
async def test_a_refused_mode_change_is_reported_and_the_mode_stays() -> None:
    fake = FakeDaemon()
    fake.mode_status = 500
    app = monitor(fake)
    async with app.run_test() as pilot:
        await live(pilot, app)
        await pilot.press("m")
        await until(pilot, lambda: bool(fake.mode_posts), "the mode request")
        await until(pilot, lambda: bool(app._notifications), "a notification")

        assert "mode auto" in shown(app, "#status")
        assert any("HTTP 500" in n.message for n in app._notifications)


@synchronous
async def test_it_reconnects_by_itself_after_the_stream_drops() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test() as pilot:
        await live(pilot, app)
        fake.up = False
        fake.drop()
        await until(pilot, lambda: app.link.state == "offline", "that the daemon went away")
        assert app.query_one("#offline").display
        assert "offline" in shown(app, "#status")

        fake.up = True
        await until(pilot, lambda: app.link.state == "live", "the daemon back")
        fake.send("request_finished", record("after", time=T0))
        await until(pilot, lambda: log_rows(app)[0][0] == "11:06:40", "a request after")

        assert not app.query_one("#offline").display
        assert fake.connections >= 2


@synchronous
async def test_no_daemon_says_so_and_names_the_command_that_starts_one() -> None:
    fake = FakeDaemon(up=False)
    app = monitor(fake)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.link.state == "offline", "the offline state")
        banner = shown(app, "#offline")

        assert f"cannot reach the hybrid daemon at {URL}" in banner
        assert "start it with `hybrid serve`" in banner
        assert "retrying" in banner
        assert avoided_today(app) == "-"  # unknown, not $0
        await pilot.press("m")
        assert fake.mode_posts == []


@synchronous
async def test_pause_freezes_the_log_and_resume_catches_up() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test() as pilot:
        await live(pilot, app)
        await pilot.press("p")
        fake.send("request_finished", record("n1", time=T0))
        await until(pilot, lambda: len(app.dashboard.log) == 3, "the event received")

        assert len(log_rows(app)) == 2
        assert "PAUSED" in str(app.query_one("#log").border_title)
        await pilot.press("p")
        assert len(log_rows(app)) == 3


@synchronous
async def test_slash_filters_the_log_and_escape_clears_it() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test() as pilot:
        await live(pilot, app)
        await pilot.press("slash")
        field = app.query_one("#log-filter", Input)
        assert field.has_focus
        field.insert_text_at_cursor("cloud")  # typing, without a pilot round trip per key
        await pilot.pause()

        assert [row[1] for row in log_rows(app)] == ["cloud"]
        await pilot.press("enter")
        fake.send("request_finished", record("n1", time=T0))
        fake.send("request_finished", cloud_record("n2", time=T0))
        await until(pilot, lambda: len(log_rows(app)) == 2, "the new cloud request")
        assert [row[1] for row in log_rows(app)] == ["cloud", "cloud"]

        await pilot.press("escape")
        assert len(log_rows(app)) == 4


@synchronous
async def test_selecting_a_request_shows_every_policys_verdict() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 40)) as pilot:
        await live(pilot, app)
        await pilot.press("down", "enter")
        await until(pilot, lambda: showing(app, DecisionScreen), "the decision")
        summary = shown(app, "#decision-summary")

        assert summary.startswith("CLOUD  ok")
        assert "difficulty:0.83>0.52" in summary
        assert "cloud cost $0.00077" in summary
        verdicts = rendered(app.screen.query_one("#decision-verdicts", Static).content)
        assert re.search(r"privacy\s+│ pass\s+│ privacy:none\s+│\s+—", verdicts)
        assert re.search(r"difficulty\s+│ cloud\s+│ difficulty:0.83>0.52\s+│\s+0.83", verdicts)
        await pilot.press("escape")
        assert not showing(app, DecisionScreen)


@synchronous
async def test_question_mark_shows_the_keys() -> None:
    app = monitor(FakeDaemon())
    async with app.run_test() as pilot:
        await pilot.press("question_mark")
        assert showing(app, HelpScreen)
        await pilot.press("escape")
        assert not showing(app, HelpScreen)
        await pilot.press("q")

    assert app.return_code == 0
    assert app._daemon._http.is_closed  # type: ignore[attr-defined]


@synchronous
async def test_an_unreadable_event_is_counted_on_screen_and_the_rest_still_shows() -> None:
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test() as pilot:
        await live(pilot, app)
        fake.send("request_finished", record("bad", route=None))
        fake.send("request_finished", record("good", time=T0))
        await until(pilot, lambda: len(log_rows(app)) == 3, "the good request")

        assert "⚠ 1 unreadable" in shown(app, "#status")


@synchronous
async def test_no_color_leaves_only_greys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    fake = FakeDaemon()
    app = monitor(fake)
    async with app.run_test() as pilot:
        await live(pilot, app)
        svg = app.export_screenshot()

    # Not the app's: the screenshot's window frame (three coloured buttons) and the exporter's
    # default foreground (the title, the line ends).
    frame = {"ff5f57", "febc2e", "28c840", "c5c8c6"}
    colours = set(re.findall(r"#([0-9a-f]{6})\b", svg)) - frame
    assert colours, "no colours found in the screenshot"
    assert all(c[0:2] == c[2:4] == c[4:6] for c in colours), [
        c for c in sorted(colours) if not c[0:2] == c[2:4] == c[4:6]
    ]
