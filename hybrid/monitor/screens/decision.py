"""``DecisionScreen``: everything about one request: every policy's verdict, tokens, money."""

from __future__ import annotations

from datetime import datetime, tzinfo

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from hybrid.monitor import format as fmt
from hybrid.monitor.wire import RequestRecord


class DecisionScreen(ModalScreen[None]):
    """A request's ledger record, laid out; Esc, Enter or q closes it."""

    BINDINGS = [  # noqa: RUF012 - Textual's declared type
        Binding("escape,enter,q", "dismiss", "close"),
    ]

    def __init__(self, record: RequestRecord, *, tz: tzinfo | None) -> None:
        """Show ``record``.

        Args:
            record: The request.
            tz: The zone its time is shown in; None for the machine's.
        """
        super().__init__()
        self._record = record
        self._tz = tz

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="decision"):
            yield Static(summary(self._record, self._tz), id="decision-summary")
            yield Static(verdict_table(self._record), id="decision-verdicts")

    def on_mount(self) -> None:
        frame = self.query_one("#decision")
        frame.border_title = f"request {self._record.id}"
        frame.border_subtitle = "Esc closes"


def summary(record: RequestRecord, tz: tzinfo | None) -> Text:
    """The request's facts, one per line: route and why, models, tokens, timing, money.

    Args:
        record: The request.
        tz: The zone its time is shown in.

    Returns:
        The text; unknown prices are written as unknown, never as 0.
    """
    when = datetime.fromtimestamp(record.time, tz).strftime("%Y-%m-%d %H:%M:%S")
    text = Text()
    text.append(f"{record.route.upper()}", style="bold")
    if record.leg:
        text.append(f" ({record.leg.replace('_', ' ')} leg)")
    text.append(f"  {record.status}", style="bold" if record.status == "ok" else "bold red")
    text.append(f"  {when}  via the {record.api} API\n")
    text.append(f"reasons    {', '.join(record.reasons) or '—'}\n")
    if record.score is not None:
        text.append(f"score      {record.score:.2f}\n")
    if record.error:
        text.append("error      ")
        text.append(record.error, style="red")
        text.append("\n")
    text.append(f"asked for  {record.model_requested or '—'}\n")
    text.append(f"answered   {record.model or '—'} ({record.provider or record.route})\n")
    estimated = " (estimated)" if record.tokens_estimated else ""
    text.append(
        f"tokens     {record.prompt_tokens:,} in, {record.completion_tokens:,} out{estimated}\n"
    )
    text.append(
        f"time       first token {fmt.seconds(record.ttft_s)}, "
        f"total {fmt.seconds(record.latency_s)}\n"
    )
    text.append(f"cloud cost {_price(record.cloud_cost_usd, record.price_known)}\n")
    if record.counterfactual_model:
        text.append(
            f"in cloud   {_price(record.counterfactual_cost_usd, record.price_known)} "
            f"on {record.counterfactual_model}\n"
        )
    if record.energy_cost_usd is not None:
        # A LAN answer's "energy" is what its server costs (lan.usd_per_1m_tokens).
        label = "LAN cost" if record.route == "lan" else "energy"
        text.append(f"{label:<11}{fmt.money(record.energy_cost_usd)}\n")
    text.append("avoided    ")
    text.append(_price(record.cost_avoided_usd, record.price_known), style="bold")
    return text


def verdict_table(record: RequestRecord) -> Table:
    """Every routing policy's verdict, in the order the router asked them."""
    table = Table(title="verdicts", title_justify="left", expand=True, show_edge=False)
    table.add_column("policy")
    table.add_column("outcome")
    table.add_column("reason", ratio=1)
    table.add_column("score", justify="right")
    for verdict in record.verdicts:
        table.add_row(
            verdict.policy,
            Text(verdict.outcome, style="" if verdict.outcome == "pass" else "bold"),
            verdict.reason,
            "—" if verdict.score is None else f"{verdict.score:.2f}",
        )
    if not record.verdicts:
        table.add_row("—", "—", "the daemon recorded no verdicts", "")
    return table


def _price(usd: float | None, known: bool) -> str:
    if usd is None:
        return "unknown (no price for the model)" if not known else fmt.UNKNOWN
    return fmt.money(usd)
