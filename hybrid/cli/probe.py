"""``hybrid probe``: show this machine's hardware and how each model found would run on it.

With ``[[lan.servers]]`` configured, each team server is checked too: up or down (and why),
the models it lists and the load it reports.

The plans use the same settings ``hybrid serve`` does (``local.max_ctx``, and ``local.n_ctx``,
``local.n_threads``, ``local.n_gpu_layers`` when set), so the report predicts what serving
would do.  The model list comes from :mod:`hybrid.models.catalog`; if that fails the hardware
report is still printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from hybrid.hardware.plan import RuntimePlan
    from hybrid.hardware.snapshot import HardwareSnapshot
    from hybrid.settings import Settings

HELP = "show this machine's CPU, memory, GPUs and how each local model would run here"
SETTINGS_FLAGS = {"measure_bandwidth": "probe.measure_bandwidth"}

Discover = Callable[["Settings"], Sequence[Any]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--json`` and ``--no-bench``."""
    parser.add_argument(
        "--json", action="store_true", help='print {"hardware": {...}, "models": [...]} as JSON'
    )
    parser.add_argument(
        "--no-bench",
        dest="measure_bandwidth",
        action="store_const",
        const=False,
        default=None,
        help="skip the memory bandwidth benchmark (a cached figure is still used)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Probe the hardware, plan every discovered model, print the report.

    Args:
        args: ``args.json`` selects JSON output.
        settings: Supplies the data dir (bandwidth cache), ``probe.measure_bandwidth`` (which
            ``--no-bench`` turns off) and the ``local`` settings the plans honour.

    Returns:
        0.
    """
    from hybrid.hardware.probe import probe_for

    probe = probe_for(settings.home)
    snapshot = probe.snapshot(measure_bandwidth=settings.probe.measure_bandwidth)
    return print_report(
        snapshot, settings, as_json=bool(args.json), discover=discover_models, out=sys.stdout
    )


def print_report(
    snapshot: HardwareSnapshot,
    settings: Settings,
    *,
    as_json: bool,
    discover: Discover,
    out: TextIO,
    err: TextIO | None = None,
) -> int:
    """Plan the discovered models for ``snapshot`` and print the text or JSON report.

    Args:
        snapshot: What the probe saw.
        settings: The ``local`` settings the plans honour.
        as_json: Print JSON instead of text.
        discover: Lists models (objects with ``name``, ``footprint`` and, optionally,
            ``error``); if it raises, the models section is left out and a warning goes to
            ``err``.
        out: Where the report goes.
        err: Where warnings go (default: stderr).

    Returns:
        0.
    """
    from hybrid.hardware.render import render_snapshot_text, snapshot_json

    plans, skipped = _plan_models(snapshot, settings, discover, err or sys.stderr)
    lan = lan_report(settings) if settings.lan.servers else None
    if as_json:
        body = snapshot_json(snapshot, plans, skipped=skipped)
        if lan is not None:
            body["lan"] = lan
        json.dump(body, out, indent=2)
        out.write("\n")
    else:
        out.write(render_snapshot_text(snapshot, plans, skipped=skipped))
        if lan is not None:
            out.write(render_lan(lan, settings.lan.strategy))
    return 0


def lan_report(settings: Settings) -> list[dict[str, Any]]:
    """Check every ``[[lan.servers]]`` entry once: health, models and load, as ``/health``'s
    ``lan`` block gives them."""
    import asyncio

    from hybrid.lan.pool import LanPool
    from hybrid.service.providers import reliability_policy

    async def check() -> list[dict[str, Any]]:
        pool = LanPool(settings.lan, reliability_policy(settings.cloud))
        try:
            await pool.start()
            return pool.to_json()
        finally:
            await pool.aclose()

    return asyncio.run(check())


def render_lan(servers: Sequence[dict[str, Any]], strategy: str) -> str:
    """The LAN servers section of the text report."""
    lines = ["", f"LAN servers ({strategy.replace('_', '-')}):"]
    for server in servers:
        lines.append(f"  {server['name']}  {server['base_url']}")
        if not server["up"]:
            lines.append(f"      down: {server['error'] or 'no answer'}")
            continue
        trust = "trusted" if server["trusted"] else "not trusted with private data"
        lines.append(f"      up; models: {', '.join(server['models']) or 'none listed'}; {trust}")
        load = server["load"]
        if load is None:
            lines.append(
                "      load: not reported; hybrid counts its own requests "
                f"(at most {server['max_concurrency']} at once)"
            )
        else:
            parts = [f"{load['running']} running" if load["running"] is not None else None]
            if load["slots_total"] is not None:
                parts.append(f"{load['slots_total']} slots")
            if load["waiting"] is not None:
                parts.append(f"{load['waiting']} waiting")
            said = ", ".join(part for part in parts if part) or "models loaded only"
            lines.append(f"      load: {said} (from {load['source']})")
    return "\n".join(lines) + "\n"


def discover_models(settings: Settings) -> Sequence[Any]:
    """List the models ``hybrid.models.catalog`` finds (imported lazily: it reads headers)."""
    from hybrid.models.catalog import discover_models as discover

    return discover(settings)


def _plan_models(
    snapshot: HardwareSnapshot, settings: Settings, discover: Discover, err: TextIO
) -> tuple[list[tuple[str, RuntimePlan]] | None, list[tuple[str, str]]]:
    from hybrid.errors import HybridError
    from hybrid.hardware.plan import plan_with_settings

    try:
        entries = list(discover(settings))
    except Exception as exc:
        # The hardware report is useful on its own; a broken catalog must not hide it.
        print(f"hybrid: warning: could not list the local models ({exc})", file=err)
        return None, []
    plans: list[tuple[str, RuntimePlan]] = []
    skipped: list[tuple[str, str]] = []
    for entry in entries:
        footprint = entry.footprint
        if footprint is None:
            skipped.append((entry.name, getattr(entry, "error", None) or "unreadable header"))
            continue
        try:
            plan = plan_with_settings(snapshot, footprint, settings.local)
        except HybridError as exc:
            skipped.append((entry.name, str(exc)))
            continue
        plans.append((entry.name, plan))
    return plans, skipped
