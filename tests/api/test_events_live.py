"""The live side of accounting over real sockets: the event stream, disconnects, budgets."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fake_cloud import FakeCloud, Fault
from fastapi.testclient import TestClient
from live_app import serving
from scripted import ScriptedBackend, scripted_app

from hybrid.backend import Generation
from hybrid.errors import GenerationError, QueueFullError
from hybrid.generation import GenerationDone, GenerationEvent, GenerationRequest, TextDelta, Usage
from hybrid.ledger.store import LedgerStore
from hybrid.settings import Settings, load_settings

CHAT = {"model": "hybrid", "messages": [{"role": "user", "content": "Say hello"}]}


def settings_in(tmp_path: Path, **cli: object) -> Settings:
    environ = {"HYBRID_HOME": str(tmp_path / "home")}
    cli = {"probe.measure_bandwidth": False, "probe.sample_interval_s": 0.05, **cli}
    return load_settings(environ=environ, dotenv_file=None, cli=cli).settings


def with_cloud(tmp_path: Path, cloud: FakeCloud, **cli: object) -> Settings:
    """:func:`settings_in` with OpenAI answered by the fake cloud."""
    return settings_in(
        tmp_path,
        **{
            "cloud.openai.api_key": "sk-fake-openai",
            "cloud.openai.base_url": cloud.base_url + "/v1",
            **cli,
        },
    )


def records_of(settings: Settings) -> list[dict[str, object]]:
    store = LedgerStore.open(settings.ledger.resolved_path(settings.home))
    try:
        return [record.to_dict() for record in reversed(store.recent(100))]
    finally:
        store.close()


def read_events(lines: Iterator[str], count: int) -> list[tuple[str, dict[str, object]]]:
    events: list[tuple[str, dict[str, object]]] = []
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: ") and name is not None:
            events.append((name, json.loads(line[len("data: ") :])))
            if len(events) == count:
                return events
    raise AssertionError(f"the stream ended after {events}")


def test_the_event_stream_starts_with_a_snapshot_and_follows_requests_and_mode(
    tmp_path: Path,
) -> None:
    settings = settings_in(tmp_path)
    app = scripted_app(settings)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        http.post("/v1/chat/completions", json=CHAT)  # before the follower: in the snapshot
        with http.stream("GET", "/v1/hybrid/events") as stream:
            lines = stream.iter_lines()
            [(name, snapshot)] = read_events(lines, 1)
            assert name == "snapshot"
            assert snapshot["today"]["requests"] == 1  # type: ignore[index]
            assert len(snapshot["recent"]) == 1  # type: ignore[arg-type]

            answered = http.post("/v1/chat/completions", json=CHAT)
            http.post("/v1/hybrid/mode", json={"mode": "cloud-only"})
            seen = [e for e in read_events(lines, 8) if e[0] != "hardware"]
    names = [name for name, _ in seen]
    assert names[:3] == ["request_started", "request_finished", "mode"]
    started, finished, mode = (data for _, data in seen[:3])
    assert started["id"] == finished["id"] == answered.headers["x-hybrid-request-id"]
    assert mode == {"mode": "cloud-only"}
    # The event is the ledger's record, exactly (the server closed: everything is committed).
    assert finished == records_of(settings)[-1]


def test_once_the_server_shuts_down_the_event_stream_ends_after_its_snapshot(
    tmp_path: Path,
) -> None:
    settings = settings_in(tmp_path)
    app = scripted_app(settings)
    with serving(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        app.state.hybrid.bus.close()  # what `hybrid serve` does when its shutdown starts
        with http.stream("GET", "/v1/hybrid/events") as stream:
            lines = list(stream.iter_lines())  # returns: the stream ends
    assert [line for line in lines if line.startswith("event: ")] == ["event: snapshot"]


class HeldBackend(ScriptedBackend):
    """Sends one piece, then holds until the client goes away."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = asyncio.Event()

    async def start(
        self, request: GenerationRequest, *, prepared: object = None, running: object = None
    ) -> Generation:
        backend = self

        class Held(Generation):
            async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
                yield TextDelta("Hello there, general")
                await asyncio.sleep(30)
                yield GenerationDone("stop", Usage(7, 3))

            async def aclose(self) -> None:
                backend.closed.set()

        return Held()


