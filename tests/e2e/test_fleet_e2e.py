"""Three real ``hybrid serve`` processes sharing one PostgreSQL ledger and one daily cap, 64
cloud requests at once against the loopback fake cloud, and a ``kill -9`` of one daemon while
its requests hold reservations: the fleet never spends more than the cap, every request is
answered by the cloud or refused with the cap's reason, the other two daemons keep serving, and
the killed daemon's holds are counted when it comes back under the same instance.

No model loads: each daemon is given a GGUF file llama.cpp refuses, so the cloud is the only
answer and a request that does not fit the budget gets the cap's 429.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fake_cloud import FakeCloud, Fault
from gguf_writer import tiny_model
from postgres import PostgresDatabase
from server_process import RunningServer, free_port, hybrid_env, hybrid_serve, start_server

pytestmark = pytest.mark.timeout(180)

OUTPUT_USD_PER_1M = 1000.0
MAX_TOKENS = 10
COST = MAX_TOKENS * OUTPUT_USD_PER_1M / 1e6
"""Every request's estimate, and its real cost: the reply is longer than ``max_tokens`` and
prompt tokens cost nothing, so each answer is charged exactly ``MAX_TOKENS`` output tokens."""
CAP = 20 * COST
"""Room for twenty answers, in a day's budget shared by the fleet."""
REPLY = " ".join(f"word{n}" for n in range(40))
CHAT = {
    "model": "gpt-4.1-mini",
    "max_tokens": MAX_TOKENS,
    "messages": [{"role": "user", "content": "Tell me about budgets"}],
}
TO_CLOUD = {"X-Hybrid-Route": "cloud"}
STALLED_FIRST = 4


@dataclass
class Outcome:
    """What one client got: an HTTP status and reason, or ``killed`` (the daemon died)."""

    daemon: str
    status: int | str
    reason: str | None = None


@dataclass
class Fleet:
    """Starts the daemons of one fleet: one database, one cap, a home (journal) each."""

    db: PostgresDatabase
    root: Path
    model: Path

    def start(self, instance: str, cloud: FakeCloud) -> RunningServer:
        port = free_port()
        home = self.root / instance
        home.mkdir(exist_ok=True)
        extra = {
            "HYBRID_LEDGER__URL": self.db.url,
            "HYBRID_LEDGER__INSTANCE": instance,
            "HYBRID_LOCAL__MODEL": str(self.model),
            "HYBRID_BUDGET__DAILY_USD": str(CAP),
            "HYBRID_PRICING__OVERRIDES": json.dumps(
                [{"provider": "openai", "model": "gpt-4.1-mini", "input": 0.0, "output": 1000.0}]
            ),
            "HYBRID_PROBE__MEASURE_BANDWIDTH": "false",
            "OPENAI_API_KEY": "sk-fake-openai",
            "OPENAI_BASE_URL": cloud.base_url + "/v1",
        }
        return start_server(
            hybrid_serve(port),
            port=port,
            log=home / f"server-{time.monotonic_ns()}.log",
            env=hybrid_env(home, extra),
            # /health is 503 without a model; the stats answer once the ledger is open.
            ready_path="/v1/hybrid/stats",
            timeout_s=60,
            what=f"hybrid serve ({instance})",
        )


@pytest.fixture
def clouds() -> Iterator[tuple[FakeCloud, FakeCloud]]:
    """A cloud that answers at once, and one that never answers (requests stay in flight)."""
    with FakeCloud(reply=REPLY) as fast, FakeCloud(reply=REPLY) as silent:
        silent.default_fault = Fault.black_hole()
        yield fast, silent


@pytest.fixture
def servers() -> Iterator[list[RunningServer]]:
    started: list[RunningServer] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


async def ask(client: httpx.AsyncClient, daemon: str, base_url: str) -> Outcome:
    try:
        response = await client.post(base_url + "/v1/chat/completions", json=CHAT, headers=TO_CLOUD)
    except httpx.TransportError:
        return Outcome(daemon, "killed")
    if response.status_code == 429:
        # The cap's refusal: the API's quota error, naming the cap that stopped it.
        error = response.json()["error"]
        assert error["code"] == "insufficient_quota", error
        quota, _, cap = response.headers["x-hybrid-reason"].partition(";")
        assert quota == "error:insufficient_quota" and cap.startswith("budget:"), cap
        return Outcome(daemon, 429, cap)
    return Outcome(daemon, response.status_code, response.headers.get("x-hybrid-reason"))


def budget_line(db: PostgresDatabase) -> tuple[float, float]:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT spent_usd, reserved_usd FROM hybrid_budget_lines "
            "WHERE scope = 'total' AND period LIKE 'day:%%'"
        ).fetchone()
    return (float(row[0]), float(row[1])) if row is not None else (0.0, 0.0)


