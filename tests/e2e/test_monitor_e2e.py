"""`hybrid monitor` against a real `hybrid serve`, with real requests from the openai SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from rich.text import Text
from server_process import RunningServer
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from hybrid.monitor.app import MonitorApp

pytestmark = pytest.mark.slow


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):  # at most about 20 s: the real model answers on two cores
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"the monitor never showed {what}")


def text_of(app: MonitorApp, selector: str) -> str:
    widget = app.query_one(selector, Static)
    content = widget.content
    return content.plain if isinstance(content, Text) else str(content)


def log_routes(app: MonitorApp) -> list[str]:
    table: DataTable[Text] = app.query_one("#log-table", DataTable)
    return [table.get_row_at(i)[1].plain for i in range(table.row_count)]


def test_the_monitor_follows_a_real_daemon_as_the_sdk_sends_requests(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    # A ledger of its own: the e2e servers share one data folder.
    env = {
        "HYBRID_PROBE__SAMPLE_INTERVAL_S": "0.2",
        "HYBRID_LEDGER__PATH": str(tmp_path / "ledger.sqlite3"),
    }
    server = start_server(env=env)
    client = OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)

    def ask() -> None:
        client.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=8,
        )

    async def scenario() -> None:
        app = MonitorApp.for_url(server.base_url, tz=UTC)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.dashboard.synced, "the daemon's snapshot")
            assert app.dashboard.today.requests == 0

            await asyncio.to_thread(ask)
            await asyncio.to_thread(ask)
            await until(pilot, lambda: len(log_routes(app)) == 2, "the two requests")
            assert log_routes(app) == ["local", "local"]
            assert app.dashboard.today.requests == 2
            assert app.dashboard.today.cost_avoided_usd > 0
            await until(pilot, lambda: "CPU" in text_of(app, "#machine"), "a hardware sample")

            await pilot.press("m")
            await until(pilot, lambda: app.dashboard.mode == "local-only", "the new mode")

        stats = httpx.get(server.base_url + "/v1/hybrid/stats").json()
        assert stats["mode"] == "local-only"
        assert stats["today"]["requests"] == 2
        assert stats["today"]["cost_avoided_usd"] == pytest.approx(
            app.dashboard.today.cost_avoided_usd
        )

    asyncio.run(scenario())
    assert server.stop() == 0
