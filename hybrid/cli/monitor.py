"""``hybrid monitor``: a live dashboard of a running ``hybrid serve``, in the terminal.

The monitor talks to the daemon over HTTP only (docs/events.md), at
``http://{server.host}:{server.port}`` with ``server.api_key`` from the settings, or at
``--url``.  Textual and the monitor are imported when the command runs, so ``hybrid --help``
stays instant.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hybrid.errors import ConfigError

if TYPE_CHECKING:
    from hybrid.settings import Settings

HELP = "watch a running `hybrid serve` live: money saved, where requests go, machine load"

# A server bound to every address is reached on loopback.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--url``."""
    parser.add_argument(
        "--url",
        help="the daemon to watch, e.g. http://127.0.0.1:8642 "
        "(default: server.host and server.port from the settings)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the dashboard until the user quits.

    Args:
        args: ``args.url`` overrides the settings' address.
        settings: ``server.host``, ``server.port`` and ``server.api_key``.

    Returns:
        0 when the user quits; the app's non-zero return code when it ended with an error
        (Textual has printed the traceback).

    Raises:
        ConfigError: ``--url`` is not an http(s) URL.
    """
    from hybrid.monitor.app import MonitorApp

    app = MonitorApp.for_url(daemon_url(settings, args.url), settings.server.api_key)
    app.run()
    return app.return_code or 0


def daemon_url(settings: Settings, url: str | None = None) -> str:
    """The base URL of the daemon to watch.

    Args:
        settings: Supplies ``server.host`` and ``server.port``.
        url: What the user passed as ``--url``; wins when given.

    Returns:
        ``url`` without a trailing slash, or ``http://{host}:{port}``: a wildcard host
        (``0.0.0.0``, ``::``) becomes loopback, an IPv6 host gets brackets.

    Raises:
        ConfigError: ``url`` is not an http:// or https:// URL with a host and, if it names
            one, a port from 1 to 65535.
    """
    if url is not None:
        try:
            parts = urlsplit(url.strip())
            port = parts.port  # checks it: ValueError when not a number from 0 to 65535
        except ValueError:
            parts, port = None, 0
        if (
            parts is None
            or port == 0
            or parts.scheme not in ("http", "https")
            or not parts.hostname
        ):
            raise ConfigError(
                f"--url must be an http:// or https:// URL such as http://127.0.0.1:8642, "
                f"got {url!r}"
            )
        return url.strip().rstrip("/")
    host = _ANY_ADDRESS.get(settings.server.host, settings.server.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}"
