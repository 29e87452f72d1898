"""What the figures count, through a real server: refused requests, prompt-cache prices, and who
decided each route, as ``/v1/hybrid/stats``, ``/metrics``, the event stream, the monitor and
``hybrid stats`` show them.

The app runs with a scripted local backend (7 prompt tokens, 2 completion tokens) on a real
uvicorn server; cloud answers come from the fake cloud over loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_cloud import FakeCloud, PromptCache
from live_app import serving
from prometheus_client.parser import text_string_to_metric_families
from scripted import ScriptedBackend, scripted_app

from hybrid.cli import main
from hybrid.errors import QueueFullError
from hybrid.ledger.store import LedgerStore
from hybrid.monitor.state import DashboardState
from hybrid.settings import Settings, load_settings

CHAT = {"model": "hybrid", "messages": [{"role": "user", "content": "Say hello"}]}
MESSAGE = {"max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]}
PER_TOKEN = 1e-6


def settings_in(home: Path, **cli: object) -> Settings:
    environ = {"HYBRID_HOME": str(home)}
    cli = {"probe.measure_bandwidth": False, **cli}
    return load_settings(environ=environ, dotenv_file=None, cli=cli).settings


def records_of(settings: Settings) -> list[dict[str, Any]]:
    store = LedgerStore.open(settings.ledger.resolved_path(settings.home))
    try:
        return [record.to_dict() for record in reversed(store.recent(100))]
    finally:
        store.close()


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def follow(
    lines: Iterator[str], monitor: DashboardState, until: str, count: int = 1
) -> list[dict[str, Any]]:
    """Feed events to the monitor until ``count`` events named ``until`` came; their bodies."""
    bodies: list[dict[str, Any]] = []
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: ") and name is not None:
            data = json.loads(line[len("data: ") :])
            monitor.receive(name, data, now=time.time())
            if name == until:
                bodies.append(data)
                if len(bodies) == count:
                    return bodies
    raise AssertionError(f"the stream ended after {bodies}")


# -- refused requests ---------------------------------------------------------------------------


def test_requests_refused_before_any_model_ran_count_as_refused_not_as_local_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_in(tmp_path / "home", **{"server.max_body_bytes": 4096})
    backend = ScriptedBackend()
    monitor = DashboardState()
    with serving(scripted_app(settings, backend)) as base:
        with httpx.Client(base_url=base, timeout=10) as http:
            with http.stream("GET", "/v1/hybrid/events") as events:
                lines = events.iter_lines()
                follow(lines, monitor, "snapshot")  # following from here on
                answered = http.post("/v1/chat/completions", json=CHAT)
                bad_header = http.post(
                    "/v1/chat/completions", json=CHAT, headers={"X-Hybrid-Route": "fastest"}
                )
                unknown = http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9-ultra"})
                backend.fail_on_start = QueueFullError(depth=3, retry_after=1.0)
                full = http.post("/v1/messages", json={**MESSAGE, "model": "local"})
                too_large = http.post(
                    "/v1/chat/completions",
                    content=b'{"model": "hybrid", "messages": []' + b" " * 5000 + b"}",
                    headers={"content-type": "application/json"},
                )
                finished = follow(lines, monitor, "request_finished", 4)
            stats = http.get("/v1/hybrid/stats").json()
            metrics = http.get("/metrics").text

    statuses = [r.status_code for r in (answered, bad_header, unknown, full, too_large)]
    assert statuses == [200, 400, 404, 429, 413]
    answer, *refused = finished
    assert (answer["route"], answer["status"]) == ("local", "ok")
    assert [(r["route"], r["status"]) for r in refused] == [("none", "refused")] * 3
    assert [r["reasons"][0] for r in refused] == [
        "error:invalid_request_error",
        "error:model_not_found",
        "error:rate_limit_exceeded",
    ]
    assert all(r["prompt_tokens"] == 0 and r["cost_avoided_usd"] == 0.0 for r in refused)
    assert all(r["decided"] is None for r in refused)

    # The 413 never reached the router: four requests, of which one was answered, locally.
    saved = answer["cost_avoided_usd"]
    assert saved > 0
    for window in ("today", "all_time"):
        totals = stats[window]
        assert (totals["requests"], totals["local"], totals["cloud"]) == (4, 1, 0)
        assert (totals["refused"], totals["errors"]) == (3, 0)
        assert totals["local_share"] == 1.0
        assert totals["cost_avoided_usd"] == pytest.approx(saved)

    assert metric(metrics, "hybrid_requests_total", route="local") == 1
    assert metric(metrics, "hybrid_requests_total", route="none", status="refused") == 3
    assert metric(metrics, "hybrid_cost_avoided_usd") == pytest.approx(saved)

    today = monitor.view(now=time.time()).today
    assert (today.requests, today.local, today.refused, today.local_share) == (4, 1, 3, 1.0)
    assert today.cost_avoided_usd == pytest.approx(saved)
    assert sum(monitor.view(now=time.time()).local_per_minute) == 1

    monkeypatch.setenv("HYBRID_HOME", str(settings.home))
    assert main(["stats"]) == 0
    text = capsys.readouterr().out
    assert "requests      4 (1 local, 0 cloud, 3 refused, 0 errors; local share 100%)" in text


# -- prompt-cache prices ------------------------------------------------------------------------


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="Hello from the fake cloud.") as fake:
        fake.prompt_cache = PromptCache(read=1024, write=200)
        yield fake


def test_cached_prompt_tokens_are_billed_at_the_cache_rates_streamed_and_whole(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = settings_in(
        tmp_path / "home",
        **{
            "cloud.openai.api_key": cloud.openai_key,
            "cloud.openai.base_url": cloud.base_url + "/v1",
            "cloud.anthropic.api_key": cloud.anthropic_key,
            "cloud.anthropic.base_url": cloud.base_url,
        },
    )
    to_cloud = {"X-Hybrid-Route": "cloud"}
    with serving(scripted_app(settings)) as base:
        with httpx.Client(base_url=base, timeout=10) as http:
            for stream in (False, True):
                chat = {**CHAT, "model": "gpt-4.1-mini", "stream": stream}
                message = {**MESSAGE, "model": "claude-haiku-4-5", "stream": stream}
                assert http.post("/v1/chat/completions", json=chat, headers=to_cloud).is_success
                assert http.post("/v1/messages", json=message, headers=to_cloud).is_success
            # A model whose price has no cache-write rate (none is published for it).
            unpriced = {**MESSAGE, "model": "claude-sonnet-5-5"}
            assert http.post("/v1/messages", json=unpriced, headers=to_cloud).is_success
            metrics = http.get("/metrics").text

    records = records_of(settings)
    openai_whole, haiku_whole, openai_streamed, haiku_streamed, sonnet = records
    for record in (openai_whole, openai_streamed):
        # OpenAI counts the cache inside prompt_tokens and reports no writes: those are input.
        assert (record["cache_read_tokens"], record["cache_write_tokens"]) == (1024, 0)
        uncached = record["prompt_tokens"] - 1024
        assert uncached > 200 and record["price_known"]
        # gpt-4.1-mini: $0.40 input, $0.10 cached input, $1.60 output per million tokens.
        expected = (uncached * 0.40 + 1024 * 0.10 + record["completion_tokens"] * 1.60) * PER_TOKEN
        assert record["cloud_cost_usd"] == pytest.approx(expected)
    for record in (haiku_whole, haiku_streamed):
        assert (record["cache_read_tokens"], record["cache_write_tokens"]) == (1024, 200)
        uncached = record["prompt_tokens"] - 1224
        assert uncached > 0 and record["price_known"]
        # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output.
        expected = (
            uncached * 1.0 + 1024 * 0.10 + 200 * 1.25 + record["completion_tokens"] * 5.0
        ) * PER_TOKEN
        assert record["cloud_cost_usd"] == pytest.approx(expected)
    assert openai_streamed["cloud_cost_usd"] == pytest.approx(openai_whole["cloud_cost_usd"])
    assert haiku_streamed["cloud_cost_usd"] == pytest.approx(haiku_whole["cloud_cost_usd"])

    assert sonnet["cache_write_tokens"] == 200
    assert sonnet["cloud_cost_usd"] is None and sonnet["price_known"] is False
    assert metric(metrics, "hybrid_unpriced_requests_total") == 1


# -- who decided the route ----------------------------------------------------------------------


def test_stats_by_decided_separate_what_the_router_kept_local_from_what_was_pinned(
    tmp_path: Path,
) -> None:
    settings = settings_in(tmp_path / "home")
    with serving(scripted_app(settings)) as base:
        with httpx.Client(base_url=base, timeout=10) as http:
            http.post("/v1/chat/completions", json=CHAT)
            http.post("/v1/chat/completions", json={**CHAT, "model": "local"})
            local_id = http.get("/v1/hybrid/stats").json()["model"]["id"]
            http.post("/v1/chat/completions", json={**CHAT, "model": local_id})
            http.post("/v1/chat/completions", json=CHAT, headers={"X-Hybrid-Route": "local"})
            http.post("/v1/hybrid/mode", json={"mode": "local-only"})
            http.post("/v1/chat/completions", json=CHAT)
            stats = http.get("/v1/hybrid/stats", params={"by": "decided"}).json()
            wrong = http.get("/v1/hybrid/stats", params={"by": "weekday"})
            metrics = http.get("/metrics").text

    assert stats["by"] == "decided"
    for window in ("today", "all_time"):
        groups = {g["key"]: g["totals"] for g in stats["groups"][window]}
        assert {key: t["local"] for key, t in groups.items()} == {
            "client": 3,
            "router": 1,
            "mode": 1,
        }
        assert sum(t["cost_avoided_usd"] for t in groups.values()) == pytest.approx(
            stats[window]["cost_avoided_usd"]
        )
    router = next(g for g in stats["groups"]["all_time"] if g["key"] == "router")["totals"]
    assert router["cost_avoided_usd"] > 0
    assert metric(metrics, "hybrid_cost_avoided_usd", decided="router") == pytest.approx(
        router["cost_avoided_usd"]
    )
    assert wrong.status_code == 400 and "decided" in wrong.json()["error"]["message"]
    assert [r["decided"] for r in records_of(settings)] == [
        "router",
        "client",
        "client",
        "client",
        "mode",
    ]
