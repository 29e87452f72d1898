"""The subprocess server helper, on the fake cloud run as a process of its own (the way the
benchmarks run it)."""

from __future__ import annotations

import sys
from pathlib import Path

import openai
import pytest
from server_process import ServerNotReady, free_port, start_server

FAKE_CLOUD = Path(__file__).resolve().parents[1] / "helpers" / "fake_cloud_process.py"


def test_the_fake_cloud_serves_from_a_process_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, str(FAKE_CLOUD), "--port", str(port), "--replay", "--reply", "Hi."]
    server = start_server(command, port=port, log=tmp_path / "cloud.log", ready_path="/fake/stats")
    try:
        with openai.OpenAI(
            api_key="sk-fake-openai", base_url=f"{server.base_url}/v1", max_retries=0, timeout=5
        ) as client:
            answer = client.chat.completions.create(model="gpt-4.1-mini", messages=[])
    finally:
        status = server.stop(grace_s=30)

    assert answer.choices[0].message.content == "Hi."
    assert status == 0
    assert f"fake cloud on http://127.0.0.1:{port}" in server.output()


def test_a_server_that_exits_at_start_is_reported_with_its_output(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('no such model'); raise SystemExit(3)"]
    with pytest.raises(ServerNotReady, match=r"(?s)python\S* exited with 3:.*no such model"):
        start_server(command, port=free_port(), log=tmp_path / "server.log")


def test_a_server_that_never_gets_ready_is_reported_after_the_timeout(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(ServerNotReady, match=r"slowpoke was not ready after 0\.5 s"):
        start_server(
            command, port=free_port(), log=tmp_path / "server.log", timeout_s=0.5, what="slowpoke"
        )
