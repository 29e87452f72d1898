"""``FleetScreen``: the daemons that write this daemon's ledger, one row each (the ``f`` key).

Daemons that share one PostgreSQL ledger (``ledger.url``) each name their records
(``ledger.instance``); the screen reads ``GET /v1/hybrid/stats?by=instance`` when it opens and
every :data:`FLEET_INTERVAL_S` while it stays open, and shows per daemon today's requests, the
shares answered locally, by a LAN server and in the cloud, cloud spend and cost avoided today,
and when it wrote its newest record.  A daemon with a ledger of its own (SQLite, the default)
has no fleet: the screen says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, tzinfo

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from hybrid.monitor import format as fmt
from hybrid.monitor.client import DaemonUnreachable
from hybrid.monitor.link import FleetLink
from hybrid.monitor.wire import Fleet, Instance, Totals

FLEET_INTERVAL_S = 5.0
"""Seconds between two reads of the fleet while the screen is open."""

NOT_SHARED = (
    "This daemon keeps a ledger of its own (SQLite, the default): there is no fleet to show. "
    "Daemons that share one PostgreSQL ledger (ledger.url, or HYBRID_LEDGER__URL) appear here, "
    "one row each."
)
"""What the screen says for a daemon whose ledger no other daemon writes."""

UNNAMED = "(unnamed)"
"""The row of records written before daemons named them (schema version 6)."""


class FleetScreen(ModalScreen[None]):
    """Every daemon writing the ledger, refreshed while open; Esc, f or q closes it."""

    BINDINGS = [  # noqa: RUF012 - Textual's declared type
        Binding("escape,f,q", "dismiss", "close"),
    ]

    def __init__(
        self,
        daemon: FleetLink,
        *,
        this: str | None,
        clock: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
        interval_s: float = FLEET_INTERVAL_S,
    ) -> None:
        """Show the fleet of ``daemon``'s ledger.

        Args:
            daemon: Where the fleet is read from.
            this: The monitored daemon's own instance name (its row is marked), None when
                not known.
            clock: Unix time now: how long ago each daemon wrote.
            tz: The zone times are shown in; None for the machine's.
            interval_s: Seconds between two reads.
        """
        super().__init__()
        self._daemon = daemon
        self._this = this
        self._clock = clock
        self._tz = tz
        self._interval_s = interval_s
        self.fleet: Fleet | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="fleet"):
            yield Static("reading the fleet…", id="fleet-table")
            yield Static("", id="fleet-problem")

    def on_mount(self) -> None:
        frame = self.query_one("#fleet")
        frame.border_title = "fleet: the daemons writing this ledger"
        frame.border_subtitle = f"every {self._interval_s:g} s · Esc closes"
        self._read()
        self.set_interval(self._interval_s, self._read)

    @work(exclusive=True, group="fleet")
    async def _read(self) -> None:
        problem = self.query_one("#fleet-problem", Static)
        try:
            fleet = await self._daemon.fleet()
        except DaemonUnreachable as exc:
            # The last rows stay up, marked as old: a database down mid-run is not an empty fleet.
            stale = " (the rows above are from the last read)" if self.fleet else ""
            problem.update(Text(f"{exc}{stale}", style="bold red"))
            return
        self.fleet = fleet
        problem.update("")
        self.query_one("#fleet-table", Static).update(
            fleet_view(fleet, this=self._this, now=self._clock(), tz=self._tz)
        )


def fleet_view(fleet: Fleet, *, this: str | None, now: float, tz: tzinfo | None) -> RenderableType:
    """The fleet as a table, one row per daemon, and a line of today's sums.

    Args:
        fleet: What the daemon answered.
        this: The monitored daemon's instance name: its row is marked ``*``.
        now: Unix time now.
        tz: The zone times are shown in.

    Returns:
        The table; for a ledger that is not shared, :data:`NOT_SHARED`.
    """
    if not fleet.shared:
        return Text(NOT_SHARED)
    table = Table(expand=True, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0, 0, 1))
    table.add_column("instance", ratio=1, min_width=8, overflow="ellipsis", no_wrap=True)
    # The LAN column only once a LAN server has answered, as the savings panel does.
    lan = any(i.today.lan or i.all_time.lan for i in fleet.instances)
    for heading in ("today", "local", "LAN", "cloud", "spent", "avoided", "last record"):
        if heading != "LAN" or lan:
            table.add_column(heading, justify="right", no_wrap=True)
    for instance in fleet.instances:
        cells = _row(instance, this, now, tz)
        table.add_row(*(cells if lan else cells[:3] + cells[4:]))
    return Group(table, Text(""), _sums(fleet, this))


def _row(instance: Instance, this: str | None, now: float, tz: tzinfo | None) -> list[Text]:
    today = instance.today
    quiet = today.requests == 0
    name = Text(instance.name or UNNAMED, style="dim" if quiet else "bold")
    if this is not None and instance.name == this:
        name.append(" *", style="")
    local, lan, cloud = shares(today)
    cells = [
        name,
        Text(fmt.count(today.requests)),
        Text(local),
        Text(lan),
        Text(cloud),
        Text(fmt.money(today.cloud_spend_usd)),
        Text(fmt.money(today.cost_avoided_usd), style="green" if not quiet else ""),
        Text(last_record(instance.last_time, now, tz)),
    ]
    if quiet:
        for cell in cells[1:]:
            cell.stylize("dim")
    return cells


def shares(today: Totals) -> tuple[str, str, str]:
    """The local, LAN and cloud shares of the requests answered today (``-`` for none)."""
    answered = today.local + today.lan + today.cloud
    if not answered:
        return ("-", "-", "-")
    local, lan, cloud = (
        fmt.percent(part / answered, of_one=True) for part in (today.local, today.lan, today.cloud)
    )
    return (local, lan, cloud)


def last_record(when: float | None, now: float, tz: tzinfo | None) -> str:
    """When a daemon wrote its newest record: ``11:06 · 30 s ago``, ``Nov 17 · 1 d ago``
    before today."""
    if when is None:
        return fmt.UNKNOWN
    moment, today = datetime.fromtimestamp(when, tz), datetime.fromtimestamp(now, tz)
    shown = moment.strftime("%H:%M" if moment.date() == today.date() else "%b %d")
    return f"{shown} · {fmt.ago(now - when)}"


def _sums(fleet: Fleet, this: str | None) -> Text:
    daemons = len([i for i in fleet.instances if i.name])
    busy = sum(1 for i in fleet.instances if i.today.requests)
    verb = "daemon writes" if daemons == 1 else "daemons write"
    text = Text(f"{daemons} {verb} this ledger; ")
    text.append(f"{busy} wrote today: ")
    requests = sum(i.today.requests for i in fleet.instances)
    spent = sum(i.today.cloud_spend_usd for i in fleet.instances)
    avoided = sum(i.today.cost_avoided_usd for i in fleet.instances)
    text.append(f"{requests:,} requests, cloud {fmt.money(spent)}, avoided ")
    text.append(fmt.money(avoided), style="bold green")
    if this is not None:
        text.append(f"\n* this daemon ({this})")
        if daemons == 1:
            text.append(": the only one that has written to the shared ledger so far")
    return text
