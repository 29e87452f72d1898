"""``RequestLog``: every finished request, newest first: where it went, why, what it cost."""

from __future__ import annotations

from datetime import datetime, tzinfo

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.events import Resize
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, Input

from hybrid.monitor import format as fmt
from hybrid.monitor.messages import RequestChosen
from hybrid.monitor.state import Dashboard, log_matches
from hybrid.monitor.wire import RequestRecord

# Columns of fixed width; reason and model share what is left of the table's width.
_FIXED = (("time", 8), ("route", 5), ("tokens", 9), ("took", 6), ("saved/spent", 11))
_FLEXIBLE_MIN = 8
_REASON_SHARE = 0.65


class RequestLog(Widget):
    """A table of finished requests with a filter line; selecting a row posts RequestChosen.

    While :attr:`paused` the table stands still (the dashboard above keeps moving); resuming
    shows everything that arrived meanwhile.  The cursor stays on the request it is on as new
    ones arrive above it, unless it is on the newest row, which it keeps following.
    """

    BINDINGS = [  # noqa: RUF012 - Textual's declared type
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

    dashboard: reactive[Dashboard] = reactive(Dashboard)
    paused: reactive[bool] = reactive(False)
    filter_text: reactive[str] = reactive("")

    def __init__(self, *, tz: tzinfo | None, id: str | None = None) -> None:
        """Create an empty log.

        Args:
            tz: The zone times are shown in; None for the machine's.
            id: The widget's DOM id.
        """
        super().__init__(id=id)
        self._tz = tz
        self._shown: dict[str, RequestRecord] = {}
        self._widths: tuple[int, int] = (0, 0)

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row", id="log-table")
        yield Input(
            placeholder=(
                "filter: local, lan, cloud, error, or words of a reason or model (Esc clears)"
            ),
            id="log-filter",
        )

    def on_mount(self) -> None:
        self.query_one("#log-filter", Input).display = False
        self._update_title()

    def open_filter(self) -> None:
        """Show the filter line and put the cursor in it."""
        field = self.query_one("#log-filter", Input)
        field.display = True
        field.focus()

    def selected(self) -> RequestRecord | None:
        """The request under the table's cursor, None when the table is empty."""
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return self._shown.get(str(key)) if key is not None else None

    def action_clear_filter(self) -> None:
        """Clear and hide the filter line; back to the table."""
        field = self.query_one("#log-filter", Input)
        field.value = ""
        field.display = False
        self.filter_text = ""
        self.query_one(DataTable).focus()

    @on(Input.Changed, "#log-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    @on(Input.Submitted, "#log-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.input.display = bool(event.value.strip())
        self.query_one(DataTable).focus()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        record = self._shown.get(str(event.row_key.value))
        if record is not None:
            self.post_message(RequestChosen(record))

    def on_resize(self, event: Resize) -> None:
        self._refresh_rows()

    def watch_dashboard(self) -> None:
        self._refresh_rows()

    def watch_paused(self) -> None:
        self._update_title()
        self._refresh_rows()

    def watch_filter_text(self) -> None:
        self._update_title()
        self._refresh_rows()

    def _update_title(self) -> None:
        shown, total = len(self._shown), len(self.dashboard.log)
        title = (
            f"requests, newest first ({shown} of {total})"
            if shown < total
            else (f"requests, newest first ({total})")
        )
        if self.paused:
            title += " · PAUSED (p resumes)"
        if self.filter_text.strip():
            title += f" · filter: {self.filter_text.strip()}"
        self.border_title = title

    def _refresh_rows(self) -> None:
        if self.paused or not self.is_mounted:
            return
        table = self.query_one(DataTable)
        records: dict[str, RequestRecord] = {}
        for record in self.dashboard.log:
            if log_matches(record, self.filter_text):
                records.setdefault(record.key, record)  # a repeated record would break the table
        widths = _flexible_widths(table.size.width or self.size.width)
        if list(records) == list(self._shown) and widths == self._widths:
            return
        followed = self._cursor_key(table)
        if widths != self._widths:
            table.clear(columns=True)
            for name, width in _FIXED[:2]:
                table.add_column(name, width=width, key=name)
            table.add_column("reason", width=widths[0], key="reason")
            table.add_column("model", width=widths[1], key="model")
            for name, width in _FIXED[2:]:
                table.add_column(name, width=width, key=name)
            self._widths = widths
        else:
            table.clear()
        for key, record in records.items():
            table.add_row(*self._cells(record, widths), key=key)
        self._shown = records
        if followed is not None and followed in records:
            table.move_cursor(row=table.get_row_index(followed), animate=False)
        self._update_title()

    def _cursor_key(self, table: DataTable[Text]) -> str | None:
        """The request under the cursor, or None when the cursor follows the newest one."""
        if table.row_count == 0 or table.cursor_row <= 0:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return str(key) if key is not None else None

    def _cells(self, record: RequestRecord, widths: tuple[int, int]) -> list[Text]:
        when = datetime.fromtimestamp(record.time, self._tz).strftime("%H:%M:%S")
        route = Text(record.route, style="bold" if record.route == "cloud" else "")
        if record.status == "ok":
            reason = ", ".join(record.reasons) or "—"
            reason_style = ""
        else:
            reason = f"{record.status}: {record.error or ', '.join(record.reasons)}"
            reason_style = "bold red"
        model = record.model or record.model_requested or "—"
        tokens = f"{fmt.count(record.prompt_tokens)}→{fmt.count(record.completion_tokens)}"
        if record.tokens_estimated:
            tokens += "~"
        return [
            Text(when),
            route,
            Text(_clip(reason, widths[0]), style=reason_style),
            Text(_clip(model, widths[1])),
            Text(tokens, justify="right"),
            Text(fmt.seconds(record.latency_s), justify="right"),
            _money_cell(record),
        ]


def _money_cell(record: RequestRecord) -> Text:
    """Saved (``+``) for a local or LAN answer, spent (``-``) for a cloud one; ``?`` when
    unpriced; a dash for a refused request, which neither saved nor spent anything.

    A LAN answer shows its cost avoided (net of what the server costs), never cloud spend."""
    if record.route == "none":
        return Text("—", justify="right")
    if record.route == "cloud":
        spent = record.cloud_cost_usd
        text = fmt.UNKNOWN if spent is None else "-" + fmt.money(spent, significant=2)
        return Text(text, justify="right")
    saved = record.cost_avoided_usd
    text = fmt.UNKNOWN if saved is None else "+" + fmt.money(saved, significant=2)
    return Text(text, style="green", justify="right")


def _flexible_widths(table_width: int) -> tuple[int, int]:
    """Reason and model column widths that fill ``table_width`` (padding and scrollbar off)."""
    columns = len(_FIXED) + 2
    fixed = sum(width for _, width in _FIXED) + 2 * columns + 2
    spare = max(2 * _FLEXIBLE_MIN, table_width - fixed)
    reason = max(_FLEXIBLE_MIN, round(spare * _REASON_SHARE))
    return reason, max(_FLEXIBLE_MIN, spare - reason)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
