"""Battery state from a fake psutil battery."""

from __future__ import annotations

import types

import pytest

from hybrid.hardware.power import BatteryPowerSource
from hybrid.hardware.snapshot import PowerInfo


def battery(percent: float | None, plugged: bool | None) -> types.SimpleNamespace:
    return types.SimpleNamespace(percent=percent, power_plugged=plugged, secsleft=3600)


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (battery(23, False), PowerInfo(battery_percent=23.0, on_battery=True)),
        (battery(100, True), PowerInfo(battery_percent=100.0, on_battery=False)),
        (battery(55.5, None), PowerInfo(battery_percent=55.5, on_battery=None)),
        (None, PowerInfo(battery_percent=None, on_battery=None)),
    ],
    ids=["on-battery", "on-ac", "unknown-source", "no-battery"],
)
def test_battery_states(reading: object, expected: PowerInfo) -> None:
    assert BatteryPowerSource(battery=lambda: reading).read() == expected
