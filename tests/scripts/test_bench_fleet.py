"""The fleet benchmark's own arithmetic: how it sorts answers, prices what the cloud generated,
judges an overspend and names why LiteLLM's database could not be used.

The end-to-end run (three daemons on a real PostgreSQL server) is in ``tests/test_scripts.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from scripts_import import script


@pytest.fixture(scope="module")
def fleet() -> Iterator[ModuleType]:
    with script("bench_fleet") as module:
        yield module


@pytest.fixture(scope="module")
def litellm() -> Iterator[ModuleType]:
    with script("bench_litellm") as module:
        yield module


def test_answers_are_sorted_by_the_route_that_gave_them(fleet: ModuleType) -> None:
    cloud = fleet.classify("edge-a", 200, {"X-Hybrid-Route": "cloud"}, "{}")
    local = fleet.classify("edge-a", 200, {"x-hybrid-route": "local"}, "{}")
    peer = fleet.classify("edge-b", 200, {}, "{}")  # LiteLLM names no route: its upstream

    assert (cloud.kind, local.kind, peer.kind) == ("cloud", "local", "cloud")
    assert peer.daemon == "edge-b" and peer.detail == ""


def test_a_budget_refusal_is_told_from_other_failures(fleet: ModuleType) -> None:
    capped = fleet.classify(
        "edge-a", 429, {"X-Hybrid-Reason": "error:insufficient_quota;budget:daily_cap"}, "{}"
    )
    down = fleet.classify(
        "edge-a", 429, {"x-hybrid-reason": "error:insufficient_quota;budget:unavailable"}, "{}"
    )
    litellm = fleet.classify(
        "edge-b", 400, {}, '{"error": {"message": "Budget has been exceeded"}}'
    )
    failed = fleet.classify("edge-c", 502, {"X-Hybrid-Reason": "error:upstream_error"}, "{}")
    lost = fleet.classify("edge-c", 0, {}, "")

    assert (capped.kind, capped.detail) == ("budget", "budget:daily_cap")
    assert (down.kind, down.detail) == ("budget", "budget:unavailable")
    assert (litellm.kind, litellm.detail) == ("budget", "400 budget")
    assert (failed.kind, failed.detail) == ("other", "502")
    assert (lost.kind, lost.detail) == ("other", "no response")


def test_what_the_cloud_generated_is_priced_from_each_request_it_received(
    fleet: ModuleType,
) -> None:
    bodies = [
        {"max_tokens": 10, "messages": [{"role": "user", "content": "Tell me about budgets"}]},
        {"max_completion_tokens": 3, "messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
        None,  # a body the fake could not parse got no answer
    ]

    prompt, completion, usd = fleet.cloud_spend(bodies, reply_words=40)

    assert (prompt, completion) == (4 + 1 + 1, 10 + 3 + 40)
    assert usd == pytest.approx(53 * fleet.OUTPUT_USD_PER_1M / 1e6)


def _result(fleet: ModuleType, name: str, answered: int) -> object:
    counts = {d: dict.fromkeys(fleet.KINDS, 0) for d in fleet.DAEMONS}
    counts[fleet.DAEMONS[0]]["cloud"] = answered
    return fleet.Result(name, counts, {}, fleet.LATER, answered, answered * fleet.COST, None)


@pytest.mark.parametrize(("answered", "verdict"), [(5, "met"), (6, "NOT met")])
def test_a_shared_budget_may_overspend_by_one_estimate_and_no_more(
    fleet: ModuleType, capsys: pytest.CaptureFixture[str], answered: int, verdict: str
) -> None:
    cap = 4 * fleet.COST

    fleet.print_table([_result(fleet, "hybrid, one shared budget", answered)], cap)

    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("hybrid, one shared budget")]
    overspend = (answered - 4) * fleet.COST
    assert f"${overspend:.2f}" in row.split() and f"{answered / 4:.2f}x" in row.split()
    assert f"overspend <= one request's estimate: {verdict}" in out
    assert f"largest single request's estimate: ${fleet.COST:.2f}" in out


def test_prisma_s_own_error_line_says_why_litellm_s_database_cannot_run(
    litellm: ModuleType,
) -> None:
    output = (
        "Installing Prisma CLI\n"
        "Error: request to https://binaries.prisma.sh/all_commits/abc/query-engine.gz.sha256 "
        "failed, reason: getaddrinfo ENOTFOUND binaries.prisma.sh\n"
        "\n"
    )

    line = litellm.prisma_failure(output)

    assert line.startswith("Error: request to https://binaries.prisma.sh/")
    assert line.endswith("ENOTFOUND binaries.prisma.sh")
    assert litellm.prisma_failure("") == "(no output)"


def test_a_proxy_on_a_database_gets_its_url_and_nothing_else_from_the_environment(
    litellm: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@elsewhere/db")
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-not-this-one")

    env = litellm.proxy_env("sk-bench-1", "postgresql://hybrid@127.0.0.1:5/litellm")
    bare = litellm.proxy_env("sk-bench-1", None)

    assert env["DATABASE_URL"] == "postgresql://hybrid@127.0.0.1:5/litellm"
    assert env["LITELLM_MASTER_KEY"] == "sk-bench-1"
    assert "DATABASE_URL" not in bare
