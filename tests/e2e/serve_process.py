"""A real ``hybrid serve`` in a subprocess on a loopback port, for tests that need the whole
program: its signal handlers, its model loading, its exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

# A first start assembles the embedded model (253 MB) into the data dir; later starts reuse it.
START_TIMEOUT_S = 180


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def stop(self) -> int:
        """SIGTERM, as a service manager would, and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcesses:
    """Starts ``hybrid serve`` processes that share one ``HYBRID_HOME``, each with a log of its
    own; `close` kills those still running.

    Args:
        home: The ``HYBRID_HOME`` of every server (the model is assembled there once).
        log_dir: Returns a new folder for a server's log.
    """

    def __init__(self, home: Path, log_dir: Callable[[], Path]) -> None:
        self._home = home
        self._log_dir = log_dir
        self.started: list[RunningServer] = []

    def start(self, *flags: str, env: dict[str, str] | None = None) -> RunningServer:
        """Start one, with these command-line flags and environment, and wait until /health
        answers 200 (the model is loaded); fails the test if it exits or never gets there."""
        port = free_port()
        log = self._log_dir() / "server.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_")} | {
            "HYBRID_HOME": str(self._home),
            # What else runs on the machine running the tests must not decide routes.
            "HYBRID_ROUTING__CAPACITY__MAX_OTHER_CPU_PERCENT": "100",
            **(env or {}),
        }
        with log.open("wb") as output:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", "hybrid", "serve", "--port", str(port), *flags],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environ,
                cwd=log.parent,
            )
        server = RunningServer(process, f"http://127.0.0.1:{port}", log)
        self.started.append(server)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"hybrid serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"hybrid serve did not become ready:\n{log.read_text()}")

    def close(self) -> None:
        for server in self.started:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()
