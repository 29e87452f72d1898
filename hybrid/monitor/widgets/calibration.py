"""``CalibrationLine``: whether the local model routes on a prior, background calibration's
progress, the last refit from labelled traffic, and where requests escalate, read from the
daemon's ``/health`` (``calibration`` and ``routing``).

It takes no room while there is nothing to say: a model with a calibration of its own, no
background calibration, no refit in the last run and no cloud to escalate to shows nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

_STATE_STYLES = {
    "waiting": "yellow",
    "running": "bold yellow",
    "paused": "yellow",
    "fitting": "bold yellow",
    "adopted": "bold green",
    "kept-prior": "cyan",
    "stopped": "red",
}


@dataclass(frozen=True)
class CalibrationView:
    """What the line shows.

    Attributes:
        state: The calibration lookup's state (``prior``, ``found``, ...).
        expected_accuracy: The prior's expected accuracy, when it runs on one.
        background: Background calibration's state, or None when it is not running or done.
        done: Items answered.
        total: Items in all.
        accuracy: Share answered right so far, or None before the first.
        message: Background calibration's outcome, when it has one.
        refit_labels: The labelled requests the last refit from traffic learned from, None
            when none has run.
        refit_adopted: Whether that refit replaced the difficulty model.
        escalates_to: The cloud model requests the local model should not answer go to, None
            with no cloud (or a daemon that does not say).
        lan_first: The LAN servers tried before it (``[[lan.servers]]``).
        reads_answers: The cascade reads local answers before they are sent.
    """

    state: str
    expected_accuracy: float | None = None
    background: str | None = None
    done: int = 0
    total: int = 0
    accuracy: float | None = None
    message: str | None = None
    refit_labels: int | None = None
    refit_adopted: bool = False
    escalates_to: str | None = None
    lan_first: tuple[str, ...] = ()
    reads_answers: bool = False

    @classmethod
    def from_health(cls, body: object) -> CalibrationView | None:
        """Read ``/health``'s ``calibration`` and ``routing``; None when it has no
        calibration or it is malformed."""
        if not isinstance(body, Mapping):
            return None
        calibration = body.get("calibration")
        if not isinstance(calibration, Mapping) or not isinstance(calibration.get("state"), str):
            return None
        prior = calibration.get("prior")
        expected = prior.get("expected_accuracy") if isinstance(prior, Mapping) else None
        progress = calibration.get("background")
        refit = calibration.get("refit")
        last = refit.get("last") if isinstance(refit, Mapping) else None
        refit_labels = _count(last.get("labels")) if isinstance(last, Mapping) else None
        refit_adopted = isinstance(last, Mapping) and last.get("adopted") is True
        routing = body.get("routing")
        target = routing.get("escalates_to") if isinstance(routing, Mapping) else None
        cascade = routing.get("cascade") if isinstance(routing, Mapping) else None
        lan = routing.get("lan_first") if isinstance(routing, Mapping) else None
        view = cls(
            state=calibration["state"],
            expected_accuracy=_number(expected),
            refit_labels=refit_labels,
            refit_adopted=refit_adopted,
            escalates_to=target if isinstance(target, str) and target else None,
            lan_first=tuple(n for n in lan if isinstance(n, str)) if isinstance(lan, list) else (),
            reads_answers=isinstance(cascade, Mapping) and cascade.get("reads_answers") is True,
        )
        if not isinstance(progress, Mapping) or not isinstance(progress.get("state"), str):
            return view
        return dataclasses.replace(
            view,
            background=progress["state"],
            done=_count(progress.get("done")),
            total=_count(progress.get("total")),
            accuracy=_number(progress.get("accuracy")),
            message=progress.get("message") if isinstance(progress.get("message"), str) else None,
        )

    @property
    def worth_showing(self) -> bool:
        """Whether there is anything to say: a prior in use, background calibration, a
        refit from traffic, or a cloud or LAN server to escalate to."""
        return (
            self.state == "prior"
            or self.background is not None
            or self.refit_labels is not None
            or self.escalates_to is not None
            or bool(self.lan_first)
        )


def calibration_text(view: CalibrationView) -> Text:
    """The line: ``difficulty on a prior (expected 47% right) · calibrating running
    120/540 items, 31% right so far · escalating to openai/gpt-5.4-mini, local answers read
    first``."""
    text = _difficulty_text(view)
    where = [f"{', '.join(view.lan_first)} (LAN)"] if view.lan_first else []
    if view.escalates_to is not None:
        where.append(view.escalates_to)
    if where:
        text.append(f" · escalating to {', then '.join(where)}, local answers ")
        text.append("read first" if view.reads_answers else "sent unread")
    return text


def _difficulty_text(view: CalibrationView) -> Text:
    text = Text(" difficulty ", style="bold")
    if view.state == "prior":
        text.append("on a prior")
        if view.expected_accuracy is not None:
            text.append(f" (expected {view.expected_accuracy:.0%} right)")
    elif view.state == "found":
        text.append("calibrated")
    else:
        text.append(view.state)
    if view.refit_labels is not None:
        text.append(f" · refit from {view.refit_labels} labels ")
        if view.refit_adopted:
            text.append("adopted", style="bold green")
        else:
            text.append("not adopted", style="cyan")
    if view.background is None:
        return text
    text.append(" · calibrating ")
    text.append(view.background, style=_STATE_STYLES.get(view.background, ""))
    if view.total:
        text.append(f" {view.done}/{view.total} items")
    if view.accuracy is not None:
        text.append(f", {view.accuracy:.0%} right")
        if view.background in ("running", "paused"):
            text.append(" so far")
    if view.message and view.background in ("paused", "kept-prior", "stopped"):
        text.append(f" ({view.message})", style="dim")
    return text


class CalibrationLine(Static):
    """One line under the status line while the model runs on a prior or is being calibrated."""

    calibration: reactive[CalibrationView | None] = reactive(None)

    def on_mount(self) -> None:
        self.display = False

    def watch_calibration(self, view: CalibrationView | None) -> None:
        self.display = view is not None and view.worth_showing
        if view is not None:
            self.update(calibration_text(view))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
