"""``OfflineBanner``: says plainly that the daemon cannot be reached, and how to start it."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from hybrid.monitor.link import LinkStatus


class OfflineBanner(Static):
    """Shown only while the link is offline: the reason, then that the monitor keeps retrying.

    The reason comes from :class:`~hybrid.monitor.client.DaemonUnreachable`, which already names
    the command that starts the daemon (``hybrid serve``) when nothing answers.
    """

    link: reactive[LinkStatus] = reactive(lambda: LinkStatus("connecting"))

    def watch_link(self, link: LinkStatus) -> None:
        self.display = link.state == "offline"
        if link.state != "offline":
            return
        retry = f"{link.retry_in_s:.1f} s" if link.retry_in_s is not None else "a moment"
        text = Text(link.detail, style="bold")
        text.append(f"\nretrying in {retry}, and for as long as the monitor runs; q quits")
        self.update(text)
