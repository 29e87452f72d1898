"""``StatusLine``: the top line: is the monitor live, which daemon, which mode, what time."""

from __future__ import annotations

from datetime import datetime, tzinfo

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from hybrid.monitor.link import LinkStatus
from hybrid.monitor.state import Dashboard

_STATES = {
    "connecting": ("◌ connecting", "bold yellow"),
    "live": ("● live", "bold green"),
    "offline": ("✕ offline", "bold red"),
}


class StatusLine(Static):
    """One line: ``hybrid monitor  ● live  http://127.0.0.1:8642  mode auto  14:03:07``
    (``as edge-07`` after the mode when the daemon is one of a fleet sharing a ledger).

    The state is written out as a word as well as a colour, so it reads under NO_COLOR; so is
    the count of events the monitor could not read, when there are any.
    """

    link: reactive[LinkStatus] = reactive(lambda: LinkStatus("connecting"))
    dashboard: reactive[Dashboard] = reactive(Dashboard)
    now: reactive[float] = reactive(0.0)

    def __init__(self, url: str, *, tz: tzinfo | None, id: str | None = None) -> None:
        """Create the line.

        Args:
            url: The daemon's URL, shown as is.
            tz: The zone the clock is shown in; None for the machine's.
            id: The widget's DOM id.
        """
        super().__init__(id=id)
        self._url = url
        self._tz = tz

    def render(self) -> Text:
        label, style = _STATES[self.link.state]
        text = Text.assemble((" hybrid monitor", "bold"), "  ")
        text.append(label, style=style)
        text.append(f"  {self._url}")
        mode = self.dashboard.mode
        if mode is not None:
            text.append("  mode ")
            text.append(mode, style="bold")
        ledger = self.dashboard.ledger
        if ledger is not None and ledger.shared:
            # One of a fleet sharing a ledger: which one this is (f lists the others).
            text.append("  as ")
            text.append(ledger.instance, style="bold")
        if self.dashboard.malformed_events:
            # Written out, not only coloured: the daemon and monitor disagree on the format.
            text.append(f"  ⚠ {self.dashboard.malformed_events} unreadable", style="bold yellow")
        if self.now:
            clock = datetime.fromtimestamp(self.now, self._tz).strftime("%H:%M:%S")
            # Right-aligned: pad so the clock ends at the last column.
            gap = max(2, self.size.width - text.cell_len - len(clock) - 1)
            text.append(" " * gap + clock)
        return text
