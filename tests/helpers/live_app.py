"""A real uvicorn server on a loopback port, in a thread, for tests that need real sockets; and
the settings of an app in front of the fake cloud."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fake_cloud import FakeCloud
from fastapi import FastAPI
from server_process import free_port

from hybrid.cli.daemon import server_config
from hybrid.settings import Settings, load_settings


def cloud_settings(cloud: FakeCloud, home: Path, **cli: object) -> Settings:
    """Settings with both cloud providers on the fake cloud, home in `home`, the bandwidth
    probe off, plus the given dotted values (``cloud.max_attempts=...``)."""
    environ = {"HYBRID_HOME": str(home), **cloud.provider_env()}
    cli = {"probe.measure_bandwidth": False, **cli}
    return load_settings(environ=environ, dotenv_file=None, cli=cli).settings


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` (lifespan included) until the block ends; yields its base URL."""
    port = free_port()
    config = server_config(
        app, app.state.hybrid.settings.server, host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
