"""follow(): the monitor stays connected by itself, backing off while the daemon is away."""

from __future__ import annotations

import pytest
from monitor_fakes import FakeDaemon, synchronous

from hybrid.monitor.client import DaemonClient
from hybrid.monitor.link import Backoff, LinkStatus, follow


class Stop(Exception):
    """Ends the otherwise endless follow() loop from inside the fake sleep."""


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first_s=0.25, max_s=2.0)
    delays = [backoff.first_s]
    for _ in range(5):
        delays.append(backoff.after(delays[-1]))

    assert delays == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


@synchronous
async def test_it_waits_for_the_daemon_then_reconnects_after_each_drop() -> None:
    fake = FakeDaemon(up=False)
    delays: list[float] = []
    statuses: list[LinkStatus] = []
    events: list[str] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 3:
            fake.up = True  # `hybrid serve` finished starting
        if len(delays) == 5:
            raise Stop

    def on_event(name: str, data: object) -> None:
        events.append(name)
        fake.drop()  # the daemon restarts right after each snapshot

    client = DaemonClient("http://127.0.0.1:8642", transport=fake.transport())
    with pytest.raises(Stop):
        await follow(
            client, on_event=on_event, on_status=statuses.append, backoff=Backoff(), sleep=sleep
        )
    await client.aclose()

    assert delays == [0.25, 0.5, 1.0, 0.25, 0.25]  # back to the first wait once live
    assert events == ["snapshot", "snapshot"]
    assert [s.state for s in statuses] == [
        "connecting",
        "offline",
        "offline",
        "offline",
        "live",
        "offline",
        "live",
        "offline",
    ]
    assert "start it with `hybrid serve`" in statuses[1].detail
    assert statuses[1].retry_in_s == 0.25
    assert "dropped" in statuses[5].detail


@synchronous
async def test_a_stream_that_simply_ends_counts_as_offline() -> None:
    class EndingDaemon:
        url = "http://127.0.0.1:8642"

        async def events(self):  # type: ignore[no-untyped-def]
            yield "snapshot", {}

        async def set_mode(self, mode: str) -> str:
            return mode

        async def aclose(self) -> None:
            return None

    statuses: list[LinkStatus] = []

    async def sleep(delay: float) -> None:
        raise Stop

    with pytest.raises(Stop):
        await follow(
            EndingDaemon(),
            on_event=lambda name, data: None,
            on_status=statuses.append,
            backoff=Backoff(),
            sleep=sleep,
        )

    assert statuses[-1] == LinkStatus(
        "offline", "the daemon at http://127.0.0.1:8642 ended the event stream", 0.25
    )
