"""The ledger of a real ``hybrid serve``: real local answers, a fake cloud, and a SIGKILL."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fake_cloud import FakeCloud
from ledger_load import ChatLoad, cloud_env, ledger_rows
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families
from server_process import RunningServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="Paris is the capital of France, as the fake cloud says.") as fake:
        yield fake


def test_real_local_answers_are_accounted_the_same_in_ledger_stats_and_metrics(
    start_server: Callable[..., RunningServer], cloud: FakeCloud, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    server = start_server(env=cloud_env(cloud, ledger))
    client = OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    question = [{"role": "user", "content": "What is the capital of France?"}]

    whole = client.chat.completions.with_raw_response.create(
        model="local",
        messages=question,
        max_tokens=12,  # type: ignore[arg-type]
    )
    answer = whole.parse()
    streamed = client.chat.completions.create(
        model="local",
        messages=question,  # type: ignore[arg-type]
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in streamed if chunk.usage is not None][-1]
    to_cloud = client.chat.completions.with_raw_response.create(
        model="gpt-4.1-mini", messages=question, extra_headers={"X-Hybrid-Route": "cloud"}
    )

    httpx.get(server.base_url + "/v1/hybrid/stats")  # waits until every record is committed
    rows = ledger_rows(ledger)
    assert len(rows) == 3
    local_row = rows[whole.headers["x-hybrid-request-id"]]
    assert answer.usage is not None
    assert local_row["completion_tokens"] == answer.usage.completion_tokens
    assert local_row["prompt_tokens"] == answer.usage.prompt_tokens
    # Priced against the default cloud model, the one a `hybrid` request would have used.
    assert str(local_row["counterfactual_model"]).startswith("openai/")
    assert local_row["cost_avoided_usd"] is not None
    streamed_rows = [r for r in rows.values() if r["route"] == "local" and r is not local_row]
    assert [r["completion_tokens"] for r in streamed_rows] == [usage.completion_tokens]
    cloud_row = rows[to_cloud.headers["x-hybrid-request-id"]]
    assert cloud_row["route"] == "cloud" and cloud_row["cloud_cost_usd"] > 0  # type: ignore[operator]

    stats = httpx.get(server.base_url + "/v1/hybrid/stats").json()["all_time"]
    assert (stats["requests"], stats["local"], stats["cloud"]) == (3, 2, 1)
    assert stats["completion_tokens"] == sum(r["completion_tokens"] for r in rows.values())  # type: ignore[misc]
    metrics = httpx.get(server.base_url + "/metrics").text
    requests = sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "hybrid_requests_total"
    )
    assert requests == 3
    assert server.stop() == 0


def test_a_sigkill_under_load_loses_no_record_of_a_completed_response(
    start_server: Callable[..., RunningServer], cloud: FakeCloud, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    env = cloud_env(cloud, ledger)
    server = start_server(env=env)
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hi"}]}
    to_cloud = {"X-Hybrid-Route": "cloud"}
    load = ChatLoad(server.base_url, [({**body, "stream": True}, to_cloud), (body, to_cloud)])

    load.start().wait_for(150)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    load.stop()
    completed = load.completed

    # A restarted server commits what the killed one had only journaled, then counts it all.
    again = start_server(env=env)
    stats = httpx.get(again.base_url + "/v1/hybrid/stats").json()["all_time"]
    rows = ledger_rows(ledger)
    missing = [request_id for request_id in completed if request_id not in rows]
    assert not missing, f"{len(missing)} completed responses have no ledger record"
    assert all(rows[request_id]["status"] == "ok" for request_id in completed)
    assert stats["requests"] == len(rows) >= len(completed)
    assert again.stop() == 0
