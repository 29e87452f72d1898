"""``Trend``: a label, a sparkline, and the latest value, on one row."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Label, Sparkline


class Trend(Widget):
    """One labelled chart: ``req/min local ▁▂▅█▃ 3``.

    Attributes:
        values: The series, oldest first.
        caption: The figure written after the chart (the latest value, formatted).
    """

    values: reactive[tuple[float, ...]] = reactive(tuple)
    caption: reactive[str] = reactive("")

    def __init__(self, label: str, *, id: str | None = None) -> None:
        """Create an empty chart.

        Args:
            label: What the series is (``req/min local``).
            id: The widget's DOM id.
        """
        super().__init__(id=id)
        self._label = label

    def compose(self) -> ComposeResult:
        yield Label(self._label, classes="trend--label")
        yield Sparkline([], classes="trend--chart")
        yield Label("", classes="trend--caption")

    def show(self, values: Sequence[float], caption: str) -> None:
        """Replace the series and its caption."""
        self.values = tuple(values)
        self.caption = caption

    def watch_values(self, values: tuple[float, ...]) -> None:
        self.query_one(Sparkline).data = list(values)

    def watch_caption(self, caption: str) -> None:
        self.query_one(".trend--caption", Label).update(caption)
