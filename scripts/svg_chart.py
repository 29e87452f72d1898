"""Line charts as SVG text, with nothing beyond the standard library.

The evaluation scripts draw a few curves side by side; a plotting library would be a dependency
the README's install does not bring.  SVG is text, so the figure diffs and opens in any browser
or Markdown viewer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

DASHES = {"-": "", "--": "6 4", "-.": "7 3 2 3", ":": "2 3"}
"""matplotlib's line styles as SVG ``stroke-dasharray`` values."""

PANEL_WIDTH = 520
PANEL_HEIGHT = 420
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 36, 52
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"


@dataclass(frozen=True)
class Series:
    """One curve: points joined by a line, or drawn as dots.

    Attributes:
        label: The legend's text.
        xs: X values, in data units.
        ys: Y values, one per x.
        colour: Any SVG colour.
        style: ``"-"``, ``"--"``, ``"-."`` or ``":"``, as in matplotlib.
        dots: Draw each point as a dot instead of joining them.
    """

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    colour: str
    style: str = "-"
    dots: bool = False


@dataclass(frozen=True)
class Panel:
    """One chart: axes, title, curves and horizontal reference lines."""

    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    x_range: tuple[float, float]
    hlines: Sequence[float] = field(default_factory=tuple)


def render(panels: Sequence[Panel]) -> str:
    """Return an SVG document with the panels side by side.

    The y axis of each panel spans 0 to 1, widened to every value shown.
    """
    width = PANEL_WIDTH * len(panels)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{PANEL_HEIGHT}' "
        f"viewBox='0 0 {width} {PANEL_HEIGHT}' {FONT} font-size='12'>",
        f"<rect width='{width}' height='{PANEL_HEIGHT}' fill='white'/>",
    ]
    for index, panel in enumerate(panels):
        parts.append(f"<g transform='translate({index * PANEL_WIDTH},0)'>")
        parts.extend(_panel(panel))
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(panel: Panel) -> list[str]:
    values = [y for series in panel.series for y in series.ys if math.isfinite(y)]
    y_low, y_high = min([0.0, *values]), max([1.0, *values])
    x_low, x_high = panel.x_range
    left, right = MARGIN_LEFT, PANEL_WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, PANEL_HEIGHT - MARGIN_BOTTOM

    def x_at(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * (right - left)

    def y_at(y: float) -> float:
        return bottom - (y - y_low) / (y_high - y_low) * (bottom - top)

    out = [
        f"<text x='{(left + right) / 2}' y='{top - 14}' text-anchor='middle' "
        f"font-size='13'>{escape(panel.title)}</text>",
    ]
    for tick in _ticks(x_low, x_high):
        x = x_at(tick)
        out.append(_line(x, top, x, bottom, "#e5e5e5"))
        out.append(f"<text x='{x:.1f}' y='{bottom + 16}' text-anchor='middle'>{tick:g}</text>")
    for tick in _ticks(y_low, y_high):
        y = y_at(tick)
        out.append(_line(left, y, right, y, "#e5e5e5"))
        out.append(f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{tick:g}</text>")
    for level in panel.hlines:
        out.append(_line(left, y_at(level), right, y_at(level), "#888888"))
    out.append(
        f"<rect x='{left}' y='{top}' width='{right - left}' height='{bottom - top}' "
        "fill='none' stroke='black' stroke-width='0.8'/>"
    )
    out.append(
        f"<text x='{(left + right) / 2}' y='{PANEL_HEIGHT - 14}' text-anchor='middle'>"
        f"{escape(panel.x_label)}</text>"
    )
    out.append(
        f"<text transform='translate(16,{(top + bottom) / 2}) rotate(-90)' "
        f"text-anchor='middle'>{escape(panel.y_label)}</text>"
    )
    for series in panel.series:
        points = [
            (x_at(x), y_at(y))
            for x, y in zip(series.xs, series.ys, strict=True)
            if math.isfinite(x) and math.isfinite(y)
        ]
        if series.dots:
            out.extend(
                f"<circle cx='{x:.1f}' cy='{y:.1f}' r='4' fill={quoteattr(series.colour)}/>"
                for x, y in points
            )
        else:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(
                f"<polyline points='{path}' fill='none' stroke={quoteattr(series.colour)} "
                f"stroke-width='1.6' stroke-dasharray='{DASHES[series.style]}'/>"
            )
    out.extend(_legend(panel.series, right - 8, bottom - 8))
    return out


def _legend(series: Sequence[Series], right: float, bottom: float) -> list[str]:
    """A legend box whose lower right corner is at (right, bottom)."""
    row, sample = 16, 26
    width = 16 + sample + 7 * max(len(s.label) for s in series)
    height = 8 + row * len(series)
    left, top = right - width, bottom - height
    out = [
        f"<rect x='{left}' y='{top}' width='{width}' height='{height}' fill='white' "
        "fill-opacity='0.9' stroke='#cccccc'/>"
    ]
    for index, item in enumerate(series):
        y = top + 4 + row * index + row / 2
        colour = quoteattr(item.colour)
        if item.dots:
            out.append(f"<circle cx='{left + 8 + sample / 2}' cy='{y}' r='4' fill={colour}/>")
        else:
            out.append(
                f"<line x1='{left + 8}' y1='{y}' x2='{left + 8 + sample}' y2='{y}' "
                f"stroke={colour} stroke-width='1.6' "
                f"stroke-dasharray='{DASHES[item.style]}'/>"
            )
        out.append(
            f"<text x='{left + 12 + sample}' y='{y + 4}' font-size='11'>{escape(item.label)}</text>"
        )
    return out


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return (
        f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' stroke='{colour}' "
        "stroke-width='0.8'/>"
    )


def _ticks(low: float, high: float) -> list[float]:
    """About five round tick values from low to high."""
    raw = (high - low) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9)
    return [round(tick * step, 10) for tick in range(first, math.floor(high / step + 1e-9) + 1)]
