"""A server in a subprocess on a loopback port: started, waited for, stopped, its output kept.

`start_server` runs any command that serves HTTP (``hybrid serve``, llama-cpp-python's server,
LiteLLM's proxy, the fake cloud as a process), sends its output to a log file and returns once a
readiness path answers 200; `RunningServer.stop` sends SIGTERM, as a service manager would, and
returns the exit status. `ServeProcesses` starts ``hybrid serve`` processes that share one
``HYBRID_HOME`` for the tests that need the whole program (its signal handlers, model loading,
exit). Tests and the benchmarks in ``scripts/`` use the same code; the scripts put this folder
on ``sys.path``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2
from fake_cloud import closed_port

# A first start assembles the embedded model (253 MB) into the data dir; later starts reuse it.
START_TIMEOUT_S = 180.0
# What the machine running the tests does must not decide routes.
_QUIET_ROUTING = {"HYBRID_ROUTING__CAPACITY__MAX_OTHER_CPU_PERCENT": "100"}


class ServerNotReady(RuntimeError):
    """The server exited, or did not answer its readiness path in time; the message holds the
    tail of its log."""


@dataclass
class RunningServer:
    """A server process, where it listens, and the file its output goes to."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def stop(self, grace_s: float = 90) -> int:
        """SIGTERM, as a service manager would; SIGKILL when it has not exited after
        `grace_s`.

        Returns:
            The exit status (negative: the signal that ended it).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def output(self, lines: int | None = None) -> str:
        """What it wrote so far (the last `lines` lines, when given)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log})"
        return text if lines is None else "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released), for a server to take."""
    return closed_port()


def start_server(
    command: Sequence[str],
    *,
    port: int,
    log: Path,
    ready_path: str = "/health",
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = START_TIMEOUT_S,
    what: str | None = None,
) -> RunningServer:
    """Start `command`, which must listen on 127.0.0.1:`port`, and wait until `ready_path`
    answers 200.

    Args:
        command: The program and its arguments (the port among them).
        port: Where it listens.
        log: Where its stdout and stderr go.
        ready_path: What to poll.
        env: Its whole environment; this process's by default.
        cwd: Its working folder; the log's by default (so no stray ``.env`` is read).
        timeout_s: How long readiness may take.
        what: Its name in error messages; the command's first word by default.

    Returns:
        The running server.

    Raises:
        ServerNotReady: It exited, or was not ready in time (it is killed then).
    """
    name = what or Path(command[0]).name
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            list(command),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd or log.parent,
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerNotReady(f"{name} exited with {process.returncode}:\n{server.output(40)}")
        try:
            if httpx2.get(server.base_url + ready_path, timeout=2).status_code == 200:
                return server
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise ServerNotReady(f"{name} was not ready after {timeout_s:g} s:\n{server.output(40)}")


def hybrid_serve(port: int, *flags: str) -> list[str]:
    """The command line of ``hybrid serve`` on `port`, run by this interpreter."""
    return [sys.executable, "-m", "hybrid", "serve", "--port", str(port), *flags]


def hybrid_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without its ``HYBRID_*`` variables, with `home` as ``HYBRID_HOME``,
    routing that ignores the machine's other load, and `extra` on top."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_")}
    return kept | {"HYBRID_HOME": str(home), **_QUIET_ROUTING, **(extra or {})}


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
        answers 200 (the model is loaded).

        Raises:
            ServerNotReady: It exited or never got there (the message holds its log).
        """
        port = free_port()
        server = start_server(
            hybrid_serve(port, *flags),
            port=port,
            log=self._log_dir() / "server.log",
            env=hybrid_env(self._home, env),
            what="hybrid serve",
        )
        self.started.append(server)
        return server

    def close(self) -> None:
        """Kill every server still running."""
        for server in self.started:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()
