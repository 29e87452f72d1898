"""The messages the monitor's parts send each other (Textual ``Message`` dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from hybrid.monitor.link import LinkStatus
from hybrid.monitor.wire import RequestRecord


@dataclass
class EventArrived(Message):
    """The daemon sent an event.

    Attributes:
        name: The event's name (``snapshot``, ``request_finished``, ...).
        data: Its decoded JSON.
    """

    name: str
    data: object


@dataclass
class LinkChanged(Message):
    """The connection to the daemon went live, or dropped.

    Attributes:
        status: The new status.
    """

    status: LinkStatus


@dataclass
class RequestChosen(Message):
    """The user selected a request in the log, to see its whole decision.

    Attributes:
        record: The request.
    """

    record: RequestRecord
