"""A cloud provider that is slow to answer, over real sockets: the client is kept informed.

hybrid runs on a loopback port (scripted local model) in front of the fake cloud. A provider
that says nothing is given up on (after ``cloud.max_total_s`` for a stream, after
``cloud.whole_answer_timeout_s`` for an answer that is not streamed) and the local model
answers; a whole answer that takes longer than a stream may take to start is waited for; a
streamed answer still waiting to start sends ``: keep-alive`` comments, which the official
SDKs read past. Timeouts are set short so that each test finishes soon; each client's own
timeout is a generous bound, which only a server that ignores them reaches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from fake_cloud import FakeCloud, Fault

from hybrid.ledger.store import LedgerStore
from hybrid.settings import load_settings

# Far above every limit below: only a server that waits past them reaches it.
CLIENT_BOUND_S = 30.0
HELLO = [{"role": "user", "content": "Say hello"}]
TO_CLOUD = {"X-Hybrid-Route": "cloud"}
LOCAL_TEXT = "Hello world"  # what the scripted local model answers
# Longer than any test here waits: the provider must give up on it.
SILENCE_S = 60.0


def records_in(tmp_path: Path) -> list[dict[str, object]]:
    settings = load_settings(environ={"HYBRID_HOME": str(tmp_path / "home")}, dotenv_file=None)
    store = LedgerStore.open(settings.settings.ledger.resolved_path(settings.settings.home))
    try:
        return [record.to_dict() for record in reversed(store.recent(100))]
    finally:
        store.close()


def sse_lines(base_url: str, path: str, body: dict[str, object]) -> tuple[httpx.Headers, list[str]]:
    """A streamed answer's headers, and its lines as they came, comments included."""
    with (
        httpx.Client(base_url=base_url, timeout=CLIENT_BOUND_S) as http,
        http.stream("POST", path, json={**body, "stream": True}, headers=TO_CLOUD) as response,
    ):
        assert response.status_code == 200
        return response.headers, list(response.iter_lines())


def test_a_whole_answer_slower_than_a_stream_may_take_to_start_is_the_clouds(
    serve: Callable[..., str], cloud: FakeCloud
) -> None:
    # The provider sends a non-streamed answer's head only once all of it is generated.
    base_url = serve(**{"cloud.max_total_s": 0.2, "cloud.first_byte_timeout_s": 0.2})
    cloud.push(Fault.slow_first_byte(2.0))  # ten times the limits above

    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "gpt-4.1-mini", "messages": HELLO},
        headers=TO_CLOUD,
        timeout=CLIENT_BOUND_S,
    )

    assert response.status_code == 200
    assert response.headers["x-hybrid-route"] == "cloud"
    assert response.json()["choices"][0]["message"]["content"] == cloud.reply
    assert len(cloud.requests) == 1, "the answer being generated was waited for, not abandoned"


def test_a_silent_provider_falls_back_to_local_after_whole_answer_timeout_s(
    serve: Callable[..., str], cloud: FakeCloud
) -> None:
    base_url = serve(**{"cloud.max_total_s": 1.5, "cloud.whole_answer_timeout_s": 1.5})
    cloud.push(*[Fault.slow_first_byte(SILENCE_S)] * 3)

    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "gpt-4.1-mini", "messages": HELLO},
        headers=TO_CLOUD,
        timeout=CLIENT_BOUND_S,
    )

    assert response.status_code == 200
    assert response.headers["x-hybrid-route"] == "local"
    assert response.headers["x-hybrid-reason"] == "cloud_unavailable:openai:timeout;explicit:cloud"
    assert response.json()["choices"][0]["message"]["content"] == LOCAL_TEXT
    assert len(cloud.requests) == 1, "no retry: max_total_s was spent by then"


def test_a_stream_waiting_for_a_slow_provider_sends_keep_alives_first(
    serve: Callable[..., str], cloud: FakeCloud
) -> None:
    base_url = serve(**{"cloud.stream_keep_alive_s": 0.2})
    cloud.push(Fault.slow_first_byte(2.0))

    headers, lines = sse_lines(
        base_url, "/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": HELLO}
    )

    # The headers went out before the route was known; the route follows as comments.
    route = (headers["x-hybrid-route"], headers["x-hybrid-model"], headers["x-hybrid-reason"])
    assert route == ("pending", "pending", "pending")
    first_event = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    waited = lines[:first_event]
    assert waited.count(": keep-alive") >= 2
    assert ": X-Hybrid-Route: cloud" in waited
    assert ": X-Hybrid-Model: openai/gpt-4.1-mini" in waited
    assert all(line == "" or line.startswith(":") for line in waited), "comments only"
    assert ": keep-alive" not in lines[first_event:], "none once the answer flows"
    assert lines[-2:] == ["data: [DONE]", ""]


