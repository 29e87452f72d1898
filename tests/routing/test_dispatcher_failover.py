"""Failover, local fallback and the reasons they give, with scripted local and cloud backends."""

from __future__ import annotations

import pytest
from dispatching import REQUEST, dispatcher, run, text_of
from routing_fakes import FakeLocal, FakeProvider

from hybrid.errors import (
    ContextLengthExceededError,
    NoRouteError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    QueueFullError,
)


def test_failover_to_the_next_target_names_the_first_failure() -> None:
    openai = FakeProvider("openai", ProviderTimeoutError("openai", "no first byte in 2 s"))
    anthropic = FakeProvider("anthropic")
    d = dispatcher(FakeLocal(), openai, anthropic, failover=("anthropic/claude-sonnet-4-5",))
    answer = run(d.start(REQUEST, model="cloud"))
    assert answer.model == "anthropic/claude-sonnet-4-5"
    assert answer.reason == "explicit:cloud;failover:openai:timeout"


def test_every_cloud_target_down_falls_back_to_local() -> None:
    openai = FakeProvider("openai", ProviderUnavailableError("openai", "503", status=503))
    answer = run(dispatcher(FakeLocal(), openai).start(REQUEST, model="cloud"))
    assert (answer.route, answer.reason) == (
        "local",
        "cloud_unavailable:openai:unavailable;explicit:cloud",  # why, then why it went out
    )
    assert run(text_of(answer)) == "local answer"


def test_no_key_falls_back_to_local_and_says_so() -> None:
    answer = run(
        dispatcher(FakeLocal(), FakeProvider("openai"), keys=()).start(REQUEST, model="cloud")
    )
    assert answer.route == "local"
    assert answer.reason == "cloud_unavailable:cloud:no_provider;explicit:cloud"
    d = dispatcher(FakeLocal(), FakeProvider("openai"), keys=("anthropic",))
    assert run(d.start(REQUEST, model="openai/gpt-4.1-mini", override="cloud")).reason == (
        "cloud_unavailable:openai:no_key;explicit:cloud"
    )


def test_nothing_can_serve_names_every_failure_and_whether_to_retry() -> None:
    local = FakeLocal(
        ContextLengthExceededError(prompt_tokens=9000, max_tokens=0, context_length=8192)
    )
    openai = FakeProvider("openai", ProviderTimeoutError("openai", "no first byte in 2 s"))
    with pytest.raises(NoRouteError) as caught:
        run(dispatcher(local, openai).start(REQUEST, model="hybrid"))
    message = str(caught.value)
    assert "openai: no first byte" in message and "local: prompt is 9,000 tokens" in message
    assert caught.value.failures == ["openai:timeout"] and caught.value.should_retry
    with pytest.raises(NoRouteError) as no_key:
        run(dispatcher(local, FakeProvider("openai"), keys=()).start(REQUEST, model="cloud"))
    assert not no_key.value.should_retry
    assert "OPENAI_API_KEY" in str(no_key.value)


def test_with_no_cloud_configured_the_local_error_stands_and_says_why() -> None:
    local = FakeLocal(
        ContextLengthExceededError(prompt_tokens=9000, max_tokens=0, context_length=8192)
    )
    with pytest.raises(ContextLengthExceededError) as caught:
        run(dispatcher(local, FakeProvider("openai"), keys=()).start(REQUEST, model="hybrid"))
    message = str(caught.value)
    assert "prompt is 9,000 tokens" in message and "8,192" in message
    assert "No cloud provider is configured" in message and "OPENAI_API_KEY" in message
    busy = FakeLocal(QueueFullError(depth=3, retry_after=2))
    with pytest.raises(QueueFullError):
        run(dispatcher(busy, FakeProvider("openai"), keys=()).start(REQUEST, model="hybrid"))


def test_local_fallback_can_be_switched_off() -> None:
    openai = FakeProvider("openai", ProviderUnavailableError("openai", "503"))
    with pytest.raises(NoRouteError, match="local fallback is off"):
        run(dispatcher(FakeLocal(), openai, local_fallback=False).start(REQUEST, model="cloud"))


def test_a_request_the_provider_rejects_is_not_failed_over() -> None:
    openai = FakeProvider("openai", ProviderRejectedError("openai", "bad temperature", status=400))
    anthropic = FakeProvider("anthropic")
    d = dispatcher(FakeLocal(), openai, anthropic, failover=("anthropic/claude-sonnet-4-5",))
    with pytest.raises(ProviderRejectedError):
        run(d.start(REQUEST, model="cloud"))
    assert anthropic.models_asked == []
