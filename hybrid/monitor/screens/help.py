"""``HelpScreen``: the keys, and what the figures mean."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_TEXT = """\
[b]keys[/b]
  m       routing mode: auto → local-only → cloud-only
  l       switch the local model (a list of those it can load)
  p       pause or resume the request log
  /       filter the log (Esc clears the filter)
  Enter   a request's whole decision: every policy's verdict
  + -     mark the selected request's answer good or bad
          (labels for `hybrid calibrate --from-ledger`)
  f       the fleet: each daemon sharing this ledger, today
          (only with a shared ledger, ledger.url)
  ?       this help            q  quit

[b]filter words[/b], all must match
  local cloud          the route
  ok error cancelled   the status
  anything else        part of a reason, the model or provider

[b]figures[/b]
  cost avoided  what the local answers would have cost in the
                cloud, less the energy they used
  saved/spent   per request: +saved, -spent, ? no known price
  took          latency, from arrival to the last token
  p50 p95       of the requests that ended ok, last 5 minutes
  tokens        prompt→completion; ~ counted locally"""


class HelpScreen(ModalScreen[None]):
    """The keys and the figures; any of Esc, q or ? closes it."""

    BINDINGS = [  # noqa: RUF012 - Textual's declared type
        Binding("escape,q,question_mark", "dismiss", "close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(HELP_TEXT)

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "hybrid monitor"
        self.query_one("#help").border_subtitle = "Esc closes"
