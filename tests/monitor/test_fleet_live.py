"""The fleet view against real daemons: two ``hybrid serve`` apps on real loopback ports share
one ledger on a real PostgreSQL server; the monitor, talking to one of them over HTTP only,
shows both with what each answered and when; a daemon with a SQLite ledger has no fleet."""

from __future__ import annotations

import asyncio
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
from live_app import serving
from postgres import PostgresDatabase
from rich.text import Text
from scripted import scripted_app
from test_app import rendered, until
from textual.widgets import Static

from hybrid.ledger.store import LedgerStore
from hybrid.monitor.app import MonitorApp
from hybrid.monitor.link import Backoff
from hybrid.monitor.screens.fleet import FleetScreen
from hybrid.settings import Settings, load_settings

CHAT = {"model": "hybrid", "messages": [{"role": "user", "content": "Say hello"}]}


def daemon(home: Path, **environ: str) -> Settings:
    environ = {"HYBRID_HOME": str(home), **environ}
    cli = {"probe.measure_bandwidth": False}
    return load_settings(environ=environ, dotenv_file=None, cli=cli).settings


def fleet_screen_text(app: MonitorApp) -> str:
    screen = app.screen
    if not isinstance(screen, FleetScreen) or screen.fleet is None:
        return ""
    content = screen.query_one("#fleet-table", Static).content
    return " ".join(rendered(content).split())


async def open_fleet(base_url: str) -> tuple[str, str, str]:
    """The status line, then what the fleet view shows (empty when ``f`` opens nothing)."""
    app = MonitorApp.for_url(base_url, tz=UTC, backoff=Backoff(first_s=0.05, max_s=0.1))
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.dashboard.synced, "the snapshot")
        status = app.query_one("#status").render()
        assert isinstance(status, Text)
        await pilot.press("f")
        for _ in range(200):
            if fleet_screen_text(app):
                break
            await pilot.pause(0.01)
        footer = " ".join(str(key.key) for key in app.query("FooterKey"))
        return status.plain, fleet_screen_text(app), footer


def test_the_monitor_shows_every_daemon_sharing_a_postgresql_ledger(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    def shared(name: str) -> Settings:
        return daemon(
            tmp_path / name, HYBRID_LEDGER__URL=postgres_db.url, HYBRID_LEDGER__INSTANCE=name
        )

    with serving(scripted_app(shared("edge-a"))) as a, serving(scripted_app(shared("edge-b"))) as b:
        for base, count in ((a, 3), (b, 1)):
            for _ in range(count):
                assert httpx.post(base + "/v1/chat/completions", json=CHAT).status_code == 200
        httpx.get(b + "/v1/hybrid/stats")  # edge-b's record is committed (reads wait for it)
        body: dict[str, Any] = httpx.get(a + "/v1/hybrid/stats", params={"by": "instance"}).json()
        status, fleet, footer = asyncio.run(open_fleet(a))

    store = LedgerStore.open_url(postgres_db.url)
    try:
        newest = {r.instance: r.time for r in sorted(store.records(), key=lambda r: r.time)}
    finally:
        store.close()
    assert body["ledger"] == {"shared": True, "instance": "edge-a"}
    last = {g["key"]: g["last_time"] for g in body["groups"]["all_time"]}
    assert last == newest and set(last) == {"edge-a", "edge-b"}

    assert "as edge-a" in status and " f " in f" {footer} "
    # The scripted local model answers every request: 100 % local, nothing spent in the cloud.
    assert "edge-a * 3 100% 0% $0.00" in fleet
    assert "edge-b 1 100% 0% $0.00" in fleet
    assert "2 daemons write this ledger; 2 wrote today: 4 requests" in fleet


def test_a_daemon_with_its_own_sqlite_ledger_has_no_fleet_to_show(tmp_path: Path) -> None:
    with serving(scripted_app(daemon(tmp_path / "laptop"))) as base:
        assert httpx.post(base + "/v1/chat/completions", json=CHAT).status_code == 200
        body = httpx.get(base + "/v1/hybrid/stats", params={"by": "instance"}).json()
        status, fleet, footer = asyncio.run(open_fleet(base))
    assert body["ledger"]["shared"] is False
    assert [g["key"] for g in body["groups"]["all_time"]] == [body["ledger"]["instance"]]
    assert body["groups"]["all_time"][0]["last_time"] is not None
    assert " as " not in status and fleet == "" and " f " not in f" {footer} "