def holds(db: PostgresDatabase, instance: str | None = None) -> int:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT count(DISTINCT reservation_id) FROM hybrid_budget_holds "
            "WHERE %s::text IS NULL OR instance = %s",
            (instance, instance),
        ).fetchone()
    assert row is not None
    return int(row[0])


def ledger_spend(db: PostgresDatabase) -> dict[str, float]:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT instance, sum(cloud_cost_usd) FROM requests GROUP BY instance"
        ).fetchall()
    return {str(instance): float(spent or 0) for instance, spent in rows}


def wait_until(check: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_three_daemons_share_one_cap_and_a_killed_daemons_holds_are_counted(
    postgres_db: PostgresDatabase,
    clouds: tuple[FakeCloud, FakeCloud],
    servers: list[RunningServer],
    tmp_path: Path,
) -> None:
    fast, silent = clouds
    fleet = Fleet(postgres_db, tmp_path, tiny_model().write(tmp_path / "refused.gguf"))
    a, b = fleet.start("edge-a", fast), fleet.start("edge-b", fast)
    c = fleet.start("edge-c", silent)  # its cloud never answers: its requests stay in flight
    servers += [a, b, c]
    urls = {"edge-a": a.base_url, "edge-b": b.base_url, "edge-c": c.base_url}

    async def run() -> tuple[list[Outcome], list[Outcome]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            # edge-c's first requests reserve, reach its cloud and wait there.
            stalled = [
                asyncio.create_task(ask(client, "edge-c", c.base_url)) for _ in range(STALLED_FIRST)
            ]
            while len(silent.requests) < STALLED_FIRST:
                await asyncio.sleep(0.02)
            # 64 at once over the three; edge-c is killed while they run.
            names = [("edge-a", "edge-b", "edge-c")[n % 3] for n in range(64)]
            wave = [asyncio.create_task(ask(client, name, urls[name])) for name in names]
            for _ in range(100):
                if fast.requests:
                    break
                await asyncio.sleep(0.02)
            assert holds(postgres_db, "edge-c") >= STALLED_FIRST
            c.process.send_signal(signal.SIGKILL)
            c.process.wait()
            outcomes = await asyncio.gather(*stalled, *wave)
            # The other two keep serving after the kill.
            after = [await ask(client, name, urls[name]) for name in ("edge-a", "edge-b") * 2]
        return list(outcomes), after

    outcomes, after = asyncio.run(run())

    # Every request was answered by the cloud or refused at the cap, or died with edge-c.
    for outcome in outcomes + after:
        if outcome.daemon == "edge-c" and outcome.status == "killed":
            continue
        assert (outcome.status, outcome.reason) in {
            (200, "explicit:cloud"),
            (429, "budget:daily_cap"),
        }, outcome
    assert all(o.status != 200 for o in outcomes if o.daemon == "edge-c")
    assert {o.status for o in after} <= {200, 429}
    answered = sum(o.status == 200 for o in outcomes + after)
    assert answered == len(fast.requests) and answered > 0

    # The killed daemon's reservations are still held: no one may spend that money yet.
    left_by_c = holds(postgres_db, "edge-c")
    assert left_by_c >= STALLED_FIRST
    assert wait_until(lambda: holds(postgres_db) == left_by_c)  # the answers were settled

    # Back under the same instance, it counts what its killed run held as spent.
    servers.append(c := fleet.start("edge-c", fast))
    assert holds(postgres_db) == 0
    spent, reserved = budget_line(postgres_db)
    assert reserved == 0
    assert spent == pytest.approx((answered + left_by_c) * COST)
    assert spent - CAP <= COST + 1e-9

    # What went out to the cloud: every answer, and every request the silent cloud received
    # (it may bill them): together never more than the cap by more than one estimate.
    sent = (len(fast.requests) + len(silent.requests)) * COST
    assert sent - CAP <= COST + 1e-9
    # The ledger's records say the same of the answers, daemon by daemon.
    for server in (a, b, c):
        httpx.get(server.base_url + "/v1/hybrid/stats", timeout=30)  # records committed
    by_instance = ledger_spend(postgres_db)
    assert sum(by_instance.values()) == pytest.approx(answered * COST)
    assert by_instance.get("edge-c", 0.0) == 0.0

    # Each daemon's view of the budget shows the fleet's spend.
    def fleet_view_shown() -> bool:
        budgets = [
            httpx.get(s.base_url + "/v1/hybrid/stats", timeout=30).json()["budget"]
            for s in (a, b, c)
        ]
        return all(
            x["shared"] and x["reservations"] == 0 and x["daily_spend_usd"] == pytest.approx(spent)
            for x in budgets
        )

    assert wait_until(fleet_view_shown)
    for server in (a, b, c):
        assert "Traceback" not in server.output()
