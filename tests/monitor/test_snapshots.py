"""The main screen, pixel for pixel, at the smallest size it supports and at a large one.

The clock, the time zone and every figure are fixed, so the screenshots are the same on every
machine.  After a deliberate change to the layout, look at the new screenshots and run
``pytest tests/monitor/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest
from monitor_fakes import (
    T0,
    FakeDaemon,
    budget,
    by_instance,
    cloud_record,
    hardware,
    record,
    shared_ledger,
    snapshot,
    totals,
)
from textual.pilot import Pilot

from hybrid.monitor.app import MonitorApp
from hybrid.monitor.link import Backoff
from hybrid.monitor.screens.fleet import FleetScreen

SnapCompare = Callable[..., bool]


def busy_morning(*, gpu: bool) -> FakeDaemon:
    """A daemon that has answered a mix of requests over the last half hour."""
    recent: list[dict[str, Any]] = []
    for i in range(24):
        when = T0 - 15 - i * 70
        if i % 5 == 2:
            recent.append(cloud_record(f"c{i}", time=when, latency_s=1.8 + (i % 3) / 2))
        else:
            recent.append(record(f"l{i}", time=when, latency_s=0.18 + (i % 4) / 20))
    recent[3] = cloud_record(
        "c3",
        time=T0 - 225,
        status="error",
        error="openai: [rate_limited] 429",
        cloud_cost_usd=0.0,
    )
    recent[5] = record(
        "l5",
        time=T0 - 365,
        model="my-finetune",
        price_known=False,
        counterfactual_cost_usd=None,
        cost_avoided_usd=None,
        tokens_estimated=True,
    )
    fake = FakeDaemon()
    fake.snapshot_body = snapshot(
        recent=recent,
        budget=budget(daily_spend_usd=0.37, daily_cap_usd=1.0, state="ok"),
        hardware=hardware(time=T0 - 60, decode_tokens_per_s=66.0, **gpu_fields(gpu)),
    )
    return fake


def gpu_fields(gpu: bool) -> dict[str, Any]:
    if not gpu:
        return {}
    return {
        "gpu_utilization_percent": 45.0,
        "vram_used_bytes": 3_300_000_000,
        "vram_total_bytes": 8_589_934_592,
    }


def decode_speeds() -> list[float]:
    return [66.0, 70.5, 71.2, 64.8, 69.9, 72.4, 12.0, 68.3, 70.1, 71.0]


async def settle(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, MonitorApp)
    for _ in range(200):
        if app.link.state == "live" and app.dashboard.synced:
            break
        await pilot.pause(0.01)
    fake: FakeDaemon = app.fake  # type: ignore[attr-defined]
    gpu = app.dashboard.hardware is not None and app.dashboard.hardware.vram_total_bytes
    for i, speed in enumerate(decode_speeds()):
        sample = hardware(time=T0 - 50 + i * 5, decode_tokens_per_s=speed, **gpu_fields(bool(gpu)))
        fake.send("hardware", sample)
    for _ in range(200):
        if len(app.dashboard.decode_tokens_per_s) == 1 + len(decode_speeds()):
            break
        await pilot.pause(0.01)
    assert len(app.dashboard.decode_tokens_per_s) == 1 + len(decode_speeds())


def monitor(*, gpu: bool) -> MonitorApp:
    fake = busy_morning(gpu=gpu)
    app = MonitorApp.for_url(
        "http://127.0.0.1:8642",
        transport=fake.transport(),
        clock=lambda: T0,
        tz=UTC,
        backoff=Backoff(first_s=0.01, max_s=0.02),
    )
    app.fake = fake  # type: ignore[attr-defined]
    return app


@pytest.mark.parametrize(
    ("size", "gpu"), [((80, 24), False), ((160, 48), True)], ids=["80x24", "160x48-gpu"]
)
def test_main_screen(snap_compare: SnapCompare, size: tuple[int, int], gpu: bool) -> None:
    assert snap_compare(monitor(gpu=gpu), terminal_size=size, run_before=settle)


async def open_fleet(pilot: Pilot[None]) -> None:
    await settle(pilot)
    app = pilot.app
    assert isinstance(app, MonitorApp)
    await pilot.press("f")
    for _ in range(200):
        screen = app.screen
        if isinstance(screen, FleetScreen) and screen.fleet is not None:
            break
        await pilot.pause(0.01)
    assert isinstance(app.screen, FleetScreen) and app.screen.fleet is not None
    await pilot.pause(0.05)


def fleet_monitor(*, gpu: bool) -> MonitorApp:
    app = monitor(gpu=gpu)
    fake: FakeDaemon = app.fake  # type: ignore[attr-defined]
    fake.snapshot_body["ledger"] = shared_ledger("edge-01")
    fake.fleet_body = by_instance(
        [
            ("edge-01", totals(requests=24, local=19, cloud=5), totals(requests=1480), T0 - 15),
            ("edge-02", totals(requests=131, local=88, lan=21, cloud=22), totals(), T0 - 3),
            ("edge-03-with-a-long-host-name", totals(requests=0), totals(requests=77), T0 - 9e4),
            ("", totals(requests=0), totals(requests=310), T0 - 40 * 86_400),
        ]
    )
    return app


@pytest.mark.parametrize(
    ("size", "gpu"), [((80, 24), False), ((160, 48), True)], ids=["80x24", "160x48-gpu"]
)
def test_fleet_screen(snap_compare: SnapCompare, size: tuple[int, int], gpu: bool) -> None:
    assert snap_compare(fleet_monitor(gpu=gpu), terminal_size=size, run_before=open_fleet)
