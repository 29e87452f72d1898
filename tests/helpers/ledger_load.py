"""Load on a real server whose ledger is then read: clients that keep the request id of every
response they received whole, and the ledger's rows."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from fake_cloud import FakeCloud


def cloud_env(cloud: FakeCloud, ledger: Path) -> dict[str, str]:
    """The environment of a server with OpenAI on the fake cloud and its ledger at ``ledger``."""
    return {
        "OPENAI_API_KEY": "sk-fake-openai",
        "OPENAI_BASE_URL": cloud.base_url + "/v1",
        "HYBRID_LEDGER__PATH": str(ledger),
        "HYBRID_LOG_LEVEL": "warning",
    }


def ledger_rows(ledger: Path) -> dict[str, dict[str, object]]:
    """Every row of the ledger's requests table, by request id."""
    with sqlite3.connect(ledger) as db:
        db.row_factory = sqlite3.Row
        return {row["id"]: dict(row) for row in db.execute("select * from requests")}


class ChatLoad:
    """Clients posting chat completions in a loop until stopped or until the server is gone.

    Client ``i`` sends ``requests[i % len(requests)]``, a body (streamed when it says
    ``"stream": true``) and its headers.  A response counts as completed when the client
    received all of it: a 200 whose JSON parsed, or a stream that reached ``data: [DONE]``.

    Attributes:
        completed: The request ids (``x-hybrid-request-id``) of the completed responses.
        statuses: The status of every response received.
    """

    def __init__(
        self,
        base_url: str,
        requests: Sequence[tuple[dict[str, Any], dict[str, str]]],
        clients: int = 8,
        timeout_s: float = 10,
    ) -> None:
        self.completed: list[str] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._threads = [
            threading.Thread(target=self._client, args=requests[i % len(requests)])
            for i in range(clients)
        ]

    def start(self) -> ChatLoad:
        for thread in self._threads:
            thread.start()
        return self

    def wait_for(self, count: int) -> None:
        """Return once ``count`` responses completed, or every client has ended."""
        while any(thread.is_alive() for thread in self._threads):
            with self._lock:
                if len(self.completed) >= count:
                    return
            self._stop.wait(0.01)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _client(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with httpx.Client(base_url=self._base_url, timeout=self._timeout_s) as http:
            while not self._stop.is_set():
                try:
                    if body.get("stream"):
                        with http.stream(
                            "POST", "/v1/chat/completions", json=body, headers=headers
                        ) as response:
                            lines = list(response.iter_lines())
                        whole = response.status_code == 200 and "data: [DONE]" in lines
                    else:
                        response = http.post("/v1/chat/completions", json=body, headers=headers)
                        json.loads(response.content)
                        whole = response.status_code == 200
                except (httpx.HTTPError, ValueError):
                    return  # the server is gone
                with self._lock:
                    self.statuses.append(response.status_code)
                    if whole:
                        self.completed.append(response.headers["x-hybrid-request-id"])
