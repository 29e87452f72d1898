"""How the monitor writes numbers: money, tokens, bytes, durations, rates.

Pure functions, so every widget writes the same figure the same way, and so that the
formatting is tested without a terminal.
"""

from __future__ import annotations

import math

UNKNOWN = "?"
"""Shown for a figure that is not known (an unpriced model's cost): never a made-up 0."""


def money(usd: float | None, *, significant: int = 3) -> str:
    """Write a dollar amount with as many digits as its size needs.

    Per-request costs are tiny (a few millionths of a dollar) and totals grow large, so the
    precision follows the magnitude: ``$1,234``, ``$12.34``, ``$0.31``, ``$0.0131``,
    ``$0.0000312``.

    Args:
        usd: The amount, None when unknown.
        significant: Significant digits below a cent (``$0.0000312`` with 3, ``$0.000031``
            with 2).

    Returns:
        The amount with a ``$`` (``-$0.50`` below zero), :data:`UNKNOWN` for None.
    """
    if usd is None or math.isnan(usd):
        return UNKNOWN
    sign = "-" if usd < 0 else ""
    amount = abs(usd)
    if amount == 0:
        text = "0.00"
    elif amount >= 1000:
        text = f"{amount:,.0f}"
    elif amount >= 1:
        text = f"{amount:,.2f}"
    else:
        # Written out ("0.0000312", never "3.12e-05"), with no trailing zeros past the cents.
        decimals = max(2, significant - 1 - math.floor(math.log10(amount)))
        text = f"{amount:.{decimals}f}"
        whole, _, fraction = text.partition(".")
        text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    return f"{sign}${text}"


def count(value: int) -> str:
    """Write a count compactly: ``950``, ``1.8k``, ``12k``, ``3.4M``."""
    if value < 1000:
        return str(value)
    if value < 10_000:
        return f"{value / 1000:.1f}k"
    if value < 1_000_000:
        return f"{value / 1000:.0f}k"
    return f"{value / 1_000_000:.1f}M"


def size(num_bytes: int | None) -> str:
    """Write a byte count in binary units (``7.6 GiB``); :data:`UNKNOWN` for None."""
    if num_bytes is None:
        return UNKNOWN
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def seconds(value: float | None) -> str:
    """Write a duration: ``41 ms`` below a second, ``1.4 s`` below a minute, else ``2m05s``."""
    if value is None:
        return UNKNOWN
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes}m{rest:02d}s"


def percent(share: float | None, *, of_one: bool = False) -> str:
    """Write a percentage with no decimals.

    Args:
        share: The value; None writes :data:`UNKNOWN`.
        of_one: ``share`` is a fraction (0..1) rather than already a percentage (0..100).
    """
    if share is None:
        return UNKNOWN
    return f"{share * 100 if of_one else share:.0f}%"


def gauge(fraction: float, width: int) -> str:
    """Draw a bar ``width`` cells wide, filled to ``fraction`` (clamped to 0..1).

    Eighth-blocks give the bar sub-cell resolution; the empty part is drawn too, so the bar
    reads without colour (NO_COLOR).
    """
    if width <= 0:
        return ""
    filled_eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(filled_eighths, 8)
    bar = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
    return bar + "░" * (width - len(bar))


def ago(elapsed_s: float) -> str:
    """Write how long ago something happened: ``now``, ``42 s ago``, ``7 min ago``,
    ``3 h ago``, ``2 d ago`` (rounded down; a time in the future, a skewed clock, is ``now``)."""
    if elapsed_s < 1:
        return "now"
    for unit, length in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if elapsed_s >= length:
            return f"{int(elapsed_s // length)} {unit} ago"
    return f"{int(elapsed_s)} s ago"
