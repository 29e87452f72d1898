"""Every local model in ``GET /v1/models``, and a request naming one that is not served switches
to it first (Ollama-style), waiting for a load in progress rather than refusing.

The models are fakes on the real runtime (:mod:`switch_fakes`): each answers with its own id.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from gguf_writer import embedded_header
from hardware_fakes import GIB, build_snapshot
from scripted import scripted_app
from switch_fakes import FakeOpener, two_models

from hybrid.errors import ModelFileError
from hybrid.local.runtime import LocalRuntime
from hybrid.local.status import PendingLoad
from hybrid.settings import Settings

HELLO = [{"role": "user", "content": "hi"}]


class WatchedRuntime(LocalRuntime):
    """The real runtime, saying when someone found another model loading (and so waits)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.found_loading = threading.Event()

    @property
    def pending(self) -> PendingLoad | None:
        pending = super().pending
        if pending is not None:
            self.found_loading.set()
        return pending


@pytest.fixture
def opener() -> FakeOpener:
    return FakeOpener()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    first, _ = two_models(tmp_path)
    embedded_header(tmp_path / "models" / "third-model.gguf")
    return Settings.model_validate(
        {
            "home": tmp_path / "home",
            "local": {"model": first, "models_dirs": [tmp_path / "models"], "keep_alive": -1},
        }
    )


@pytest.fixture
def runtime(settings: Settings, opener: FakeOpener) -> WatchedRuntime:
    """Serves first-model, with second-model and third-model beside it, on 12 GiB free."""
    machine = build_snapshot(total=16 * GIB, available=12 * GIB)
    return WatchedRuntime(settings, snapshot=lambda: machine, opener=opener, poll_s=0.01)


@pytest.fixture
def client(settings: Settings, runtime: WatchedRuntime) -> Iterator[TestClient]:
    with TestClient(scripted_app(settings, runtime=runtime)) as client:
        while client.get("/v1/hybrid/model").json()["state"] == "loading":
            pass
        yield client


def chat(client: TestClient, model: str) -> Any:
    return client.post("/v1/chat/completions", json={"model": model, "messages": HELLO})


def test_models_lists_every_local_model_the_served_one_first(client: TestClient) -> None:
    data = client.get("/v1/models").json()["data"]
    ids = [entry["id"] for entry in data]
    assert ids[0] == "first-model"
    assert ids.index("second-model") < ids.index("hybrid")
    assert ids.count("first-model") == 1 and "third-model" in ids
    owners = {entry["id"]: entry["owned_by"] for entry in data}
    assert owners["second-model"] == owners["first-model"] == "hybrid"


def test_a_request_naming_another_local_model_switches_to_it_and_is_answered_by_it(
    client: TestClient, opener: FakeOpener
) -> None:
    reply = chat(client, "second-model")
    assert reply.status_code == 200, reply.json()
    assert reply.headers["x-hybrid-route"] == "local"
    assert reply.headers["x-hybrid-model"] == "second-model"
    assert reply.headers["x-hybrid-reason"].endswith(";local:switched")
    assert reply.json()["choices"][0]["message"]["content"] == "second-model"

    status = client.get("/v1/hybrid/model").json()
    assert status["state"] == "ready" and status["model"] == "second-model"
    serving = {model["name"] for model in status["available"] if model["serving"]}
    assert serving == {"second-model"}
    ids = [entry["id"] for entry in client.get("/v1/models").json()["data"]]
    assert ids[0] == "second-model" and "first-model" in ids

    # Served now: the next request naming it loads nothing.
    again = chat(client, "second-model")
    assert again.headers["x-hybrid-model"] == "second-model"
    assert "local:switched" not in again.headers["x-hybrid-reason"]
    assert opener.opened == 2


def test_anthropic_messages_naming_a_local_model_switch_too(client: TestClient) -> None:
    reply = client.post(
        "/v1/messages", json={"model": "third-model", "max_tokens": 4, "messages": HELLO}
    )
    assert reply.status_code == 200, reply.json()
    assert reply.headers["x-hybrid-model"] == "third-model"
    assert reply.json()["content"][0]["text"] == "third-model"


def test_a_request_during_another_switch_waits_for_it_then_switches(
    client: TestClient, opener: FakeOpener, runtime: WatchedRuntime
) -> None:
    opener.loading.clear()
    started = client.post("/v1/hybrid/model", json={"model": "second-model"})
    assert started.status_code == 202
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(chat, client, "third-model")
        assert runtime.found_loading.wait(30)  # the request saw second-model loading
        opener.loading.set()
        reply = waiting.result(30)
    assert reply.status_code == 200, reply.json()
    assert reply.headers["x-hybrid-model"] == "third-model"
    assert client.get("/v1/hybrid/model").json()["model"] == "third-model"
    assert opener.opened == 3  # first, second, then third


def test_a_failed_switch_is_a_503_and_the_served_model_stays(
    client: TestClient, opener: FakeOpener
) -> None:
    opener.fail = ModelFileError("second-model.gguf is truncated; download it again")
    reply = chat(client, "second-model")
    assert reply.status_code == 503
    assert "truncated" in reply.json()["error"]["message"]
    assert client.get("/v1/hybrid/model").json()["model"] == "first-model"


def test_an_unknown_name_is_still_a_404_and_loads_nothing(
    client: TestClient, opener: FakeOpener
) -> None:
    reply = chat(client, "llama-9000")
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert error["code"] == "model_not_found"
    assert "'llama-9000' does not exist here" in error["message"]
    assert opener.opened == 1
    assert client.get("/v1/hybrid/model").json()["model"] == "first-model"
