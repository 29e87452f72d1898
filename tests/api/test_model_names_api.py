"""Model names apps already use (``gpt-4``, ``claude-3-5-sonnet-latest``) over HTTP: they reach
their provider (a fake cloud on loopback) as sent and are priced from the price table; without
the provider's key they are a 404 that says which key to set."""

from __future__ import annotations

from pathlib import Path

from fake_cloud import FakeCloud
from fastapi.testclient import TestClient
from scripted import scripted_app

from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.settings import Settings, load_settings

HELLO = [{"role": "user", "content": "Say hello"}]
TO_CLOUD = {"X-Hybrid-Route": "cloud"}


def settings_with(tmp_path: Path, **environ: str) -> Settings:
    env = {"HYBRID_HOME": str(tmp_path / "home"), **environ}
    cli = {"probe.measure_bandwidth": False}
    return load_settings(environ=env, dotenv_file=None, cli=cli).settings


def keys_for(cloud: FakeCloud, *, openai: bool = True, anthropic: bool = True) -> dict[str, str]:
    environ = {}
    if openai:
        environ |= {"OPENAI_API_KEY": cloud.openai_key, "OPENAI_BASE_URL": cloud.base_url + "/v1"}
    if anthropic:
        environ |= {"ANTHROPIC_API_KEY": cloud.anthropic_key, "ANTHROPIC_BASE_URL": cloud.base_url}
    return environ


def ledger_records(client: TestClient, settings: Settings) -> list[LedgerRecord]:
    client.get("/v1/hybrid/stats")  # waits for the records of the requests answered so far
    store = LedgerStore.open(settings.ledger.resolved_path(settings.home))
    try:
        return list(reversed(store.recent(100)))
    finally:
        store.close()


def test_gpt_4_with_an_openai_key_reaches_openai_as_gpt_4(tmp_path: Path, cloud: FakeCloud) -> None:
    settings = settings_with(tmp_path, **keys_for(cloud))
    with TestClient(scripted_app(settings)) as client:
        response = client.post(
            "/v1/chat/completions", json={"model": "gpt-4", "messages": HELLO}, headers=TO_CLOUD
        )
        priced = client.post(
            "/v1/chat/completions", json={"model": "gpt-4o", "messages": HELLO}, headers=TO_CLOUD
        )
        records = ledger_records(client, settings)

    assert response.status_code == 200, response.text
    assert response.headers["x-hybrid-model"] == "openai/gpt-4"
    assert response.json()["choices"][0]["message"]["content"] == cloud.reply
    sent = [(r.api, r.body["model"] if r.body else None) for r in cloud.requests]
    assert sent == [("openai", "gpt-4"), ("openai", "gpt-4o")]
    # gpt-4 has no row in the price table: flagged unpriced, never recorded as free.
    assert (records[0].model, records[0].price_known) == ("openai/gpt-4", False)
    assert records[0].cloud_cost_usd is None
    assert priced.status_code == 200
    assert records[1].price_known and (records[1].cloud_cost_usd or 0.0) > 0.0


def test_the_anthropic_endpoint_takes_claude_3_5_sonnet_latest(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = settings_with(tmp_path, **keys_for(cloud))
    body = {"model": "claude-3-5-sonnet-latest", "max_tokens": 16, "messages": HELLO}
    with TestClient(scripted_app(settings)) as client:
        response = client.post("/v1/messages", json=body, headers=TO_CLOUD)
        [record] = ledger_records(client, settings)

    assert response.status_code == 200, response.text
    assert response.headers["x-hybrid-model"] == "anthropic/claude-3-5-sonnet-latest"
    assert response.json()["content"][0]["text"] == cloud.reply
    [sent] = cloud.requests
    assert sent.api == "anthropic" and sent.body is not None
    assert sent.body["model"] == "claude-3-5-sonnet-latest"
    assert (record.price_known, record.cloud_cost_usd) == (False, None)


def test_without_an_openai_key_gpt_4_is_a_404_naming_the_key(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = settings_with(tmp_path, **keys_for(cloud, openai=False))
    with TestClient(scripted_app(settings)) as client:
        response = client.post("/v1/chat/completions", json={"model": "gpt-4", "messages": HELLO})
        [record] = ledger_records(client, settings)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["message"].startswith(
        "gpt-4 is an OpenAI model but no OpenAI key is set; set OPENAI_API_KEY"
    )
    assert response.headers["x-hybrid-reason"] == "error:model_not_found;openai:no_key"
    assert record.reasons == ("error:model_not_found", "openai:no_key")
    assert cloud.requests == []


def test_without_an_anthropic_key_the_messages_endpoint_names_that_key(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = settings_with(tmp_path, **keys_for(cloud, anthropic=False))
    body = {"model": "claude-3-5-sonnet-latest", "max_tokens": 16, "messages": HELLO}
    with TestClient(scripted_app(settings)) as client:
        response = client.post("/v1/messages", json=body)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "not_found_error"
    assert "no Anthropic key is set; set ANTHROPIC_API_KEY" in error["message"]
    assert response.headers["x-hybrid-reason"] == "error:model_not_found;anthropic:no_key"


def test_models_and_the_404_list_only_providers_with_a_key(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = settings_with(tmp_path, **keys_for(cloud, anthropic=False))
    with TestClient(scripted_app(settings)) as client:
        listed = [entry["id"] for entry in client.get("/v1/models").json()["data"]]
        missing = client.post(
            "/v1/chat/completions", json={"model": "no-such-model", "messages": HELLO}
        )

    assert "openai/gpt-4.1-mini" in listed
    assert not [name for name in listed if name.startswith("anthropic/")]
    message = missing.json()["error"]["message"]
    assert "openai/gpt-4.1-mini" in message and "anthropic/" not in message