def test_a_client_that_leaves_mid_stream_is_recorded_as_cancelled_with_what_it_got(
    tmp_path: Path,
) -> None:
    settings = settings_in(tmp_path)
    backend = HeldBackend()
    app = scripted_app(settings, backend)
    with serving(app) as base:
        with httpx.Client(base_url=base, timeout=10) as http:
            with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as s:
                lines = s.iter_lines()
                assert any("general" in line for line in lines)
            # Leaving the block closed the connection mid-answer.
            for _ in range(200):
                if records_of(settings):
                    break
                asyncio.run(asyncio.sleep(0.02))
        [record] = records_of(settings)
    assert record["status"] == "cancelled"
    assert record["completion_tokens"] > 0 and record["tokens_estimated"] is True  # type: ignore[operator]
    assert record["route"] == "local"


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="Hello from the fake cloud.") as fake:
        yield fake


def test_at_the_daily_cap_cloud_requests_go_local_or_get_a_quota_error(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = with_cloud(
        tmp_path,
        cloud,
        **{
            "budget.daily_usd": 0.0000001,
        },
    )
    backend = ScriptedBackend()
    app = scripted_app(settings, backend)

    def ask_cloud(client: TestClient) -> httpx.Response:
        return client.post(
            "/v1/chat/completions",
            json={**CHAT, "model": "gpt-4.1-mini"},
            headers={"X-Hybrid-Route": "cloud"},
        )

    with TestClient(app) as client:
        # Its estimated cost does not fit under the cap: reserved before sending, it is refused.
        first = ask_cloud(client)
        assert first.status_code == 200
        assert first.headers["x-hybrid-route"] == "local"
        assert first.headers["x-hybrid-reason"] == "budget:daily_cap;explicit:cloud"
        assert client.get("/v1/hybrid/stats").json()["budget"]["reservations"] == 0

        backend.fail_on_start = QueueFullError(depth=3, retry_after=1.0)
        refused = ask_cloud(client)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "insufficient_quota"
        assert refused.headers["x-should-retry"] == "false"
        # The header names the cap, as the answer above did.
        assert refused.headers["x-hybrid-reason"] == "error:insufficient_quota;budget:daily_cap"
    assert cloud.requests == []  # nothing was sent, so nothing was spent
    assert not [r for r in records_of(settings) if r["route"] == "cloud"]


def test_a_cascade_that_escalates_records_both_legs_and_counts_one_request(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = with_cloud(
        tmp_path,
        cloud,
        **{
            "routing.cascade.enabled": True,
            # The scripted tokens have probability exp(-0.5) = 0.61: not confident enough.
            "routing.cascade.min_confidence": 0.9,
            "routing.difficulty.enabled": False,
            "routing.capacity.enabled": False,  # the test machine may be busy
        },
    )
    app = scripted_app(settings)
    with TestClient(app) as client:
        answer = client.post("/v1/chat/completions", json=CHAT)
        assert answer.headers["x-hybrid-route"] == "cloud"
        assert answer.headers["x-hybrid-reason"].startswith("cascade:0.61<0.9")
        totals = client.get("/v1/hybrid/stats").json()["all_time"]
    legs = {r["leg"]: r for r in records_of(settings)}
    assert set(legs) == {"cascade_local", "cascade_cloud"}
    assert legs["cascade_local"]["id"] == legs["cascade_cloud"]["id"]
    assert legs["cascade_local"]["completion_tokens"] == 2
    assert legs["cascade_cloud"]["cloud_cost_usd"] > 0  # type: ignore[operator]
    assert (totals["requests"], totals["cloud"], totals["local"]) == (1, 1, 0)


def test_a_cascade_whose_escalation_fails_records_the_discarded_local_leg_too(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = with_cloud(
        tmp_path,
        cloud,
        **{
            "cloud.local_fallback": False,
            "cloud.max_attempts": 1,
            "routing.cascade.enabled": True,
            "routing.cascade.min_confidence": 0.9,  # the scripted tokens' 0.61 is discarded
            "routing.difficulty.enabled": False,
            "routing.capacity.enabled": False,
        },
    )
    cloud.push(Fault.status(503))
    with TestClient(scripted_app(settings)) as client:
        failed = client.post("/v1/chat/completions", json=CHAT)
        assert failed.status_code == 503
        totals = client.get("/v1/hybrid/stats").json()["all_time"]
    legs = {r["leg"]: r for r in records_of(settings)}
    assert set(legs) == {"cascade_local", "cascade_cloud"}
    local, escalated = legs["cascade_local"], legs["cascade_cloud"]
    assert local["id"] == escalated["id"] == failed.headers["x-hybrid-request-id"]
    # The local answer's tokens and energy are kept, as when the escalation answers.
    assert (local["route"], local["status"], local["completion_tokens"]) == ("local", "ok", 2)
    assert local["reasons"] == ["cascade:0.61<0.9"] and local["energy_cost_usd"] is not None
    assert (escalated["route"], escalated["status"]) == ("cloud", "error")
    assert totals["requests"] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_local_answer_that_fails_while_the_cascade_reads_it_counts_what_was_generated(
    tmp_path: Path, cloud: FakeCloud, stream: bool
) -> None:
    settings = with_cloud(
        tmp_path,
        cloud,
        **{
            "routing.cascade.enabled": True,
            "routing.difficulty.enabled": False,
            "routing.capacity.enabled": False,
        },
    )
    backend = ScriptedBackend()  # two pieces, "Hello" " world", then the failure
    backend.fail_mid_stream = GenerationError("llama.cpp failed while generating: boom")
    with TestClient(scripted_app(settings, backend)) as client:
        failed = client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
        assert failed.status_code == 500 and "boom" in failed.text
        local_model = client.app.state.hybrid.runtime.model_id  # type: ignore[attr-defined]
    [record] = records_of(settings)
    assert (record["route"], record["status"], record["leg"]) == ("local", "error", None)
    # The two tokens generated before the failure count (and their energy), as when the
    # client leaves during the read.
    assert (record["model"], record["completion_tokens"]) == (local_model, 2)
    assert record["tokens_estimated"] is True and record["energy_cost_usd"] is not None
    assert cloud.requests == []  # a failed local answer is an error, not an escalation


DECLINING = ["I'm sorry,", " I can't answer that."]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_failed_escalation_falls_back_to_the_local_answer_the_cascade_read(
    tmp_path: Path, cloud: FakeCloud, stream: bool
) -> None:
    settings = with_cloud(
        tmp_path,
        cloud,
        **{
            "cloud.max_attempts": 1,
            "routing.cascade.enabled": True,
            "routing.difficulty.enabled": False,
            "routing.capacity.enabled": False,
        },
    )
    cloud.push(Fault.status(503))
    backend = ScriptedBackend()
    backend.pieces = DECLINING
    with TestClient(scripted_app(settings, backend)) as client:
        answer = client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
        totals = client.get("/v1/hybrid/stats").json()["all_time"]
    if stream:
        chunks = [json.loads(line[6:]) for line in answer.text.splitlines() if line[6:7] == "{"]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    else:
        text = answer.json()["choices"][0]["message"]["content"]
    reason = "cloud_unavailable:openai:unavailable;cascade:declined"
    assert (answer.headers["x-hybrid-route"], answer.headers["x-hybrid-reason"]) == (
        "local",
        reason,
    )
    # The client got the answer the cascade read; the local model generated it once.
    assert text == "".join(DECLINING)
    assert len(backend.requests) == 1 and len(cloud.requests) == 1
    # One generation, one record: the local answer, its tokens counted once.
    [record] = records_of(settings)
    assert (record["route"], record["status"], record["leg"]) == ("local", "ok", None)
    assert record["reasons"] == reason.split(";")
    assert (record["prompt_tokens"], record["completion_tokens"]) == (7, 2)
    assert record["tokens_estimated"] is False and record["energy_cost_usd"] is not None
    assert (totals["requests"], totals["local"], totals["cloud"]) == (1, 1, 0)


class HoldingBackend(ScriptedBackend):
    """Generates one piece, then holds until the generation is cancelled or closed; the test's
    thread learns of both through thread-safe events."""

    def __init__(self) -> None:
        super().__init__()
        self.generating = threading.Event()
        self.stopped = threading.Event()

    async def start(
        self, request: GenerationRequest, *, prepared: object = None, running: object = None
    ) -> Generation:
        backend = self

        class Holding(Generation):
            async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
                try:
                    yield TextDelta("Hello there, general")
                    backend.generating.set()
                    await asyncio.Event().wait()  # until cancelled
                finally:
                    backend.stopped.set()
                yield GenerationDone("stop", Usage(7, 3))

            async def aclose(self) -> None:
                backend.stopped.set()

        return Holding()


def leave_once(
    base_url: str, started: Callable[[], bool], chat: dict[str, object], **headers: str
) -> None:
    """Ask for a whole (non-streamed) chat answer over a raw socket, and close the connection
    once ``started()`` says the answer is being worked on."""
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps(chat).encode()
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        assert wait_until(started), "the answer never started"


def wait_until(condition: Callable[[], bool]) -> bool:
    for _ in range(500):  # a generous bound on the wait, not a measure of speed
        if condition():
            return True
        threading.Event().wait(0.02)
    return False


def test_a_client_that_leaves_while_the_cascade_reads_the_local_answer_stops_it(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = with_cloud(
        tmp_path,
        cloud,
        **{
            "routing.cascade.enabled": True,
            "routing.difficulty.enabled": False,
            "routing.capacity.enabled": False,
        },
    )
    backend = HoldingBackend()
    app = scripted_app(settings, backend)
    with serving(app) as base:
        leave_once(base, backend.generating.is_set, CHAT)
        # The cascade read the whole answer before: it was never closed, and nothing recorded.
        assert backend.stopped.wait(10)
        assert wait_until(lambda: bool(records_of(settings)))
        [record] = records_of(settings)
    local_model = app.state.hybrid.runtime.model_id
    assert (record["route"], record["model"]) == ("local", local_model)
    assert record["status"] == "cancelled"
    assert record["completion_tokens"] == 1  # the piece generated before the client left
    assert cloud.requests == []  # not escalated for a client that left


def test_a_client_that_leaves_while_a_cloud_answer_starts_cancels_the_call(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = with_cloud(
        tmp_path,
        cloud,
        **{
            "cloud.max_attempts": 1,
        },
    )
    cloud.push(Fault.black_hole())  # reads the request and never answers
    with serving(scripted_app(settings)) as base:
        ask = {**CHAT, "model": "gpt-4.1-mini"}
        leave_once(base, lambda: cloud.in_flight == 1, ask, X_Hybrid_Route="cloud")
        # The call is cancelled: its connection to the provider closes.
        assert wait_until(lambda: cloud.in_flight == 0)
        assert wait_until(lambda: bool(records_of(settings)))
        [record] = records_of(settings)
    assert (record["route"], record["model"], record["status"]) == (
        "cloud",
        "openai/gpt-4.1-mini",
        "cancelled",
    )
    assert record["completion_tokens"] == 0 and record["tokens_estimated"] is True


def test_a_local_answer_on_a_gpu_adds_the_gpu_energy_it_used(tmp_path: Path) -> None:
    readings = iter([1000.0, 1360.0])  # joules: 360 J while the answer was generated
    counter = {"cpu_only": lambda: None, "gpu": lambda: next(readings)}
    costs = {}
    for name, gpu_energy in counter.items():
        settings = settings_in(tmp_path / name)
        app = scripted_app(settings, gpu_energy=gpu_energy)
        with TestClient(app) as client:
            client.post("/v1/chat/completions", json=CHAT)
        [record] = records_of(settings)
        costs[name] = record["energy_cost_usd"]
    # 360 J = 0.1 Wh at the default 0.17 USD/kWh.
    extra = costs["gpu"] - costs["cpu_only"]  # type: ignore[operator]
    assert extra == pytest.approx(360 / 3.6e6 * 0.17, rel=0.2)
