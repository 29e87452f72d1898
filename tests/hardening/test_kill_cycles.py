"""SIGKILL a real ``hybrid serve`` under load, restart it, again and again: every response a
client received whole has its record in the ledger, and no log shows a traceback.

The single cycle is ``tests/e2e/test_ledger_e2e.py``; here the cycles repeat on one ledger,
with cloud and local answers, whole and streamed, in flight when the kill comes.
"""

from __future__ import annotations

import itertools
import signal
from pathlib import Path

import httpx
import pytest
from fake_cloud import FakeCloud
from ledger_load import ChatLoad, cloud_env, ledger_rows
from server_process import RunningServer, ServeProcesses
from soak_tally import SoakTally

CYCLES = 5
COMPLETED_PER_CYCLE = 80
HI = [{"role": "user", "content": "Hi"}]
TO_CLOUD = {"X-Hybrid-Route": "cloud"}
CLOUD = {"model": "gpt-4.1-mini", "messages": HI}
LOCAL = {"model": "local", "messages": HI, "max_tokens": 4}
# Six clients ask the cloud, two the real local model; half of each stream.
REQUESTS = [
    (CLOUD, TO_CLOUD),
    ({**CLOUD, "stream": True}, TO_CLOUD),
    (LOCAL, {}),
    (CLOUD, TO_CLOUD),
    ({**CLOUD, "stream": True}, TO_CLOUD),
    ({**LOCAL, "stream": True}, {}),
    (CLOUD, TO_CLOUD),
    ({**CLOUD, "stream": True}, TO_CLOUD),
]


def tracebacks_in(servers: list[RunningServer]) -> int:
    return sum(server.log.read_text(errors="replace").count("Traceback") for server in servers)


@pytest.mark.soak
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_soak_sigkill_cycles_lose_no_record(
    cloud: FakeCloud, tmp_path: Path, soak_tally: SoakTally
) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    env = cloud_env(cloud, ledger)
    numbers = itertools.count()

    def log_dir() -> Path:
        folder = tmp_path / f"server-{next(numbers)}"
        folder.mkdir()
        return folder

    servers = ServeProcesses(tmp_path / "home", log_dir)
    completed: list[str] = []
    statuses: list[int] = []
    missing: list[str] = []
    try:
        for _ in range(CYCLES):
            server = servers.start(env=env)
            load = ChatLoad(server.base_url, REQUESTS).start()
            load.wait_for(COMPLETED_PER_CYCLE)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            load.stop()
            completed += load.completed
            statuses += load.statuses

        # A restarted server commits what a killed one had only journaled, then counts it all.
        last = servers.start(env=env)
        stats = httpx.get(f"{last.base_url}/v1/hybrid/stats", timeout=30).json()["all_time"]
        rows = ledger_rows(ledger)
        missing = [request_id for request_id in completed if request_id not in rows]
        assert last.stop() == 0
    finally:
        servers.close()
        soak_tally.add(
            "kill -9 cycles",
            requests=len(statuses),
            server_errors=sum(status >= 500 for status in statuses),
            tracebacks=tracebacks_in(servers.started),
            records_lost=len(missing),
        )
    assert len(completed) >= CYCLES * COMPLETED_PER_CYCLE
    assert missing == [], f"{len(missing)} completed responses have no ledger record"
    assert all(rows[request_id]["status"] == "ok" for request_id in completed)
    assert stats["requests"] == len(rows) >= len(completed)
    assert tracebacks_in(servers.started) == 0
