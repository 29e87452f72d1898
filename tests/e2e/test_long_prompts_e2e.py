"""A multi-megabyte prompt on a real ``hybrid serve`` with the embedded model: refused with the
numbers, while ``/health`` keeps answering.

The embedded model's tokenizer takes seconds over 4 MB; hybrid refuses such a prompt by its size,
on a worker thread, without tokenizing it.  The cloud is configured but unreachable (a closed
port): a request routed ``auto`` escalates on its length, fails there, falls back to the local
model and is refused again, and the failure is recorded in the ledger.  That path used to
tokenize the prompt three times, the last on the event loop, freezing ``/health`` for seconds.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType

import httpx
import pytest
from fake_cloud import closed_port
from server_process import RunningServer

pytestmark = pytest.mark.slow

HUGE = "All work and no play makes Jack a dull boy. " * 90_000  # 3.96 MB: under the body limit
# Generous: /health answers in milliseconds when the event loop is free.
HEALTH_BOUND_S = 1.0
REFUSED_BY_SIZE = re.compile(
    r"prompt is ([\d,]+) bytes, at least ([\d,]+) tokens; the local model's context holds "
    r"2,048\."
)


@pytest.fixture(scope="module")
def server(start_server: Callable[..., RunningServer]) -> Iterator[RunningServer]:
    unreachable = f"http://127.0.0.1:{closed_port()}/v1"
    environ = {"OPENAI_API_KEY": "sk-unreachable", "OPENAI_BASE_URL": unreachable}
    running = start_server("--ctx", "2048", env=environ)
    yield running
    assert running.stop() == 0, running.log.read_text()


class HealthWatch:
    """Asks ``/health`` over and over on a thread of its own, and keeps the slowest answer."""

    def __init__(self, base_url: str) -> None:
        self._url = f"{base_url}/health"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.answers = 0
        self.slowest_s = 0.0
        self.failures: list[str] = []

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(60)

    def _watch(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                asked = time.perf_counter()
                try:
                    status = client.get(self._url).status_code
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    if status != 200:
                        self.failures.append(f"HTTP {status}")
                    self.answers += 1
                self.slowest_s = max(self.slowest_s, time.perf_counter() - asked)
                self._stop.wait(0.05)


@pytest.mark.parametrize(("model", "status"), [("local", 400), ("hybrid", 503)])
def test_a_multi_megabyte_prompt_is_refused_while_health_keeps_answering(
    server: RunningServer, model: str, status: int
) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": HUGE}]}
    with HealthWatch(server.base_url) as health:
        refused = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=120)

    assert refused.status_code == status
    message = refused.json()["error"]["message"]
    found = REFUSED_BY_SIZE.search(message)
    assert found is not None, message
    size, tokens = (int(group.replace(",", "")) for group in found.groups())
    assert size >= len(HUGE) and tokens > 2048
    assert health.answers > 0 and health.failures == []
    assert health.slowest_s < HEALTH_BOUND_S, f"/health took {health.slowest_s:.1f} s"
