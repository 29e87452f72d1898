from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

# The fake cloud lives beside the other test helpers; its folder has no __init__.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakecloud"))

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


@pytest.fixture(scope="session")
def hybrid_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hybrid-home")


@pytest.fixture(scope="session")
def start_server(
    hybrid_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def start(*flags: str, env: dict[str, str] | None = None) -> RunningServer:
        port = free_port()
        log = tmp_path_factory.mktemp("server") / "server.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_")} | {
            "HYBRID_HOME": str(hybrid_home),
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
        started.append(server)
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

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
