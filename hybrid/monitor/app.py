"""``MonitorApp``: the ``hybrid monitor`` dashboard.

The app holds a :class:`~hybrid.monitor.link.DaemonLink` (the HTTP client in production, a
fake in tests), follows its events in a worker, folds them into a
:class:`~hybrid.monitor.state.DashboardState`, and publishes the resulting
:class:`~hybrid.monitor.state.Dashboard` through one reactive attribute that every widget is
bound to.  The clock and the time zone come in through the constructor, so a screenshot of the
app is the same on every machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import tzinfo
from typing import Protocol, runtime_checkable

import httpx2
from pydantic import SecretStr
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Footer

from hybrid.monitor.client import DaemonClient, DaemonUnreachable, FeedbackRefused
from hybrid.monitor.link import (
    Backoff,
    DaemonLink,
    FeedbackLink,
    FleetLink,
    LinkStatus,
    ModelLink,
    follow,
)
from hybrid.monitor.messages import EventArrived, LinkChanged, RequestChosen
from hybrid.monitor.screens.decision import DecisionScreen
from hybrid.monitor.screens.fleet import FleetScreen
from hybrid.monitor.screens.help import HelpScreen
from hybrid.monitor.screens.model_picker import ModelPicker
from hybrid.monitor.state import Dashboard, DashboardState
from hybrid.monitor.widgets.calibration import CalibrationLine, CalibrationView
from hybrid.monitor.widgets.charts import ChartsPanel
from hybrid.monitor.widgets.hardware import HardwarePanel
from hybrid.monitor.widgets.offline_banner import OfflineBanner
from hybrid.monitor.widgets.request_log import RequestLog
from hybrid.monitor.widgets.savings import SavingsPanel
from hybrid.monitor.widgets.status_line import StatusLine
from hybrid.monitor.wire import MODES

# Legs that are not answers of their own: a cascade's discarded local answer, shadow calls,
# local shadow answers.
_NOT_ANSWERS = ("cascade_local", "shadow", "shadow_judge", "local_shadow")
# The charts move with the clock even when no event arrives: a quiet minute is a 0.
TICK_S = 1.0
# How often /health is read for the calibration line (background calibration moves slowly).
HEALTH_INTERVAL_S = 5.0


@runtime_checkable
class HealthSource(Protocol):
    """A daemon link that can also read ``/health`` (:class:`DaemonClient` can)."""

    async def health(self) -> object:
        """The decoded ``/health`` body."""
        ...


class MonitorApp(App[None]):
    """The live dashboard of one ``hybrid serve``.

    Keys: ``m`` cycles the routing mode, ``p`` pauses the log, ``/`` filters it, Enter on a
    request shows its decision, ``+`` / ``-`` mark its answer good or bad, ``f`` shows the
    fleet (only when the daemon's ledger is shared), ``?`` shows help, ``q`` quits.
    """

    CSS_PATH = "monitor.tcss"
    TITLE = "hybrid monitor"
    BINDINGS = [  # noqa: RUF012 - Textual's declared type
        Binding("m", "cycle_mode", "mode"),
        Binding("l", "pick_model", "model"),
        Binding("p", "toggle_pause", "pause"),
        Binding("slash", "filter", "filter"),
        Binding("plus", "mark(True)", "good"),
        Binding("minus", "mark(False)", "bad"),
        Binding("f", "fleet", "fleet"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    dashboard: reactive[Dashboard] = reactive(Dashboard)
    link: reactive[LinkStatus] = reactive(lambda: LinkStatus("connecting"))
    now: reactive[float] = reactive(0.0)
    calibration: reactive[CalibrationView | None] = reactive(None)

    def __init__(
        self,
        daemon: DaemonLink,
        *,
        clock: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
        backoff: Backoff | None = None,
        health_interval_s: float = HEALTH_INTERVAL_S,
    ) -> None:
        """Create the app; nothing connects until it runs.

        Args:
            daemon: Where the events come from and where mode changes go.  The app closes it
                when it exits.
            clock: Unix time now; the charts' minutes and "today" follow it.
            tz: The zone times are shown in; None for the machine's.
            backoff: The waits between reconnect attempts.
            health_interval_s: Seconds between two reads of ``/health`` for the calibration
                line (when the link can read it).
        """
        super().__init__()
        self._health_interval_s = health_interval_s
        self._daemon = daemon
        self._clock = clock
        self._tz = tz
        self._backoff = backoff or Backoff()
        self._state = DashboardState()

    @classmethod
    def for_url(
        cls,
        url: str,
        api_key: SecretStr | str | None = None,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
        backoff: Backoff | None = None,
        health_interval_s: float = HEALTH_INTERVAL_S,
    ) -> MonitorApp:
        """The app for the daemon at ``url``, through a :class:`DaemonClient`.

        Args:
            url: The daemon's base URL (``http://127.0.0.1:8642``).
            api_key: ``server.api_key``, None when the daemon needs none.
            transport: The HTTP transport; None for a real connection.
            clock: As for the constructor.
            tz: As for the constructor.
            backoff: As for the constructor.
            health_interval_s: As for the constructor.
        """
        client = DaemonClient(url, api_key, transport)
        return cls(client, clock=clock, tz=tz, backoff=backoff, health_interval_s=health_interval_s)

    def compose(self) -> ComposeResult:
        yield StatusLine(self._daemon.url, tz=self._tz, id="status").data_bind(
            MonitorApp.link, MonitorApp.dashboard, MonitorApp.now
        )
        yield OfflineBanner(id="offline").data_bind(MonitorApp.link)
        yield CalibrationLine(id="calibration").data_bind(MonitorApp.calibration)
        yield SavingsPanel(id="savings").data_bind(MonitorApp.dashboard)
        with Horizontal(id="middle"):
            yield ChartsPanel(id="charts").data_bind(MonitorApp.dashboard)
            yield HardwarePanel(id="machine").data_bind(MonitorApp.dashboard)
        yield RequestLog(tz=self._tz, id="log").data_bind(MonitorApp.dashboard)
        yield Footer()

    def on_mount(self) -> None:
        self._refresh_dashboard()
        self.set_interval(TICK_S, self._refresh_dashboard)
        self._follow_events()
        if isinstance(self._daemon, HealthSource):
            self._read_health()
            self.set_interval(self._health_interval_s, self._read_health)

    async def on_unmount(self) -> None:
        self.workers.cancel_group(self, "events")
        self.workers.cancel_group(self, "health")
        await self._daemon.aclose()

    @work(exclusive=True, group="events")
    async def _follow_events(self) -> None:
        await follow(
            self._daemon,
            on_event=lambda name, data: self.post_message(EventArrived(name, data)),
            on_status=lambda status: self.post_message(LinkChanged(status)),
            backoff=self._backoff,
        )

    @work(exclusive=True, group="health")
    async def _read_health(self) -> None:
        assert isinstance(self._daemon, HealthSource)
        try:
            body = await self._daemon.health()
        except DaemonUnreachable:
            return  # the status line and the banner already say so
        self.calibration = CalibrationView.from_health(body)

    @on(EventArrived)
    def _event_arrived(self, message: EventArrived) -> None:
        if message.name == "model":
            self._model_changed(message.data)
        problem = self.dashboard.problem
        self._state.receive(message.name, message.data, now=self._clock())
        self._refresh_dashboard()
        if self.dashboard.problem != problem and self.dashboard.problem:
            self.notify(self.dashboard.problem, title="event skipped", severity="warning")

    @on(LinkChanged)
    def _link_changed(self, message: LinkChanged) -> None:
        self.link = message.status

    @on(RequestChosen)
    def _request_chosen(self, message: RequestChosen) -> None:
        self.push_screen(DecisionScreen(message.record, tz=self._tz))

    def _refresh_dashboard(self) -> None:
        now = self._clock()
        self.now = now
        shared = self.dashboard.shared_ledger
        self.dashboard = self._state.view(now=now)
        if self.dashboard.shared_ledger != shared:
            self.refresh_bindings()  # the fleet key shows only for a shared ledger

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide the fleet key unless the daemon's ledger is shared: a daemon with its own
        ledger has no fleet, and the key stays out of the way."""
        if action == "fleet":
            return self.dashboard.shared_ledger and isinstance(self._daemon, FleetLink)
        return True

    def action_fleet(self) -> None:
        """Show the daemons writing the shared ledger (``GET /v1/hybrid/stats?by=instance``)."""
        if not isinstance(self._daemon, FleetLink) or isinstance(self.screen, FleetScreen):
            return
        ledger = self.dashboard.ledger
        this = ledger.instance if ledger is not None else None
        self.push_screen(FleetScreen(self._daemon, this=this, clock=self._clock, tz=self._tz))

    def action_cycle_mode(self) -> None:
        """Ask the daemon for the next routing mode (auto → local-only → cloud-only)."""
        current = self.dashboard.mode
        if current is None or self.link.state != "live":
            self.notify("not connected to the daemon: the mode cannot change now", timeout=4)
            return
        following = MODES[(MODES.index(current) + 1) % len(MODES)] if current in MODES else "auto"
        self._set_mode(following)

    @work(exclusive=True, group="mode")
    async def _set_mode(self, mode: str) -> None:
        try:
            confirmed = await self._daemon.set_mode(mode)
        except DaemonUnreachable as exc:
            self.notify(str(exc), title="mode unchanged", severity="error", timeout=8)
            return
        self._state.set_mode(confirmed)
        self._refresh_dashboard()
        self.notify(f"routing mode: {confirmed}", timeout=3)

    def action_pick_model(self) -> None:
        """Open the list of local models the daemon can load; the one picked is switched to."""
        if not isinstance(self._daemon, ModelLink) or self.link.state != "live":
            self.notify("not connected to the daemon: the model cannot change now", timeout=4)
            return
        self._pick_model()

    @work(exclusive=True, group="model")
    async def _pick_model(self) -> None:
        assert isinstance(self._daemon, ModelLink)
        try:
            current, names = await self._daemon.local_models()
        except DaemonUnreachable as exc:
            self.notify(str(exc), title="no model list", severity="error", timeout=8)
            return
        if not names:
            self.notify("the daemon found no model to switch to", timeout=4)
            return
        chosen = await self.push_screen_wait(ModelPicker(current, names))
        if chosen is None or chosen == current:
            return
        try:
            loading = await self._daemon.switch_model(chosen)
        except DaemonUnreachable as exc:
            self.notify(str(exc), title="model unchanged", severity="error", timeout=8)
            return
        self.notify(f"loading {loading}; {current} serves until it is ready", timeout=4)

    def _model_changed(self, data: object) -> None:
        """Say how a switch, an idle unload or a reload goes (the ``model`` event)."""
        if not isinstance(data, dict):
            return
        change, model = data.get("change"), data.get("model")
        loading = data.get("loading")
        if change == "loading" and isinstance(loading, dict):
            self.notify(f"loading {loading.get('model')} ({loading.get('reason')})", timeout=4)
        elif change == "switched":
            self.notify(f"switched to {model}", timeout=4)
        elif change == "switch_failed":
            message = data.get("switch_error")
            self.notify(str(message), title="switch failed", severity="error", timeout=8)
        elif change in ("unloaded", "reloaded"):
            self.notify(f"{model} {change}", timeout=3)

    def action_toggle_pause(self) -> None:
        """Freeze or resume the request log."""
        log = self.query_one(RequestLog)
        log.paused = not log.paused

    def action_filter(self) -> None:
        """Open the log's filter line."""
        self.query_one(RequestLog).open_filter()

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpScreen())

    def action_mark(self, good: bool) -> None:
        """Label the selected request's answer good or bad (``POST /v1/hybrid/feedback``)."""
        record = self.query_one(RequestLog).selected()
        if record is None:
            self.notify("no request selected: pick one in the log first", timeout=4)
            return
        if record.route == "none" or record.leg in _NOT_ANSWERS:
            self.notify(f"request {record.id} has no answer of its own to mark", timeout=4)
            return
        if not isinstance(self._daemon, FeedbackLink) or self.link.state != "live":
            self.notify("not connected to the daemon: nothing can be marked now", timeout=4)
            return
        self._send_feedback(record.id, good)

    @work(group="feedback")
    async def _send_feedback(self, request_id: str, good: bool) -> None:
        assert isinstance(self._daemon, FeedbackLink)
        word = "good" if good else "bad"
        try:
            unusable = await self._daemon.send_feedback(request_id, good)
        except (DaemonUnreachable, FeedbackRefused) as exc:
            self.notify(str(exc), title="not marked", severity="error", timeout=8)
            return
        if unusable is None:
            self.notify(f"marked {request_id} {word}", timeout=4)
        else:
            self.notify(f"marked {request_id} {word} ({unusable})", timeout=8)