def test_a_stream_that_falls_back_after_keep_alives_names_the_timeout(
    serve: Callable[..., str], cloud: FakeCloud
) -> None:
    base_url = serve(**{"cloud.max_total_s": 1.0, "cloud.stream_keep_alive_s": 0.2})
    cloud.push(*[Fault.slow_first_byte(SILENCE_S)] * 3)

    _, lines = sse_lines(
        base_url, "/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": HELLO}
    )

    assert lines[0] == ": keep-alive"
    assert ": X-Hybrid-Route: local" in lines
    assert ": X-Hybrid-Reason: cloud_unavailable:openai:timeout;explicit:cloud" in lines
    assert lines[-2:] == ["data: [DONE]", ""]
    assert len(cloud.requests) == 1


def test_the_openai_sdk_reads_a_stream_past_its_keep_alives(
    serve: Callable[..., str], cloud: FakeCloud
) -> None:
    base_url = serve(**{"cloud.stream_keep_alive_s": 0.2})
    cloud.push(Fault.slow_first_byte(1.0))

    with openai.OpenAI(
        api_key="unused", base_url=base_url + "/v1", max_retries=0, timeout=CLIENT_BOUND_S
    ) as client:
        stream = client.chat.completions.create(
            model="gpt-4.1-mini", messages=HELLO, stream=True, extra_headers=TO_CLOUD
        )
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]

    assert "".join(pieces) == cloud.reply


def test_the_anthropic_sdk_reads_a_stream_past_its_keep_alives(
    serve: Callable[..., str], cloud: FakeCloud
) -> None:
    base_url = serve(**{"cloud.stream_keep_alive_s": 0.2})
    cloud.push(Fault.slow_first_byte(1.0))

    with (
        anthropic.Anthropic(
            api_key="unused", base_url=base_url, max_retries=0, timeout=CLIENT_BOUND_S
        ) as client,
        client.messages.stream(
            model="claude-haiku-4-5", max_tokens=64, messages=HELLO, extra_headers=TO_CLOUD
        ) as stream,
    ):
        text = "".join(stream.text_stream)

    assert text == cloud.reply


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_a_stream_that_started_and_then_found_no_backend_raises_in_the_sdk(
    serve: Callable[..., str], cloud: FakeCloud, api: str
) -> None:
    base_url = serve(
        **{
            "cloud.max_total_s": 1.0,
            "cloud.stream_keep_alive_s": 0.2,
            "cloud.local_fallback": False,
        }
    )
    cloud.push(*[Fault.slow_first_byte(SILENCE_S)] * 3)

    if api == "openai":
        with (
            openai.OpenAI(
                api_key="unused", base_url=base_url + "/v1", max_retries=0, timeout=CLIENT_BOUND_S
            ) as oa,
            pytest.raises(openai.APIError) as caught,
        ):
            for _ in oa.chat.completions.create(
                model="gpt-4.1-mini", messages=HELLO, stream=True, extra_headers=TO_CLOUD
            ):
                pass
    else:
        with (
            anthropic.Anthropic(
                api_key="unused", base_url=base_url, max_retries=0, timeout=CLIENT_BOUND_S
            ) as an,
            pytest.raises(anthropic.APIError) as caught,
            an.messages.stream(
                model="claude-haiku-4-5", max_tokens=64, messages=HELLO, extra_headers=TO_CLOUD
            ) as stream,
        ):
            stream.until_done()

    assert "max_total_s" in str(caught.value)
    assert "local fallback is off" in str(caught.value)


def test_a_client_that_leaves_during_keep_alives_is_recorded_as_cancelled(
    serve: Callable[..., str], cloud: FakeCloud, tmp_path: Path
) -> None:
    base_url = serve(**{"cloud.stream_keep_alive_s": 0.2})
    cloud.push(Fault.slow_first_byte(1.0))

    with (
        httpx.Client(base_url=base_url, timeout=CLIENT_BOUND_S) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "gpt-4.1-mini", "messages": HELLO, "stream": True},
            headers=TO_CLOUD,
        ) as response,
    ):
        assert next(response.iter_lines()) == ": keep-alive"
    # Leaving the block closed the connection while the answer was starting.
    records: list[dict[str, object]] = []
    for _ in range(500):  # a generous bound on the wait, not a measure of speed
        records = records_in(tmp_path)
        if records:
            break
        time.sleep(0.02)

    assert [(r["route"], r["model"], r["status"]) for r in records] == [
        ("cloud", "openai/gpt-4.1-mini", "cancelled")
    ]
