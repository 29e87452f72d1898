"""Accounting through the HTTP API: the ledger, /v1/hybrid/stats, /metrics, mode and access.

The app runs with a scripted local backend (7 prompt tokens, one completion token per piece);
the ledger is real SQLite in the test's data dir.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from scripted import ScriptedBackend, scripted_app

from hybrid.errors import GenerationError, LedgerUnavailableError
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.settings import Settings

CHAT = {"model": "hybrid", "messages": [{"role": "user", "content": "Say hello"}]}


def ledger_records(client: TestClient, settings: Settings) -> list[LedgerRecord]:
    # Records reach SQLite shortly after their responses; a read through the server waits for
    # them (and is what a user would do).
    client.get("/v1/hybrid/stats")
    store = LedgerStore.open(settings.ledger.resolved_path(settings.home))
    try:
        return list(reversed(store.recent(1000)))
    finally:
        store.close()


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture
def app_for(
    settings_for: Callable[..., Settings], backend: ScriptedBackend
) -> Callable[..., tuple[TestClient, Settings]]:
    opened: list[TestClient] = []

    def build(**cli: object) -> tuple[TestClient, Settings]:
        settings = settings_for(**{"probe.measure_bandwidth": False, **cli})
        client = TestClient(scripted_app(settings, backend))
        client.__enter__()
        opened.append(client)
        return client, settings

    yield build  # type: ignore[misc]
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def served(
    app_for: Callable[..., tuple[TestClient, Settings]],
) -> Iterator[tuple[TestClient, Settings]]:
    yield app_for()


def test_a_local_answer_is_recorded_once_with_its_tokens_and_the_cost_it_avoided(
    served: tuple[TestClient, Settings],
) -> None:
    client, settings = served
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200

    [record] = ledger_records(client, settings)
    assert record.id == response.headers["x-hybrid-request-id"]
    assert (record.route, record.status, record.api) == ("local", "ok", "openai")
    assert (record.prompt_tokens, record.completion_tokens) == (7, 2)
    assert record.model == "scripted-model" and record.model_requested == "hybrid"
    assert record.reasons[0] == response.headers["x-hybrid-reason"]
    # No cloud configured: compared with the visible reference model, which has a price.
    assert record.counterfactual_model == settings.pricing.reference_model
    assert record.price_known and record.counterfactual_cost_usd is not None
    assert record.counterfactual_cost_usd > 0
    assert record.energy_cost_usd is not None
    assert record.cost_avoided_usd == pytest.approx(
        record.counterfactual_cost_usd - record.energy_cost_usd
    )
    assert [v.policy for v in record.verdicts][:1] == ["privacy"]


def test_a_stream_is_recorded_before_its_last_event_and_stats_and_metrics_agree(
    served: tuple[TestClient, Settings],
) -> None:
    client, settings = served
    with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as stream:
        lines = list(stream.iter_lines())
    assert "data: [DONE]" in lines
    client.post(
        "/v1/messages",
        json={"model": "local", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]},
    )

    records = ledger_records(client, settings)
    assert [(r.api, r.status) for r in records] == [("openai", "ok"), ("anthropic", "ok")]
    assert all(r.completion_tokens == 2 and not r.tokens_estimated for r in records)
    assert records[0].ttft_s is not None and records[0].ttft_s <= records[0].latency_s

    stats = client.get("/v1/hybrid/stats").json()
    for window in ("today", "all_time"):
        totals = stats[window]
        assert (totals["requests"], totals["local"], totals["cloud"]) == (2, 2, 0)
        assert totals["completion_tokens"] == 4 and totals["prompt_tokens"] == 14
        assert totals["cost_avoided_usd"] == pytest.approx(
            sum(r.cost_avoided_usd or 0 for r in records)
        )
    assert stats["mode"] == "auto" and stats["model"]["state"] == "ready"

    text = client.get("/metrics").text
    assert metric(text, "hybrid_requests_total", route="local", status="ok") == 2
    assert metric(text, "hybrid_tokens_total", route="local", kind="completion") == 4
    assert metric(text, "hybrid_cost_avoided_usd") == pytest.approx(
        stats["all_time"]["cost_avoided_usd"]
    )
    assert metric(text, "hybrid_requests_in_flight") == 0


def test_a_failure_mid_stream_is_recorded_as_an_error_with_what_was_generated(
    served: tuple[TestClient, Settings], backend: ScriptedBackend
) -> None:
    client, settings = served
    backend.fail_mid_stream = GenerationError("llama.cpp failed while generating: boom")
    with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as stream:
        body = "".join(stream.iter_text())
    assert "boom" in body

    [record] = ledger_records(client, settings)
    assert record.status == "error" and "boom" in (record.error or "")
    # The provider never said how much it generated: counted here, and marked so.
    assert record.completion_tokens > 0 and record.tokens_estimated


def test_a_request_refused_before_answering_is_recorded_as_refused(
    served: tuple[TestClient, Settings],
) -> None:
    client, settings = served
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "no-such-model"})
    assert response.status_code == 404

    [record] = ledger_records(client, settings)
    assert (record.route, record.status) == ("none", "refused")
    assert record.reasons == ("error:model_not_found",)
    today = client.get("/v1/hybrid/stats").json()["today"]
    assert (today["refused"], today["errors"], today["local"]) == (1, 0, 0)


def test_the_mode_endpoint_pins_requests_and_refuses_an_unknown_mode(
    served: tuple[TestClient, Settings],
) -> None:
    client, _ = served
    assert client.post("/v1/hybrid/mode", json={"mode": "local-only"}).json() == {
        "mode": "local-only"
    }
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "cloud"})
    assert response.status_code == 200
    assert response.headers["x-hybrid-reason"] == "mode:local-only"
    assert client.get("/v1/hybrid/stats").json()["mode"] == "local-only"

    refused = client.post("/v1/hybrid/mode", json={"mode": "fastest"})
    assert refused.status_code == 400
    assert "auto, local-only, cloud-only" in refused.json()["error"]["message"]


def test_with_an_api_key_every_endpoint_but_health_needs_it(
    app_for: Callable[..., tuple[TestClient, Settings]],
) -> None:
    client, _ = app_for(**{"server.api_key": "s3cret-key-for-tests"})
    assert client.get("/health").status_code == 200

    refused = client.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/v1/hybrid/stats", headers={"Authorization": "Bearer s3cret-key-for-testz"})
    assert wrong.status_code == 401
    anthropic_shape = client.post("/v1/messages", json={})
    assert anthropic_shape.json()["error"]["type"] == "authentication_error"

    bearer = {"Authorization": "Bearer s3cret-key-for-tests"}
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer).status_code == 200
    assert (
        client.get("/v1/hybrid/stats", headers={"x-api-key": "s3cret-key-for-tests"}).status_code
        == 200
    )


def test_the_ledger_file_holds_each_record_as_one_committed_row(
    served: tuple[TestClient, Settings],
) -> None:
    client, settings = served
    for _ in range(3):
        client.post("/v1/chat/completions", json=CHAT)
    client.get("/v1/hybrid/stats")  # every record committed
    # Another connection sees every row: they are committed, not held in a transaction.
    path = settings.ledger.resolved_path(settings.home)
    with sqlite3.connect(path) as db:
        rows: Any = db.execute("select count(*) from requests").fetchone()
    assert rows[0] == 3


def test_the_api_tests_never_read_this_machines_load(
    app_for: Callable[..., tuple[TestClient, Settings]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Other programs keep the real machine at 100 %: the app under test must not see it, or
    # its capacity policy would route by what else runs on the machine.
    from hybrid.hardware.cpu import SystemCpuSource
    from hybrid.hardware.probe import ProcessCpu

    monkeypatch.setattr(SystemCpuSource, "load_percent", lambda self: 100.0)
    monkeypatch.setattr(ProcessCpu, "__call__", lambda self: 0.0)
    client, settings = app_for()
    response = client.post("/v1/chat/completions", json=CHAT)

    [record] = ledger_records(client, settings)
    assert response.status_code == 200 and record.route == "local"
    assert [v.reason for v in record.verdicts if v.policy == "capacity"] == ["capacity:eta_0.6s"]


def test_stats_while_the_shared_ledger_is_unreachable_is_a_503_to_retry(
    served: tuple[TestClient, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = served
    ledger = client.app.state.hybrid.ledger  # type: ignore[attr-defined]

    async def down(**_: object) -> None:
        raise LedgerUnavailableError("the ledger database at db.lan:5432 is not answering")

    monkeypatch.setattr(ledger, "totals", down)
    response = client.get("/v1/hybrid/stats")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    error = response.json()["error"]
    assert error["code"] == "ledger_unavailable" and "db.lan:5432" in error["message"]
    monkeypatch.undo()
    assert client.get("/v1/hybrid/stats").status_code == 200
