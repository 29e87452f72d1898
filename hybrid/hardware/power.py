"""Battery level and AC/battery, through psutil."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from hybrid.hardware.snapshot import PowerInfo


class PowerSource(Protocol):
    """Where the probe gets the battery state from."""

    def read(self) -> PowerInfo:
        """Return the battery state; cheap enough to call once a second."""
        ...


def read_psutil_battery() -> Any:
    """Return ``psutil.sensors_battery()``: an object with ``percent`` and ``power_plugged``.

    Returns:
        The psutil battery tuple, or ``None`` when there is no battery or the platform has no
        battery sensor at all.
    """
    import psutil  # type: ignore[import-untyped,unused-ignore]

    sensors_battery = getattr(psutil, "sensors_battery", None)
    if sensors_battery is None:
        return None
    try:
        return sensors_battery()
    except (OSError, RuntimeError):
        # A half-present /sys/class/power_supply entry is as good as no battery.
        return None


class BatteryPowerSource:
    """The real power source over psutil's battery sensor."""

    def __init__(self, battery: Callable[[], Any] = read_psutil_battery) -> None:
        """Create the source.

        Args:
            battery: Returns a psutil-style battery (``percent``, ``power_plugged``) or ``None``.
        """
        self._battery = battery

    def read(self) -> PowerInfo:
        """Return the battery state; ``PowerInfo(None, None)`` without a battery."""
        battery = self._battery()
        if battery is None:
            return PowerInfo(battery_percent=None, on_battery=None)
        plugged = battery.power_plugged
        percent = battery.percent
        return PowerInfo(
            battery_percent=None if percent is None else float(percent),
            # psutil says None when the OS cannot tell: keep "unknown" rather than guess.
            on_battery=None if plugged is None else not plugged,
        )
