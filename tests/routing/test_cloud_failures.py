"""What a client is told when every cloud target was stopped and the local model cannot answer."""

from __future__ import annotations

import pytest

from hybrid.errors import BudgetExceededError, NoRouteError
from hybrid.routing.failover import CloudFailures, Failure


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
