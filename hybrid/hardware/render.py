"""The ``hybrid probe`` report: aligned text for people, a JSON-ready dict for programs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from hybrid.hardware.plan import RuntimePlan
from hybrid.hardware.snapshot import GpuInfo, HardwareSnapshot

MIB = 1024**2
GIB = 1024**3

LABEL_WIDTH = 11


def size(size_bytes: int) -> str:
    """Format bytes as GiB (one decimal) from 1 GiB up, as whole MiB below."""
    if size_bytes >= GIB:
        return f"{size_bytes / GIB:.1f} GiB"
    return f"{size_bytes / MIB:.0f} MiB"


def render_snapshot_text(
    snapshot: HardwareSnapshot,
    plans: list[tuple[str, RuntimePlan]] | None,
    *,
    skipped: Sequence[tuple[str, str]] = (),
) -> str:
    """Render the probe as an aligned, human-readable report.

    Args:
        snapshot: What the probe saw.
        plans: ``(model name, plan)`` pairs; ``None`` leaves the models section out.
        skipped: ``(model name, reason)`` for models that could not be planned (unreadable
            header, ...); listed under the plans.

    Returns:
        The report, lines joined with newlines, ending in a newline.
    """
    lines: list[str] = []

    def row(label: str, *texts: str) -> None:
        for number, text in enumerate(texts):
            lines.append(f"{label if number == 0 else '':<{LABEL_WIDTH}}{text}".rstrip())

    cpu = snapshot.cpu
    row(
        "CPU",
        f"{cpu.model} ({cpu.arch})",
        f"{cpu.physical_cores} physical / {cpu.logical_cores} logical cores, "
        f"load {cpu.load_percent:.0f} %",
        f"SIMD: {' '.join(cpu.features) if cpu.features else 'none detected'}",
    )
    memory = snapshot.memory
    memory_lines = [
        f"{size(memory.total_bytes)} total, {size(memory.available_bytes)} available",
        "swap: none"
        if memory.swap_total_bytes == 0
        else f"swap: {size(memory.swap_total_bytes)}, {size(memory.swap_free_bytes)} free",
    ]
    if memory.cgroup_limit_bytes is not None:
        used = memory.cgroup_usage_bytes
        memory_lines.append(
            f"container limit: {size(memory.cgroup_limit_bytes)}"
            + ("" if used is None else f" ({size(used)} in use)")
            + f", {size(memory.usable_available_bytes)} usable now"
        )
    row("Memory", *memory_lines)
    bandwidth = snapshot.memory_bandwidth_bytes_per_s
    row(
        "Bandwidth",
        "not measured (run `hybrid probe` without --no-bench)"
        if bandwidth is None
        else f"{bandwidth / 1e9:.1f} GB/s (CPU memory copy)",
    )
    if snapshot.gpus:
        for gpu in snapshot.gpus:
            row(f"GPU {gpu.index}", _gpu_line(gpu))
    else:
        row("GPU", "none found")
    row(
        "Offload",
        "this llama.cpp build can offload to a GPU"
        if snapshot.gpu_offload_supported
        else "this llama.cpp build is CPU-only",
    )
    power = snapshot.power
    if power.battery_percent is None:
        power_text = "no battery"
    else:
        state = {True: "on battery", False: "on AC power", None: "power source unknown"}
        power_text = f"battery {power.battery_percent:.0f} %, {state[power.on_battery]}"
    row("Power", power_text)

    if plans is not None:
        lines.append("")
        lines.append("Models")
        if not plans and not skipped:
            lines.append("  none found")
        lines.extend(_plan_lines(plans, skipped))
    return "\n".join(lines) + "\n"


def snapshot_json(
    snapshot: HardwareSnapshot,
    plans: list[tuple[str, RuntimePlan]] | None = None,
    *,
    skipped: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Return the probe as a JSON-ready dict (``hybrid probe --json``).

    Args:
        snapshot: What the probe saw.
        plans: ``(model name, plan)`` pairs, or ``None``.
        skipped: ``(model name, reason)`` for models that could not be planned.

    Returns:
        ``{"hardware": snapshot.to_dict(), "models": [...]}``; each model is
        ``{"name", "plan", "problem"}`` with ``plan`` the plan's fields (``notes`` a list) or
        ``None``, and ``problem`` ``None`` or why there is no plan.
    """
    models: list[dict[str, Any]] = []
    for name, plan in plans or []:
        fields = asdict(plan)
        fields["notes"] = list(plan.notes)
        models.append({"name": name, "plan": fields, "problem": None})
    models.extend({"name": name, "plan": None, "problem": reason} for name, reason in skipped)
    return {"hardware": snapshot.to_dict(), "models": models}


def _gpu_line(gpu: GpuInfo) -> str:
    parts = [
        f"{gpu.name} ({gpu.vendor})",
        f"{size(gpu.vram_total_bytes)} {'unified' if gpu.unified_memory else 'VRAM'}",
        f"{size(gpu.vram_free_bytes)} free",
    ]
    if gpu.utilization_percent is not None:
        parts.append(f"{gpu.utilization_percent:.0f} % busy")
    if gpu.memory_bandwidth_bytes_per_s is not None:
        parts.append(f"{gpu.memory_bandwidth_bytes_per_s / 1e9:.0f} GB/s")
    return ", ".join(parts)


def _plan_lines(
    plans: list[tuple[str, RuntimePlan]], skipped: Sequence[tuple[str, str]]
) -> list[str]:
    rows = [
        (
            name,
            "fits" if plan.fits else "TOO BIG",
            f"n_ctx {plan.n_ctx:,}",
            f"{plan.n_parallel} slot{'s' if plan.n_parallel > 1 else ''} "
            f"(KV {plan.kv_cache_type}, {size(plan.kv_bytes_per_slot)} each)",
            f"threads {plan.n_threads}",
            f"GPU layers {plan.n_gpu_layers}",
            f"needs {size(plan.memory_required_bytes)}",
            "speed unknown"
            if plan.predicted_tokens_per_s is None
            else f"~{plan.predicted_tokens_per_s:.0f} tok/s",
        )
        for name, plan in plans
    ]
    widths = [max(len(cells[column]) for cells in rows) for column in range(8)] if rows else []
    lines: list[str] = []
    for cells, (_, plan) in zip(rows, plans, strict=True):
        lines.append(
            "  "
            + "  ".join(
                cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
            ).rstrip()
        )
        lines.append(f"      {_slot_line(plan)}")
        lines.extend(f"      - {note}" for note in plan.notes)
    lines.extend(f"  {name}  (no plan: {reason})" for name, reason in skipped)
    return lines


def _slot_line(plan: RuntimePlan) -> str:
    """The slots and where the plan's memory goes: each slot's KV cache and cost, the rest."""
    slots = plan.n_parallel
    shared = max(0, plan.memory_required_bytes - slots * plan.slot_bytes)
    attention = " with flash attention" if plan.flash_attn else ""
    return (
        f"slots: {slots} x {plan.n_ctx:,} tokens, KV cache {plan.kv_cache_type}{attention}; "
        f"each slot {size(plan.slot_bytes)} (KV cache {size(plan.kv_bytes_per_slot)}); needs "
        f"{size(plan.memory_required_bytes)} = {slots} x {size(plan.slot_bytes)} + "
        f"{size(shared)} of weights and compute buffer"
    )
