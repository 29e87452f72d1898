"""Ctrl-C on a real ``hybrid serve``: one drains and exits 0, a second one exits at once.

Both go through a real subprocess, because the behaviour lives in the signal handlers, the
event loop and the interpreter's exit.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import httpx
import pytest
from server_process import RunningServer

pytestmark = pytest.mark.slow

# Generous bounds for a process that must exit, on a machine that may be busy.
EXIT_WAIT_S = 90
REFUSED_WAIT_S = 60


def counting_stream(server: RunningServer, client: httpx.Client, max_tokens: int) -> httpx.Response:
    """Start a long greedy count (it never hits a stop) and return the open streaming response."""
    body = {
        "model": "local",
        "prompt": "1, 2, 3, 4, 5,",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    request = client.build_request("POST", f"{server.base_url}/v1/completions", json=body)
    response = client.send(request, stream=True)
    assert response.status_code == 200
    return response


def wait_until_refused(server: RunningServer) -> bool:
    """Wait until the server stops accepting connections: its shutdown has begun."""
    for _ in range(REFUSED_WAIT_S * 10):
        try:
            httpx.get(f"{server.base_url}/health", timeout=2)
        except httpx.ConnectError:
            return True
        except httpx.TransportError:
            pass
        threading.Event().wait(0.1)
    return False


def test_ctrl_c_mid_stream_finishes_the_stream_and_exits_0(
    start_server: Callable[..., RunningServer],
) -> None:
    running = start_server("--ctx", "512", env={"HYBRID_SERVER__SHUTDOWN_TIMEOUT_S": "60"})
    with httpx.Client(timeout=EXIT_WAIT_S) as client:
        response = counting_stream(running, client, max_tokens=60)
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        running.process.send_signal(signal.SIGINT)
        rest = "".join(lines)
        code = running.process.wait(timeout=EXIT_WAIT_S)
    log = running.log.read_text()
    assert code == 0, log
    assert "Traceback" not in log
    assert rest.endswith("data: [DONE]")
    assert "Application shutdown complete" in log


def test_second_ctrl_c_during_shutdown_exits_at_once_and_quietly(
    start_server: Callable[..., RunningServer],
) -> None:
    # In-flight requests would get ten minutes: the count runs on, so only the second Ctrl-C
    # ends this shutdown at once (the event stream ends by itself when the shutdown starts).
    running = start_server("--ctx", "512", env={"HYBRID_SERVER__SHUTDOWN_TIMEOUT_S": "600"})
    with httpx.Client(timeout=EXIT_WAIT_S) as client:
        # The line iterators are kept: dropping one closes its connection.
        generation = counting_stream(running, client, max_tokens=480).iter_lines()
        assert next(generation).startswith("data: ")
        response = client.send(
            client.build_request("GET", f"{running.base_url}/v1/hybrid/events"), stream=True
        )
        assert response.status_code == 200
        events = response.iter_lines()
        assert next(events) == "event: snapshot"
        running.process.send_signal(signal.SIGINT)
        assert wait_until_refused(running), running.log.read_text()
        running.process.send_signal(signal.SIGINT)
        code = running.process.wait(timeout=EXIT_WAIT_S)
    log = running.log.read_text()
    assert code == 130, log
    assert "Traceback" not in log
    assert "CancelledError" not in log


def test_an_open_event_stream_does_not_hold_the_shutdown(
    start_server: Callable[..., RunningServer],
) -> None:
    # A monitor follows the events; a Ctrl-C must not wait the ten minutes of shutdown timeout.
    running = start_server("--ctx", "512", env={"HYBRID_SERVER__SHUTDOWN_TIMEOUT_S": "600"})
    with httpx.Client(timeout=EXIT_WAIT_S) as client:
        response = client.send(
            client.build_request("GET", f"{running.base_url}/v1/hybrid/events"), stream=True
        )
        events = response.iter_lines()
        assert next(events) == "event: snapshot"
        running.process.send_signal(signal.SIGINT)
        list(events)  # returns once the server ends the stream
        code = running.process.wait(timeout=EXIT_WAIT_S)
    log = running.log.read_text()
    assert code == 0, log
    assert "Traceback" not in log
