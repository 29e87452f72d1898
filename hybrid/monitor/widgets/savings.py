"""``SavingsPanel``: cost avoided (large), cloud spend against the budget, local share.

Once a team's LAN server has answered anything, the title says that cost avoided counts its
answers too, and the last line of the cloud column gives today's local and LAN shares instead
of the local share today and all time (LAN answers are never cloud spend).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Digits, Label, Static

from hybrid.monitor import format as fmt
from hybrid.monitor.state import Dashboard
from hybrid.monitor.wire import Budget, Totals

GAUGE_CELLS = 10

TITLE = "savings: cloud price of the local answers, less electricity"
"""The panel's title: what its large figures count, in one line that fits 80 columns."""

TITLE_WITH_LAN = "savings: cloud price of local and LAN answers, less their cost"
"""The title once a LAN server has answered: LAN answers count toward cost avoided too."""

COST_AVOIDED_HELP = (
    "Cost avoided: for each request answered by the local model, what the cloud model it would "
    "otherwise have gone to (the one the request named, else cloud.default_model, else "
    "pricing.reference_model) would have charged for the same tokens at its uncached rates, "
    "less the electricity the local answer used. An estimate, not money saved on a bill. "
    "Requests pinned to local by the client (model 'local' or X-Hybrid-Route: local) or by "
    "the local-only mode count too; 'hybrid stats --by decided' shows the router's share "
    "apart. Requests answered by a team's LAN server count the same way, less "
    "lan.usd_per_1m_tokens instead of electricity; they are never cloud spend. Cloud answers, "
    "refused requests and models without a price add nothing."
)
"""The panel's tooltip: exactly what cost avoided counts."""


class SavingsPanel(Widget):
    """Three columns: cost avoided today and all time in large digits, then the cloud side.

    The title says what cost avoided counts; the tooltip says it in full.

    The cloud column: today's cloud spend, a gauge of the daily budget (or that there is no
    cap), the month's spend, and the share of requests answered locally.  Before the first
    snapshot every figure is a dash: nothing is known yet, which is not the same as zero.
    """

    dashboard: reactive[Dashboard] = reactive(Dashboard)

    def compose(self) -> ComposeResult:
        with Vertical(classes="savings--column"):
            yield Label("cost avoided today", classes="savings--label")
            yield Digits("-", id="avoided-today")
        with Vertical(classes="savings--column"):
            yield Label("cost avoided, all time", classes="savings--label")
            yield Digits("-", id="avoided-all-time")
        yield Static("", id="cloud-side")

    def on_mount(self) -> None:
        self.border_title = TITLE
        self.tooltip = COST_AVOIDED_HELP

    def watch_dashboard(self, dashboard: Dashboard) -> None:
        if not dashboard.synced:
            return
        self.query_one("#avoided-today", Digits).update(
            fmt.money(dashboard.today.cost_avoided_usd, significant=2)
        )
        self.query_one("#avoided-all-time", Digits).update(
            fmt.money(dashboard.all_time.cost_avoided_usd, significant=2)
        )
        self.query_one("#cloud-side", Static).update(
            cloud_side(dashboard.today, dashboard.all_time, dashboard.budget)
        )
        lan = bool(dashboard.today.lan or dashboard.all_time.lan)
        self.border_title = TITLE_WITH_LAN if lan else TITLE
        self.set_class(dashboard.budget.state == "warning", "-budget-warning")
        self.set_class(dashboard.budget.state == "capped", "-budget-capped")


def cloud_side(today: Totals, all_time: Totals, budget: Budget) -> Text:
    """The cloud column's four lines.

    Args:
        today: Today's totals (cloud spend, local share).
        all_time: All-time totals (local share).
        budget: The caps and the spend against them.

    Returns:
        ``cloud today $0.0042``, the daily gauge, the month, the local share today and all
        time (once a LAN server has answered: today's local and LAN shares, ``local 40% · lan
        50%``).  A budget that is not ``ok`` is written out (``WARNING``, ``CAPPED``), not only
        coloured.
    """
    text = Text("cloud today ")
    text.append(fmt.money(today.cloud_spend_usd), style="bold")
    if budget.state != "ok":
        text.append(f" {budget.state.upper()}", style="bold reverse")
    text.append("\n")
    if budget.daily_cap_usd:
        fraction = budget.daily_spend_usd / budget.daily_cap_usd
        text.append(fmt.gauge(fraction, GAUGE_CELLS))
        cap = fmt.money(budget.daily_cap_usd)
        text.append(f" {fmt.percent(fraction, of_one=True)} of {cap}/day")
    else:
        text.append("no daily cap")
    text.append(f"\nmonth {fmt.money(budget.monthly_spend_usd)}")
    if budget.monthly_cap_usd:
        text.append(f" of {fmt.money(budget.monthly_cap_usd)}")
    else:
        text.append(", no cap")
    text.append("\nlocal ")
    text.append(fmt.percent(today.local_share, of_one=True), style="bold")
    if today.lan or all_time.lan:
        # 28 columns hold one period: today's, the one a glance at the panel is about.
        text.append(" · lan ")
        answered = today.local + today.lan + today.cloud
        lan_share = today.lan / answered if answered else 0.0
        text.append(fmt.percent(lan_share, of_one=True), style="bold")
    else:
        text.append(f" · all time {fmt.percent(all_time.local_share, of_one=True)}")
    return text
