"""ServerLoad's arithmetic, the readers' refusals, and the server root from a base URL."""

from __future__ import annotations

import pytest

from hybrid.lan import ServerLoad, server_root
from hybrid.lan.reports import read_hybrid_health, read_metrics, read_ollama_ps, read_slots


def load(running: int | None, waiting: int | None, slots: int | None = None) -> ServerLoad:
    idle = None if slots is None or running is None else slots - running
    return ServerLoad(running, waiting, slots, idle, "llama-server /slots+/metrics", None, 0.0)


def test_demand_counts_running_and_waiting() -> None:
    assert load(3, 2).demand() == 5


def test_in_flight_stands_in_for_an_unknown_or_stale_running_count() -> None:
    assert load(None, None).demand(in_flight=4) == 4  # Ollama says nothing
    assert load(1, 2).demand(in_flight=3) == 5  # sent since the server was asked
    assert load(6, 0).demand(in_flight=3) == 6  # other clients' requests count too


def test_utilisation_compares_servers_of_different_sizes() -> None:
    saturated = load(4, 6, slots=4)
    roomy = load(4, 0, slots=16)
    assert saturated.utilisation() == 2.5
    assert roomy.utilisation() == 0.25
    assert load(2, 0).utilisation(max_concurrency=8) == 0.25
    assert load(2, 1).utilisation() == 3.0  # no capacity known: the demand itself


def test_from_in_flight_is_hybrids_own_count() -> None:
    counted = ServerLoad.from_in_flight(3, measured_at=7.0)
    assert (counted.source, counted.running, counted.waiting, counted.measured_at) == (
        "in-flight",
        3,
        None,
        7.0,
    )
    assert counted.to_json()["source"] == "in-flight"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"error": {"code": 501, "message": "This server does not support slots endpoint."}}',
        b'[{"id": 0, "is_processing": "yes"}]',
        b"[1, 2]",
        b"not json",
    ],
)
def test_slots_reader_refuses_what_is_not_a_slots_array(body: bytes) -> None:
    assert read_slots(body, 0.0) is None


def test_slots_reader_reads_builds_before_is_processing() -> None:
    reading = read_slots(b'[{"id": 0, "state": 1}, {"id": 1, "state": 0}]', 0.0)
    assert reading is not None and (reading.running, reading.slots_idle) == (1, 1)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"# HELP hybrid_requests_total x\n# TYPE hybrid_requests_total counter\n"
        b"hybrid_requests_total 3\n",
        b'{"status": "ok"}',
        b"\xff\xfe",
    ],
)
def test_metrics_reader_refuses_what_no_engine_printed(body: bytes) -> None:
    assert read_metrics(body, 0.0) is None


def test_metrics_reader_sums_vllm_engines_and_skips_nan() -> None:
    text = (
        b'vllm:num_requests_running{engine="0",model_name="m"} 2.0\n'
        b'vllm:num_requests_running{engine="1",model_name="m"} 3.0\n'
        b'vllm:num_requests_waiting{engine="0",model_name="m"} NaN\n'
    )
    reading = read_metrics(text, 0.0)
    assert reading is not None and (reading.running, reading.waiting) == (5, None)


@pytest.mark.parametrize("body", [b'{"models": [{"size": 1}]}', b'{"models": null}', b"[]"])
def test_ollama_reader_refuses_other_bodies(body: bytes) -> None:
    assert read_ollama_ps(body, 0.0) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": "ok"}',  # llama-server's /health
        b'{"status": "loading", "local": {"state": "loading"}}',
        b'{"slots": {"total": 2, "busy": true}, "queue": {"waiting": 0}}',
        b'{"slots": {"total": 2, "busy": 1}, "queue": {"waiting": -1}}',
    ],
)
def test_hybrid_reader_needs_its_slots_and_queue(body: bytes) -> None:
    assert read_hybrid_health(body, 0.0) is None


@pytest.mark.parametrize(
    ("base_url", "root"),
    [
        ("http://gpu-box:8080/v1", "http://gpu-box:8080"),
        ("http://gpu-box:8080/v1/", "http://gpu-box:8080"),
        ("https://gpu-box/llama/v1", "https://gpu-box/llama"),
        ("http://gpu-box:11434", "http://gpu-box:11434"),
        ("http://gpu-box:8000/", "http://gpu-box:8000"),
        ("  http://10.0.0.7:8080/v1 ", "http://10.0.0.7:8080"),
    ],
)
def test_the_server_root_is_the_base_url_less_v1(base_url: str, root: str) -> None:
    assert server_root(base_url) == root
