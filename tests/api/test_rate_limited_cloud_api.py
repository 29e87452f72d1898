"""A cloud that rate-limits the request, and no local answer to give instead: the client hears
a rate limit (429, with the provider's wait in ``Retry-After``) in its own API's shape, so that
its SDK backs off instead of retrying at once.

hybrid's real app (scripted local model) runs in front of the fake cloud; local fallback is off,
so every cloud failure reaches the client. Both providers ask for waits longer than
``cloud.max_retry_after_s``, so hybrid fails over at once instead of waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from fake_cloud import FakeCloud, Fault
from fastapi.testclient import TestClient
from live_app import cloud_settings
from scripted import scripted_app

HELLO = [{"role": "user", "content": "Say hello"}]
TO_CLOUD = {"X-Hybrid-Route": "cloud"}

IN_BOTH_APIS = pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": HELLO}),
        ("/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": HELLO}),
    ],
    ids=["openai", "anthropic"],
)
"""One request in each API's shape: its path and body."""


@pytest.fixture
def client(cloud: FakeCloud, tmp_path: Path) -> Iterator[TestClient]:
    """hybrid with the model asked for first, the other provider's as its failover, one
    attempt each."""
    settings = cloud_settings(
        cloud,
        tmp_path / "home",
        **{
            "cloud.failover": ["openai/gpt-4.1-mini", "anthropic/claude-haiku-4-5"],
            "cloud.local_fallback": False,
            "cloud.max_attempts": 1,
        },
    )
    with TestClient(scripted_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def opening_client(cloud: FakeCloud, tmp_path: Path) -> Iterator[TestClient]:
    """As ``client``, with circuits that open at a provider's first failure."""
    settings = cloud_settings(
        cloud,
        tmp_path / "home",
        **{
            "cloud.failover": ["openai/gpt-4.1-mini", "anthropic/claude-haiku-4-5"],
            "cloud.local_fallback": False,
            "cloud.max_attempts": 1,
            "cloud.breaker_failures": 1,
        },
    )
    with TestClient(scripted_app(settings)) as test_client:
        yield test_client


def test_an_openai_client_hears_the_shortest_wait_the_providers_asked_for(
    client: TestClient, cloud: FakeCloud
) -> None:
    cloud.push(Fault.rate_limit(retry_after_s=60), Fault.rate_limit(retry_after_s=30))
    sdk = openai.OpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0
    )

    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="gpt-4.1-mini", messages=HELLO, extra_headers=TO_CLOUD)

    response = caught.value.response
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.headers["x-should-retry"] == "true"
    assert caught.value.code == "rate_limit_exceeded"
    assert "rate-limited" in caught.value.message and "retry in 30 s" in caught.value.message
    assert response.headers["x-hybrid-reason"] == "error:rate_limit_exceeded;openai:rate_limited"
    assert len(cloud.requests) == 2, "each provider asked once"


def test_an_anthropic_client_hears_a_rate_limit_error_with_the_wait(
    client: TestClient, cloud: FakeCloud
) -> None:
    cloud.push(Fault.rate_limit(retry_after_s=60), Fault.rate_limit(retry_after_s=45))
    sdk = anthropic.Anthropic(
        base_url="http://testserver", api_key="unused", http_client=client, max_retries=0
    )

    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=HELLO, extra_headers=TO_CLOUD
        )

    response = caught.value.response
    assert response.status_code == 429
    assert response.headers["retry-after"] == "45"
    assert response.json()["error"]["type"] == "rate_limit_error"


@IN_BOTH_APIS
def test_a_rate_limit_beside_another_failure_is_no_route_with_the_wait(
    client: TestClient, cloud: FakeCloud, path: str, body: dict[str, object]
) -> None:
    # The first provider rate-limits it, the other fails without asking for a wait: nothing
    # answers, and not every provider was rate limited, but a retry after the wait may succeed.
    cloud.push(Fault.rate_limit(retry_after_s=60), Fault.status(503))

    response = client.post(path, json=body, headers=TO_CLOUD)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "60"
    assert response.headers["x-should-retry"] == "true"
    error = response.json()["error"]
    if path == "/v1/messages":
        assert error["type"] == "overloaded_error"
    else:
        assert error["code"] == "no_route"


def test_an_openai_client_still_hears_a_rate_limit_when_the_circuits_429s_opened_skip_all(
    opening_client: TestClient, cloud: FakeCloud
) -> None:
    # The first request's 429s open both circuits; the second is sent nowhere, and the client
    # hears the same rate limit, with what is left of the soonest wait (openai's 60 s).
    cloud.push(Fault.rate_limit(retry_after_s=60), Fault.rate_limit(retry_after_s=3600))
    sdk = openai.OpenAI(
        base_url="http://testserver/v1",
        api_key="unused",
        http_client=opening_client,
        max_retries=0,
    )
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="gpt-4.1-mini", messages=HELLO, extra_headers=TO_CLOUD)

    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="gpt-4.1-mini", messages=HELLO, extra_headers=TO_CLOUD)

    response = caught.value.response
    assert response.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-should-retry"] == "true"
    assert "rate limiting requests" in caught.value.message
    assert response.headers["x-hybrid-reason"] == "error:rate_limit_exceeded;openai:circuit_open"
    assert len(cloud.requests) == 2, "nothing is sent to an open circuit"


def test_an_anthropic_client_still_hears_a_rate_limit_error_when_the_circuits_429s_opened(
    opening_client: TestClient, cloud: FakeCloud
) -> None:
    cloud.push(Fault.rate_limit(retry_after_s=45), Fault.rate_limit(retry_after_s=3600))
    sdk = anthropic.Anthropic(
        base_url="http://testserver", api_key="unused", http_client=opening_client, max_retries=0
    )
    for _ in range(2):
        with pytest.raises(anthropic.RateLimitError) as caught:
            sdk.messages.create(
                model="claude-haiku-4-5", max_tokens=64, messages=HELLO, extra_headers=TO_CLOUD
            )

    response = caught.value.response
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(response.headers["retry-after"]) <= 45
    assert response.headers["x-hybrid-reason"] == (
        "error:rate_limit_exceeded;anthropic:circuit_open"
    )
    assert len(cloud.requests) == 2, "nothing is sent to an open circuit"


@IN_BOTH_APIS
def test_a_circuit_a_server_error_opened_beside_rate_limits_is_still_no_route(
    opening_client: TestClient, cloud: FakeCloud, path: str, body: dict[str, object]
) -> None:
    # The first target fails with a 503 and the other rate-limits the request: both circuits
    # open, one of them not for a rate limit, so the next request is still told nothing answers.
    cloud.push(Fault.status(503), Fault.rate_limit(retry_after_s=60))
    assert opening_client.post(path, json=body, headers=TO_CLOUD).status_code == 503

    response = opening_client.post(path, json=body, headers=TO_CLOUD)

    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "true"
    error = response.json()["error"]
    if path == "/v1/messages":
        assert error["type"] == "overloaded_error"
    else:
        assert error["code"] == "no_route"
    assert len(cloud.requests) == 2, "nothing is sent to an open circuit"
