"""``hybrid recommend``: which curated instruct GGUF to pull for this machine, and why.

See :mod:`hybrid.models.recommend` for the list and the ranking; each line ends with the
``hybrid pull`` command that fetches the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from hybrid.hardware.snapshot import HardwareSnapshot
    from hybrid.models.recommend import Ranked
    from hybrid.settings import Settings

HELP = "rank a curated list of instruct GGUF models for this machine, with the pull command"


class SnapshotSource(Protocol):
    """What ``hybrid recommend`` needs of the hardware probe."""

    def snapshot(self, *, measure_bandwidth: bool = True) -> HardwareSnapshot:
        """Take a hardware snapshot."""
        ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of ``hybrid recommend``."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a list")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Rank the curated models for this machine and print them.

    Returns:
        0.
    """
    from hybrid.hardware.probe import probe_for

    return recommend(settings, probe_for(settings.home), as_json=bool(args.json), out=sys.stdout)


def recommend(settings: Settings, probe: SnapshotSource, *, as_json: bool, out: TextIO) -> int:
    """Probe the machine, rank the curated models, print them.

    Args:
        settings: The ``local.*`` planning settings and ``probe.measure_bandwidth``.
        probe: Takes the hardware snapshot.
        as_json: Print ``{"models": [...]}`` instead of text.
        out: Where it goes.

    Returns:
        0.
    """
    from hybrid.models.recommend import load_recommended, rank

    snapshot = probe.snapshot(measure_bandwidth=settings.probe.measure_bandwidth)
    ranked = rank(load_recommended(), snapshot, settings.local)
    if as_json:
        print(json.dumps({"models": [r.to_json() for r in ranked]}, indent=2), file=out)
    else:
        print(render(ranked), end="", file=out)
    return 0


def render(ranked: list[Ranked]) -> str:
    """The text listing: best first, a why line and a pull command each."""
    lines = ["Recommended instruct models for this machine, best first:", ""]
    for number, item in enumerate(ranked, start=1):
        model = item.model
        size = f"{model.size_bytes / (1 << 30):.1f} GiB" + (
            "" if model.size_exact else " (approx.)"
        )
        quality = "; ".join(f"{q.benchmark} {q.score:g}" for q in model.quality)
        lines.append(
            f"{number}. {model.id} ({model.parameters}, {model.quant}, {size}, "
            f"{model.licence}){f', {quality}' if quality else ''}"
        )
        lines.append(f"   {model.summary}")
        lines.append(f"   {item.why}")
        lines.append(f"   {model.pull_command}")
    lines.append("")
    lines.append("Quality figures come from each model's card; `--json` names the source.")
    return "\n".join(lines) + "\n"
