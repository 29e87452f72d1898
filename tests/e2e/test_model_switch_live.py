"""Switching the served model and unloading it while idle, on a real ``hybrid serve`` with the
real embedded model, while clients keep sending requests.

The second model is the embedded GGUF under another name (a hard link in a models folder), so
both load quickly; which one answered is read from ``X-Hybrid-Model`` and the body's ``model``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from server_process import RunningServer

from hybrid.models.embedded import DEFAULT_MODEL_ID, ensure_embedded_model

pytestmark = pytest.mark.slow

OTHER = "other-model"
CLIENTS = 3
MAX_PER_CLIENT = 40  # a bound: the clients stop earlier, once the switch has been seen
POLLS = 600  # looks at the state, 0.1 s apart at most


@dataclass(frozen=True)
class Answer:
    """One request: whether it began before the switch was asked for, or after the switch was
    seen complete, and what answered it."""

    before_switch: bool
    after_switch: bool
    status: int
    header_model: str | None
    body_model: str | None


class Clients:
    """Threads that send short chat requests one after another until stopped."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self.switch_asked = threading.Event()
        self.switch_seen = threading.Event()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(120)

    def count(self, which: Callable[[Answer], bool]) -> int:
        with self._lock:
            return sum(1 for answer in self.answers if which(answer))

    def _run(self) -> None:
        with httpx2.Client(base_url=self.base_url, timeout=120) as client:
            for index in range(MAX_PER_CLIENT):
                if self.stop.is_set():
                    return
                before, after = not self.switch_asked.is_set(), self.switch_seen.is_set()
                try:
                    response = client.post(
                        "/v1/chat/completions",
                        json={
                            "model": "local",
                            "messages": [{"role": "user", "content": f"Count to {index}."}],
                            "max_tokens": 3,
                            "temperature": 0,
                        },
                    )
                except httpx2.TransportError as exc:
                    with self._lock:
                        self.errors.append(repr(exc))
                    return
                body = response.json() if response.status_code == 200 else {}
                with self._lock:
                    self.answers.append(
                        Answer(
                            before,
                            after,
                            response.status_code,
                            response.headers.get("x-hybrid-model"),
                            body.get("model"),
                        )
                    )


def poll(what: Callable[[], bool]) -> bool:
    """Whether ``what`` came true within :data:`POLLS` looks."""
    for _ in range(POLLS):
        if what():
            return True
        time.sleep(0.1)
    return False


def model_state(base_url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx2.get(base_url + "/v1/hybrid/model", timeout=30).json()
    return body


@pytest.fixture(scope="module")
def models_dir(hybrid_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the embedded model again, as ``other-model.gguf``."""
    embedded = ensure_embedded_model(hybrid_home)
    folder = tmp_path_factory.mktemp("more-models")
    try:
        os.link(embedded, folder / f"{OTHER}.gguf")
    except OSError:  # another file system
        shutil.copyfile(embedded, folder / f"{OTHER}.gguf")
    return folder


def test_switching_under_load_fails_no_request_and_moves_them_to_the_new_model(
    start_server: Callable[..., RunningServer], models_dir: Path
) -> None:
    server = start_server(
        "--ctx", "512", env={"HYBRID_LOCAL__MODELS_DIRS": json.dumps([str(models_dir)])}
    )
    base = server.base_url
    first = model_state(base)
    assert (first["state"], first["model"]) == ("ready", DEFAULT_MODEL_ID)
    assert OTHER in {model["name"] for model in first["available"]}

    with Clients(base) as clients:
        assert poll(lambda: clients.count(lambda a: True) >= CLIENTS), server.output(40)
        clients.switch_asked.set()
        asked = httpx2.post(base + "/v1/hybrid/model", json={"model": OTHER}, timeout=30)
        assert asked.status_code == 202, asked.text
        assert asked.json()["loading"]["model"] == OTHER

        def switched() -> bool:
            state = model_state(base)
            return bool(state["state"] == "ready" and state["model"] == OTHER)

        assert poll(switched), server.output(40)
        clients.switch_seen.set()
        assert poll(lambda: clients.count(lambda a: a.after_switch) >= 2 * CLIENTS)

    answers = clients.answers
    assert not clients.errors
    assert [a for a in answers if a.status != 200] == []
    before = [a for a in answers if a.before_switch]
    after = [a for a in answers if a.after_switch]
    assert before and after
    assert {(a.header_model, a.body_model) for a in before} == {(DEFAULT_MODEL_ID,) * 2}
    assert {(a.header_model, a.body_model) for a in after} == {(OTHER, OTHER)}

    health = httpx2.get(base + "/health", timeout=30).json()
    assert health["model"]["id"] == OTHER
    stats = httpx2.get(base + "/v1/hybrid/stats", params={"by": "model"}, timeout=30).json()
    counted = {group["key"]: group["totals"]["requests"] for group in stats["groups"]["all_time"]}
    assert counted.get(DEFAULT_MODEL_ID, 0) >= len(before)
    assert counted.get(OTHER, 0) >= len(after)
    assert sum(counted.values()) >= len(answers)
    assert server.stop() == 0, server.output(40)


def test_an_idle_model_is_unloaded_and_the_next_request_reloads_it(
    start_server: Callable[..., RunningServer],
) -> None:
    # Two seconds: the model stays loaded between the answer and the look that follows it.
    server = start_server("--ctx", "512", env={"HYBRID_LOCAL__KEEP_ALIVE": "2"})
    base = server.base_url
    assert model_state(base)["keep_alive_s"] == 2
    assert poll(lambda: model_state(base)["state"] == "unloaded"), server.output(40)

    with httpx2.Client(base_url=base, timeout=120) as client:
        with client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "local",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 64,
                "temperature": 0,
                "stream": True,
            },
        ) as response:
            assert response.status_code == 200
            assert response.headers["x-hybrid-model"] == DEFAULT_MODEL_ID
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data: {"))
            # Answering: the model was reloaded, and is not unloaded under a client.
            assert model_state(base)["state"] == "ready"
            assert any(line == "data: [DONE]" for line in lines)
    assert server.stop() == 0, server.output(40)
