"""``hybrid serve``: the OpenAI-compatible daemon."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.errors import ServeError

if TYPE_CHECKING:
    from hybrid.settings import Settings

HELP = "serve the OpenAI-compatible API from the local model"
SETTINGS_FLAGS = {
    "host": "server.host",
    "port": "server.port",
    "model": "local.model",
    "ctx": "local.n_ctx",
    "parallel": "local.parallel",
    "threads": "local.n_threads",
    "gpu_layers": "local.n_gpu_layers",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of ``hybrid serve``."""
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8642)")
    parser.add_argument(
        "--model",
        type=Path,
        help="GGUF file or a name `hybrid models` lists (default: the embedded Gemma 3 270M)",
    )
    parser.add_argument(
        "--ctx", type=int, help="context size in tokens, per slot (default: planned)"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        help="requests answered at once, decoded together (default: planned, up to 4)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads (default: planned)")
    parser.add_argument(
        "--gpu-layers", type=int, help="layers to offload to the GPU, -1 for all (default: planned)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until SIGINT (Ctrl-C) or SIGTERM; see :mod:`hybrid.cli.daemon` for how it stops.

    Returns:
        0 after a clean shutdown, 1 when the server could not start (e.g. the port is taken).
        A second Ctrl-C during the shutdown ends the process at once with 130 instead.
    """
    from hybrid.api.app import create_app
    from hybrid.cli.daemon import DaemonServer, server_config
    from hybrid.models.resolve import resolve_model

    if settings.local.model is not None or settings.local.n_ctx is not None:
        # A wrong path, or a context this machine cannot hold, is a mistake to report now, not
        # a server that starts and cannot answer.  (The embedded model is assembled first.)
        model = resolve_model(settings)
        if settings.local.n_ctx is not None:
            _check_context(settings, model)
    _check_exposure(settings.server.host, has_key=settings.server.api_key is not None)
    # A ledger that cannot be opened (or migrated) is reported now, in one line.
    _check_ledger(settings)
    listener = _listen(settings.server.host, settings.server.port)

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    server = settings.server
    logging.getLogger("hybrid").info(
        "hybrid listening on http://%s:%d/v1 (data dir %s)", server.host, server.port, settings.home
    )
    app = create_app(settings)
    logging.getLogger("hybrid").info("%s", routing_summary(settings))
    config = server_config(
        app, server, log_level=settings.log_level, access_log=settings.log_level == "debug"
    )
    # Open event streams (a monitor) end when the shutdown starts instead of holding it.
    uvicorn_server = DaemonServer(config, on_shutdown=app.state.hybrid.bus.close)
    try:
        uvicorn_server.run(sockets=[listener])
    finally:
        listener.close()
    return 0 if uvicorn_server.started else 1


def routing_summary(settings: Settings) -> str:
    """One line for the start: where requests the local model should not answer go (the LAN
    servers first, ``[[lan.servers]]``, then the cloud model), and whether the cascade reads
    the answers it keeps (``routing.cascade``)."""
    from hybrid.routing.names import ModelNames

    target = ModelNames.from_settings(settings.cloud).default_target
    lan = [server.name for server in settings.lan.servers]
    if target is None and not lan:
        return (
            "routing: no cloud model is configured, so the local model answers every request "
            "(set OPENAI_API_KEY or ANTHROPIC_API_KEY, or add [[cloud.providers]] or "
            "[[lan.servers]])"
        )
    servers = "the LAN server" if len(lan) == 1 else "the LAN servers"
    where = [f"{servers} {', '.join(lan)}"] if lan else []
    if target is not None:
        where.append(target.qualified)
    escalate = f"routing: requests escalate to {', then '.join(where)}"
    if target is None:
        escalate += " (no cloud model: when no server takes one, the local model answers it)"
    if not settings.routing.cascade.enabled:
        return f"{escalate}; local answers are sent unread (routing.cascade.enabled = false)"
    return (
        f"{escalate}; local answers are read before they are sent, and a declining, unsure or "
        "off-the-options one escalates (the cascade; routing.cascade.enabled = false sends them "
        "unread, streams from the first token)"
    )


def _check_ledger(settings: Settings) -> None:
    """Open the ledger once before serving, so that what a person must fix stops the start.

    A shared ledger (``ledger.url``) whose database is unavailable is only warned about: the
    daemon serves and keeps records in its journal until the database returns.

    Raises:
        LedgerError: The ledger file cannot be opened or migrated; or the database refuses
            the login (LedgerAccessError) or was migrated by a newer hybrid
            (LedgerSchemaError).  The message is one line, the password masked.
        ConfigError: ``ledger.url`` is not a PostgreSQL URL.
    """
    from hybrid.errors import LedgerUnavailableError
    from hybrid.ledger.store import LedgerStore

    if settings.ledger.url is None:
        LedgerStore.open(settings.ledger.resolved_path(settings.home)).close()
        return
    from hybrid.ledger.pg_budget import SharedBudget

    url = settings.ledger.url.get_secret_value()
    try:
        LedgerStore.open_url(url).close()
        budget = SharedBudget(url, instance=settings.ledger.instance)
        budget.open()  # the budget tables' schema version too
        budget.close()
    except LedgerUnavailableError as exc:
        print(f"hybrid: warning: {exc}; serving, with records kept in the journal", file=sys.stderr)


def _check_exposure(host: str, *, has_key: bool) -> None:
    """Refuse to serve beyond this machine without an API key.

    Raises:
        ServeError: ``host`` is not a loopback address and no ``server.api_key`` is set.
    """
    if has_key or _is_loopback(host):
        return
    raise ServeError(
        f"refusing to listen on {host}, which other machines can reach, without an API key: "
        f"anyone could spend your cloud budget and read the ledger. Set HYBRID_SERVER__API_KEY "
        f"(clients send it as 'Authorization: Bearer <key>'), or listen on 127.0.0.1."
    )


def _check_context(settings: Settings, model: Path) -> None:
    """Refuse an explicit context size that this machine's memory cannot hold.

    The same check as the model's load (:func:`hybrid.hardware.plan.serving_plan`), made
    from the model's header alone, before the port is bound and anything is loaded.

    Raises:
        ConfigError: The model does not fit memory at ``local.n_ctx``; the message gives the
            memory needed and available, and a context size that fits.
    """
    from hybrid.hardware.plan import serving_plan
    from hybrid.hardware.probe import probe_for
    from hybrid.models.catalog import read_model_info

    snapshot = probe_for(settings.home).snapshot(measure_bandwidth=False)
    serving_plan(snapshot, read_model_info(model).footprint(), settings.local)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket before anything is loaded, so a taken port fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ServeError(
            f"cannot listen on {host}:{port}: {exc.strerror}. If another hybrid serve is "
            f"running, use it or stop it; otherwise choose another port with --port or "
            f"HYBRID_SERVER__PORT."
        ) from exc
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener
