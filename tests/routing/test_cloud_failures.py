"""What a client is told when every cloud target was stopped and the local model cannot answer."""

from __future__ import annotations

import dataclasses

import pytest

from hybrid.errors import BudgetExceededError, NoRouteError
from hybrid.routing.failover import CloudFailures, Failure
from hybrid.wire.errors import wire_error


def _stopped(reason: str) -> Failure:
    return Failure("openai", reason, f"{reason}: why", retryable=False)


@pytest.mark.parametrize(
    ("reason", "lead"),
    [
        ("budget:daily_cap", "the cloud spend cap is reached"),
        ("budget:unavailable", "the shared budget cannot be reached"),
    ],
)
def test_a_budget_that_stopped_every_target_is_named_by_what_stopped_it(
    reason: str, lead: str
) -> None:
    error = CloudFailures((_stopped(reason),)).error("no local model is loaded")

    assert isinstance(error, BudgetExceededError)
    assert str(error).startswith(lead + " and the local model cannot answer")
    assert "no local model is loaded" in str(error)


def test_a_budget_that_stopped_only_some_targets_is_not_a_cap() -> None:
    failures = CloudFailures(
        (_stopped("budget:daily_cap"), Failure("anthropic", "timeout", "slow", retryable=True))
    )

    error = failures.error("no local model is loaded")

    assert isinstance(error, NoRouteError)
    assert failures.fallback_reason == "cloud_unavailable:openai:budget:daily_cap"


def _rate_limited(where: str, retry_after: float | None) -> Failure:
    return Failure(
        where, "rate_limited", f"{where}: 429", True, retry_after=retry_after, rate_limited=True
    )


def test_every_target_rate_limited_is_a_rate_limit_with_the_shortest_wait() -> None:
    failures = CloudFailures((_rate_limited("openai", 60.0), _rate_limited("anthropic", 19.2)))

    error = failures.error("local: the local model cannot call tools")

    assert isinstance(error, NoRouteError)
    assert error.rate_limited and error.should_retry
    assert error.retry_after == 19.2
    assert str(error).startswith(
        "every cloud provider tried rate-limited the request (retry in 20 s)"
    )
    assert "local: the local model cannot call tools" in str(error)


def test_a_wait_is_kept_when_other_targets_failed_otherwise() -> None:
    failures = CloudFailures(
        (
            _rate_limited("openai", 60.0),
            Failure("anthropic", "timeout", "slow", retryable=True),
            # A wait a retry cannot use is no wait for the client.
            Failure("groq", "auth", "bad key", retryable=False, retry_after=5.0),
        )
    )

    error = failures.error("local fallback is off (cloud.local_fallback)")

    assert isinstance(error, NoRouteError)
    assert not error.rate_limited
    assert error.retry_after == 60.0
    assert str(error).startswith("no backend could answer: ")


def test_a_rate_limit_without_a_wait_leaves_the_wait_unsaid() -> None:
    error = CloudFailures((_rate_limited("openai", None),)).error("local: busy")

    assert isinstance(error, NoRouteError)
    assert error.rate_limited and error.retry_after is None
    assert "retry in" not in str(error)


@pytest.mark.parametrize(
    ("now", "header"),
    [(1001.5, "9"), (1009.2, "1"), (1012.0, "1")],
    ids=["rounded-up", "under-a-second", "already-over"],
)
def test_the_wait_told_counts_from_when_it_was_said_and_is_at_least_a_second(
    now: float, header: str
) -> None:
    said = dataclasses.replace(_rate_limited("openai", 10.0), said_at=1000.0)

    error = CloudFailures((said,), clock=lambda: now).error("local: busy")

    assert isinstance(error, NoRouteError)
    assert wire_error(error).headers()["Retry-After"] == header
