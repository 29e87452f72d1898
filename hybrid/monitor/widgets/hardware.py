"""``HardwarePanel``: how hard the daemon's machine is working, and what model it runs."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from hybrid.monitor import format as fmt
from hybrid.monitor.state import Dashboard
from hybrid.monitor.wire import HardwareSample, ModelInfo


class HardwarePanel(Static):
    """CPU, RAM, GPU and VRAM (when there is a GPU), power, the local queue, the model."""

    dashboard: reactive[Dashboard] = reactive(Dashboard)

    def on_mount(self) -> None:
        self.border_title = "machine"

    def watch_dashboard(self, dashboard: Dashboard) -> None:
        self.update(machine_lines(dashboard.hardware, dashboard.in_flight, dashboard.model))


def machine_lines(hardware: HardwareSample | None, in_flight: int, model: ModelInfo | None) -> Text:
    """The panel's text.

    Args:
        hardware: The latest sample, None before the first.
        in_flight: Requests started and not finished.
        model: The local model and its state.

    Returns:
        One line each: CPU and RAM; GPU and VRAM (``no GPU`` without one); power; the queue;
        the model.
    """
    text = Text()
    if hardware is None:
        text.append("no hardware sample yet\n")
    else:
        text.append(f"CPU {fmt.percent(hardware.cpu_percent)}  RAM ")
        text.append(fmt.percent(hardware.memory_percent))
        if hardware.memory_available_bytes is not None:
            text.append(f" · {fmt.size(hardware.memory_available_bytes)} free")
        text.append("\n")
        text.append(_gpu_line(hardware) + "\n")
        text.append(_power_line(hardware) + "\n")
        text.append(f"queue {hardware.queue_depth} · in flight {in_flight}\n")
    if model is not None:
        text.append(model.id, style="bold")
        text.append(f" {model.state}")
    return text


def _gpu_line(hardware: HardwareSample) -> str:
    if hardware.gpu_utilization_percent is None and hardware.vram_total_bytes is None:
        return "no GPU"
    line = f"GPU {fmt.percent(hardware.gpu_utilization_percent)}"
    if hardware.vram_total_bytes is not None:
        used = fmt.size(hardware.vram_used_bytes)
        line += f"  VRAM {used} / {fmt.size(hardware.vram_total_bytes)}"
    return line


def _power_line(hardware: HardwareSample) -> str:
    if hardware.battery_percent is None:
        return "power AC" if hardware.on_battery is not True else "on battery"
    source = "on battery" if hardware.on_battery else "AC"
    return f"power {source} · battery {fmt.percent(hardware.battery_percent)}"
