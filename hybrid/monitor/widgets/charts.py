"""``ChartsPanel``: requests per minute (local, LAN, cloud), latency p50/p95, local decode
speed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widget import Widget

from hybrid.monitor import format as fmt
from hybrid.monitor.state import CHART_MINUTES, Dashboard
from hybrid.monitor.widgets.trend import Trend


class ChartsPanel(Widget):
    """Five :class:`Trend` rows over the last minutes; captions give the headline figures.

    A sixth, LAN answers per minute, appears once a team's LAN server has answered anything
    (today or all time), so a setup without LAN servers keeps its five rows.

    The request counts' captions are the current minute's; the latency captions are over the
    last :data:`~hybrid.monitor.state.LATENCY_WINDOW_MINUTES`; decode speed is the latest sample.
    """

    dashboard: reactive[Dashboard] = reactive(Dashboard)

    def compose(self) -> ComposeResult:
        yield Trend("req/min local", id="trend-local")
        yield Trend("req/min lan", id="trend-lan")
        yield Trend("req/min cloud", id="trend-cloud")
        yield Trend("latency p50", id="trend-p50")
        yield Trend("latency p95", id="trend-p95")
        yield Trend("decode tok/s", id="trend-decode")

    def on_mount(self) -> None:
        self.border_title = f"last {CHART_MINUTES} minutes"
        self.query_one("#trend-lan", Trend).display = False

    def watch_dashboard(self, dashboard: Dashboard) -> None:
        local = dashboard.local_per_minute
        cloud = dashboard.cloud_per_minute
        lan = dashboard.lan_per_minute
        decode = dashboard.decode_tokens_per_s
        self.query_one("#trend-local", Trend).show(local, str(local[-1]) if local else "")
        lan_trend = self.query_one("#trend-lan", Trend)
        lan_trend.display = bool(dashboard.today.lan or dashboard.all_time.lan or any(lan))
        lan_trend.show(lan, str(lan[-1]) if lan else "")
        self.query_one("#trend-cloud", Trend).show(cloud, str(cloud[-1]) if cloud else "")
        self.query_one("#trend-p50", Trend).show(
            dashboard.latency_p50_per_minute, _latency(dashboard.latency_p50_s)
        )
        self.query_one("#trend-p95", Trend).show(
            dashboard.latency_p95_per_minute, _latency(dashboard.latency_p95_s)
        )
        self.query_one("#trend-decode", Trend).show(decode, f"{decode[-1]:.1f}" if decode else "—")


def _latency(value: float | None) -> str:
    return "—" if value is None else fmt.seconds(value)
