"""A key an upstream echoes in its error never gets past hybrid.

A provider may quote the key it was sent (``Incorrect API key provided: sk-...``) or one from the
prompt, in a JSON error body or in an SSE ``error`` event.  hybrid passes the error on to the
client, its log, the ledger and the event stream; each must show ``[key]`` or
``[redacted:...]`` where the key was.  The upstream is the fake cloud on loopback, hybrid runs
on a real port, and its keys are real-format keys drawn at test time.
"""

from __future__ import annotations

import json
import logging
import random
import string
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_cloud import FakeCloud, Fault
from live_app import cloud_settings, serving
from scripted import scripted_app

from hybrid.ledger.store import LedgerStore
from hybrid.settings import Settings

_RNG = random.Random(7)
_URL_SAFE = string.ascii_letters + string.digits + "-_"
OPENAI_KEY = "sk-proj-" + "".join(_RNG.choice(_URL_SAFE) for _ in range(156))
ANTHROPIC_KEY = "sk-ant-api03-" + "".join(_RNG.choice(_URL_SAFE) for _ in range(93)) + "AA"
# A key of another service that the upstream quotes from the prompt it was sent.
GITHUB_TOKEN = "ghp_" + "".join(
    _RNG.choice(string.ascii_letters + string.digits) for _ in range(36)
)
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(openai_key=OPENAI_KEY, anthropic_key=ANTHROPIC_KEY) as fake:
        yield fake


def settings_for(cloud: FakeCloud, home: Path, **cli: object) -> Settings:
    return cloud_settings(cloud, home, **{"cloud.backoff_base_s": 0.01, **cli})


def ledger_text(settings: Settings) -> str:
    store = LedgerStore.open(settings.ledger.resolved_path(settings.home))
    try:
        return json.dumps([record.to_dict() for record in store.recent(100)])
    finally:
        store.close()


def finished_event(lines: Iterator[str]) -> str:
    """The raw lines of the event stream up to and including the first ``request_finished``."""
    seen: list[str] = []
    for line in lines:
        seen.append(line)
        if line.startswith("data: ") and seen[-2:-1] == ["event: request_finished"]:
            return "\n".join(seen)
    raise AssertionError(f"the event stream ended without request_finished: {seen}")


# (endpoint, request body, the echoing provider's key, the fault)
CASES = {
    "openai, mid-stream": (
        "/v1/chat/completions",
        {"model": "gpt-4.1-mini", "messages": HELLO, "stream": True},
        OPENAI_KEY,
        2,
        None,
    ),
    "anthropic, mid-stream": (
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": HELLO, "stream": True},
        ANTHROPIC_KEY,
        4,
        None,
    ),
    "openai, before the first token": (
        "/v1/chat/completions",
        {"model": "gpt-4.1-mini", "messages": HELLO, "stream": True},
        OPENAI_KEY,
        0,
        "invalid_request_error",
    ),
}


@pytest.mark.parametrize(
    ("path", "body", "key", "after_chunks", "error_type"), CASES.values(), ids=CASES.keys()
)
def test_a_key_in_an_sse_error_event_reaches_no_client_log_ledger_or_event(
    cloud: FakeCloud,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: dict[str, object],
    key: str,
    after_chunks: int,
    error_type: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    message = f"Incorrect API key provided: {key}. The prompt held {GITHUB_TOKEN} too."
    cloud.push(Fault.stream_error(message, after_chunks=after_chunks, error_type=error_type))
    settings = settings_for(cloud, tmp_path / "home")

    with serving(scripted_app(settings)) as base, httpx.Client(base_url=base, timeout=10) as http:
        with http.stream("GET", "/v1/hybrid/events") as events:
            lines = events.iter_lines()
            next(line for line in lines if line.startswith("data: "))  # the snapshot
            answer = http.post(path, json=body, headers={"X-Hybrid-Route": "cloud"})
            event = finished_event(lines)
    ledger = ledger_text(settings)

    # The upstream's error got through, with the keys blanked out of it.
    assert "[key]" in answer.text and "[redacted:api_key:github]" in answer.text
    assert "[key]" in ledger and "[redacted:api_key:github]" in event
    for secret in (key, GITHUB_TOKEN):
        assert secret not in answer.text
        assert secret not in caplog.text
        assert secret not in ledger
        assert secret not in event


def test_a_key_in_an_error_that_is_retried_is_not_logged(
    cloud: FakeCloud, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud.push(Fault.stream_error(f"Incorrect API key provided: {OPENAI_KEY}.", after_chunks=0))
    settings = settings_for(cloud, tmp_path / "home", **{"cloud.max_attempts": 2})
    body = {"model": "gpt-4.1-mini", "messages": HELLO, "stream": True}

    with serving(scripted_app(settings)) as base, httpx.Client(base_url=base, timeout=10) as http:
        answer = http.post("/v1/chat/completions", json=body, headers={"X-Hybrid-Route": "cloud"})

    assert cloud.reply.split()[0] in answer.text  # the second attempt answered
    assert "attempt 1 of 2 failed" in caplog.text and "[key]" in caplog.text
    assert OPENAI_KEY not in caplog.text
