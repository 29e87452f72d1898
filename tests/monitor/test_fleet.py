"""The fleet view (``f``): the daemons sharing a PostgreSQL ledger, one row each, read from
``GET /v1/hybrid/stats?by=instance``; out of the way for a daemon with a ledger of its own."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import httpx2
import pytest
from monitor_fakes import (
    T0,
    FakeDaemon,
    by_instance,
    shared_ledger,
    snapshot,
    synchronous,
    totals,
)
from test_app import live, monitor, rendered, shown, until
from textual.widgets import Footer, Static

from hybrid.monitor import format as fmt
from hybrid.monitor.app import MonitorApp
from hybrid.monitor.client import DaemonClient, DaemonUnreachable
from hybrid.monitor.screens.fleet import NOT_SHARED, FleetScreen, fleet_view
from hybrid.monitor.wire import MalformedEventError, parse_fleet

EDGE_01_TODAY = totals(
    requests=40, local=24, lan=4, cloud=10, refused=2, cloud_spend_usd=0.42, cost_avoided_usd=1.37
)
EDGE_02_TODAY = totals(
    requests=8, local=8, lan=0, cloud=0, cloud_spend_usd=0.0, cost_avoided_usd=0.05
)


def three_daemons() -> dict[str, Any]:
    """edge-01 (the monitored one) and edge-02 busy today, edge-03 quiet since yesterday."""
    return by_instance(
        [
            ("edge-02", EDGE_02_TODAY, totals(requests=90), T0 - 95),
            ("edge-01", EDGE_01_TODAY, totals(requests=500), T0 - 30),
            ("edge-03", totals(requests=0, local=0, cloud=0), totals(requests=77), T0 - 86_400),
        ]
    )


def fleet_daemon(body: dict[str, Any] | None = None) -> FakeDaemon:
    fake = FakeDaemon()
    fake.snapshot_body = snapshot(ledger=shared_ledger("edge-01"))
    fake.fleet_body = body or three_daemons()
    return fake


def footer_keys(app: MonitorApp) -> set[str]:
    return {key.key for key in app.query_one(Footer).query("FooterKey")}  # type: ignore[attr-defined]


def table_text(app: MonitorApp) -> str:
    screen = app.screen
    assert isinstance(screen, FleetScreen)
    return " ".join(rendered(screen.query_one("#fleet-table", Static).content).split())


# --- reading the body ----------------------------------------------------------------------


def test_today_and_all_time_groups_become_one_row_per_daemon_by_name() -> None:
    fleet = parse_fleet(three_daemons())
    assert fleet.shared
    assert [i.name for i in fleet.instances] == ["edge-01", "edge-02", "edge-03"]
    first, _, quiet = fleet.instances
    assert (first.today.requests, first.today.lan, first.all_time.requests) == (40, 4, 500)
    assert first.last_time == T0 - 30
    # No group today: an empty row for today, not a missing daemon.
    assert (quiet.today.requests, quiet.all_time.requests, quiet.last_time) == (0, 77, T0 - 86_400)


def test_a_body_without_groups_is_an_error_that_names_the_versions() -> None:
    with pytest.raises(MalformedEventError, match="different versions of hybrid"):
        parse_fleet({"today": totals(), "ledger": shared_ledger()})


# --- drawing it ------------------------------------------------------------------------------


def test_each_row_has_todays_requests_shares_money_and_last_record() -> None:
    text = rendered(fleet_view(parse_fleet(three_daemons()), this="edge-01", now=T0, tz=UTC))
    lines = [line.strip() for line in text.splitlines()]
    rows = {line.split()[0]: line for line in lines if line.startswith("edge-")}
    # 24 local, 4 LAN and 10 cloud of 38 answered (2 refused answer nothing); * marks this one.
    assert rows["edge-01"].split() == [
        *["edge-01", "*", "40", "63%", "11%", "26%", "$0.42", "$1.37"],
        *["11:06", "·", "30", "s", "ago"],
    ]
    assert rows["edge-02"].split()[1:7] == ["8", "100%", "0%", "0%", "$0.00", "$0.05"]
    assert rows["edge-02"].endswith("11:05 · 1 min ago")
    # Quiet today: dashes for shares, and the day of its last record.
    assert rows["edge-03"].split()[1:5] == ["0", "-", "-", "-"]
    assert rows["edge-03"].endswith("Nov 17 · 1 d ago")
    words = " ".join(text.split())
    assert (
        "3 daemons write this ledger; 2 wrote today: 48 requests, cloud $0.42, avoided $1.42"
        in (words)
    )
    assert "* this daemon (edge-01)" in words


def test_the_lan_column_shows_only_once_a_lan_server_answered() -> None:
    body = by_instance([("edge-02", EDGE_02_TODAY, totals(requests=90), T0 - 95)])
    text = rendered(fleet_view(parse_fleet(body), this="edge-02", now=T0, tz=UTC))
    (header,) = [line for line in text.splitlines() if "instance" in line]
    assert header.split() == [
        "instance",
        "today",
        "local",
        "cloud",
        "spent",
        "avoided",
        "last",
        "record",
    ]
    words = " ".join(text.split())
    assert "1 daemon writes this ledger; 1 wrote today: 8 requests" in words
    assert "the only one that has written to the shared ledger so far" in words


def test_a_ledger_of_its_own_says_there_is_no_fleet() -> None:
    body = by_instance([("laptop", totals(), totals(), T0)], ledger={"shared": False})
    text = " ".join(rendered(fleet_view(parse_fleet(body), this=None, now=T0, tz=UTC)).split())
    assert text == NOT_SHARED
    assert "ledger.url" in text


def test_ages_round_down_to_the_largest_unit() -> None:
    assert [fmt.ago(s) for s in (0.2, 42.9, 61, 7_300, 200_000, -5)] == [
        "now",
        "42 s ago",
        "1 min ago",
        "2 h ago",
        "2 d ago",
        "now",
    ]


# --- the client ----------------------------------------------------------------------------


@synchronous
async def test_the_client_asks_for_the_groups_by_instance() -> None:
    fake = fleet_daemon()
    async with DaemonClient("http://127.0.0.1:8642/v1", transport=fake.transport()) as client:
        fleet = await client.fleet()
    assert fake.fleet_reads == 1
    assert [i.name for i in fleet.instances] == ["edge-01", "edge-02", "edge-03"]


@synchronous
async def test_a_ledger_that_is_down_is_one_error_with_the_daemons_words() -> None:
    fake = fleet_daemon()
    fake.fleet_status = 503
    async with DaemonClient("http://127.0.0.1:8642", transport=fake.transport()) as client:
        with pytest.raises(DaemonUnreachable, match=r"HTTP 503 .*database is unavailable"):
            await client.fleet()


@synchronous
async def test_a_body_of_another_shape_is_unreachable_not_a_crash() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"groups": {"today": "many"}})

    transport = httpx2.MockTransport(handler)
    async with DaemonClient("http://127.0.0.1:8642", transport=transport) as client:
        with pytest.raises(DaemonUnreachable, match="cannot read"):
            await client.fleet()


# --- the app ---------------------------------------------------------------------------------


@synchronous
async def test_f_shows_the_fleet_of_a_shared_ledger_and_follows_it() -> None:
    fake = fleet_daemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        await until(pilot, lambda: "f" in footer_keys(app), "the fleet key in the footer")
        assert "  as edge-01  " in shown(app, "#status")
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "the fleet")
        await until(pilot, lambda: "edge-03" in table_text(app), "the fleet's rows")
        assert "edge-01 *" in table_text(app)

        # A fourth daemon joins; the screen reads again while it stays open.
        body = three_daemons()
        body["groups"]["all_time"].append(dict(body["groups"]["all_time"][0], key="edge-04"))
        fake.fleet_body = body
        app.screen._read()  # what its interval does every FLEET_INTERVAL_S
        await until(pilot, lambda: "edge-04" in table_text(app), "the new daemon")

        # The database goes away: the daemon's message, the last rows kept and marked.
        fake.fleet_status = 503
        app.screen._read()
        await until(pilot, lambda: "503" in shown(app, "#fleet-problem"), "the outage")
        assert "from the last read" in shown(app, "#fleet-problem")
        assert "edge-04" in table_text(app)

        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, FleetScreen), "the main screen")


@synchronous
async def test_a_daemon_with_its_own_ledger_keeps_the_fleet_key_out_of_the_way() -> None:
    fake = FakeDaemon()  # its snapshot says nothing of a shared ledger: SQLite, the default
    fake.snapshot_body = snapshot(ledger={"shared": False, "instance": "laptop"})
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        await until(pilot, lambda: "m" in footer_keys(app), "the footer")
        assert "f" not in footer_keys(app)
        assert " as " not in shown(app, "#status")
        await pilot.press("f")
        await pilot.pause(0.05)
        assert not isinstance(app.screen, FleetScreen)
    assert fake.fleet_reads == 0


@synchronous
async def test_the_help_names_the_fleet_key() -> None:
    from hybrid.monitor.screens.help import HELP_TEXT

    assert "f       the fleet" in HELP_TEXT and "ledger.url" in HELP_TEXT
