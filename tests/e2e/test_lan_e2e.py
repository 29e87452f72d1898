"""The LAN tier as a team runs it: ``hybrid serve`` in front of two real llama-cpp-python servers
on loopback (the embedded model under a big-model alias, so that hybrid judges it able) and a
fake cloud configured as OpenAI, driven by the official ``openai`` SDK.

``routing.difficulty.threshold = 0`` makes this machine pass every prompt on
(``difficulty:0.xx>0.00``), so each request is one the LAN tier must place.  A server is held
busy by stopping its process (SIGSTOP): hybrid's request waits for its first byte and is
counted in flight there until the server is continued, with no clock involved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fake_cloud import FakeCloud, closed_port
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from server_process import RunningServer, free_port, hybrid_env, start_server

from hybrid.models.embedded import ensure_embedded_model

pytestmark = pytest.mark.slow

# A name hybrid's prior judges able to answer most prompts (32B, instruct).
ALIAS = "qwen2.5-32b-instruct"
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]
MAX_TOKENS = 8
WAIT_S = 60.0
"""The longest any wait for a server's state may take before the test fails."""


@dataclass(frozen=True)
class Reply:
    """One answer through hybrid: its ``X-Hybrid-*`` headers and its text."""

    route: str
    model: str
    reason: str
    text: str


@dataclass
class Team:
    """The running parts: the two LAN servers, the one configured but never started, hybrid
    in front, the fake cloud, and what hybrid was started with."""

    a: RunningServer
    b: RunningServer
    down_url: str
    hybrid: RunningServer
    cloud: FakeCloud
    env: dict[str, str]


def llama_server(model: Path, log: Path) -> RunningServer:
    """llama-cpp-python's server on `model`, named ``ALIAS``, one thread, answering requests
    one after another (not interrupting a running one for a newcomer)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "1024",
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--interrupt_requests",
        "false",
        "--verbose",
        "false",
    ]
    return start_server(
        command, port=port, log=log, ready_path="/v1/models", timeout_s=120, what="llama server"
    )


def config_text(a: RunningServer, b: RunningServer, down_url: str, ledger: Path) -> str:
    """hybrid's config: every prompt off this machine, a and b one request at a time, and a
    third server (``c``) where nothing listens."""
    servers = "".join(
        f'[[lan.servers]]\nname = "{name}"\nbase_url = "{url}"\nmodels = ["{ALIAS}"]\n'
        "max_concurrency = 1\n\n"
        for name, url in (("a", f"{a.base_url}/v1"), ("b", f"{b.base_url}/v1"), ("c", down_url))
    )
    return (
        f'[ledger]\npath = "{ledger}"\n\n'
        "[routing.difficulty]\nthreshold = 0.0\n\n"
        "[routing.calibration]\nbackground = false\n\n"
        # A held stream must keep its X-Hybrid-* headers (they go out as SSE comments once a
        # stream has waited stream_keep_alive_s); a dead server must fail over fast.
        "[cloud]\nfirst_byte_timeout_s = 120\nstream_keep_alive_s = 120\n"
        "backoff_base_s = 0.05\nbackoff_max_s = 0.1\n\n"
        '[lan]\nstrategy = "least_loaded"\nconnect_timeout_s = 1\nload_interval_s = 1\n\n'
        f"{servers}"
    )


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="Paris, says the fake cloud.") as fake:
        yield fake


@pytest.fixture(scope="module")
def team(
    start_server: Callable[..., RunningServer],
    hybrid_home: Path,
    cloud: FakeCloud,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Team]:
    model = ensure_embedded_model(hybrid_home)
    a = llama_server(model, tmp_path_factory.mktemp("lan-a") / "server.log")
    b: RunningServer | None = None
    try:
        b = llama_server(model, tmp_path_factory.mktemp("lan-b") / "server.log")
        folder = tmp_path_factory.mktemp("lan-config")
        down_url = f"http://127.0.0.1:{closed_port()}/v1"
        config = folder / "config.toml"
        config.write_text(config_text(a, b, down_url, folder / "ledger.sqlite3"))
        env = {"HYBRID_CONFIG": str(config), **cloud.provider_env()}
        hybrid = start_server("--ctx", "512", env=env)
        yield Team(a, b, down_url, hybrid, cloud, hybrid_env(hybrid_home, env))
        assert hybrid.stop() == 0, hybrid.output(40)
    finally:
        for server in (a, b):
            if server is not None and server.process.poll() is None:
                os.kill(server.process.pid, signal.SIGCONT)  # never leave one stopped
                server.stop(grace_s=30)


@pytest.fixture
def fake(team: Team) -> FakeCloud:
    team.cloud.reset()
    return team.cloud


def client(team: Team) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{team.hybrid.base_url}/v1", api_key="unused", max_retries=0, timeout=WAIT_S
    )


def ask(team: Team, *, stream: bool = False) -> Reply:
    """One question through hybrid (``model="hybrid"``: hybrid routes it)."""
    with client(team) as api:
        if stream:
            with api.chat.completions.with_streaming_response.create(
                model="hybrid", messages=QUESTION, max_tokens=MAX_TOKENS, stream=True
            ) as response:
                chunks: list[ChatCompletionChunk] = list(response.parse())
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                return _reply(response.headers, text)
        raw = api.chat.completions.with_raw_response.create(
            model="hybrid", messages=QUESTION, max_tokens=MAX_TOKENS
        )
        return _reply(raw.headers, raw.parse().choices[0].message.content or "")


def _reply(headers: Mapping[str, str], text: str) -> Reply:
    return Reply(
        headers["x-hybrid-route"], headers["x-hybrid-model"], headers["x-hybrid-reason"], text
    )


def lan_servers(team: Team) -> dict[str, dict[str, Any]]:
    """``/health``'s ``lan`` servers, by name."""
    body = httpx.get(f"{team.hybrid.base_url}/health", timeout=10).json()
    return {server["name"]: server for server in body["lan"]["servers"]}


def wait_for(what: str, check: Callable[[], bool]) -> None:
    """Poll `check` until it holds; fail after ``WAIT_S`` (a bound, not a measurement)."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {WAIT_S:g} s for {what}")
        time.sleep(0.05)


def test_requests_this_machine_passes_on_go_to_the_lan_and_are_counted(
    team: Team, fake: FakeCloud
) -> None:
    before = lan_servers(team)
    stats_before = httpx.get(f"{team.hybrid.base_url}/v1/hybrid/stats").json()["all_time"]

    replies = [ask(team), ask(team, stream=True), ask(team)]

    for reply in replies:
        assert reply.route == "lan", reply
        assert reply.model in (f"a/{ALIAS}", f"b/{ALIAS}")
        server = reply.model.split("/")[0]
        assert reply.reason.startswith(f"lan:{server}/{ALIAS};difficulty:"), reply.reason
        assert ">0.00" in reply.reason and "failover" not in reply.reason
        assert reply.text.strip()
    assert fake.requests == []  # a LAN server was free every time: the cloud never heard
    after = lan_servers(team)
    answered = sum(after[n]["answered"] - before[n]["answered"] for n in ("a", "b"))
    assert answered == len(replies)
    assert after["a"]["up"] and after["b"]["up"]
    assert after["a"]["models"] == [ALIAS] and after["a"]["max_concurrency"] == 1
    stats = httpx.get(f"{team.hybrid.base_url}/v1/hybrid/stats").json()["all_time"]
    assert stats["lan"] - stats_before["lan"] == len(replies)
    assert stats["cloud"] == stats_before["cloud"]
    printed = subprocess.run(
        [sys.executable, "-m", "hybrid", "stats", "--since", "all", "--json"],
        env=team.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(printed.stdout)["totals"]["lan"] == stats["lan"]


def test_held_requests_spread_over_both_servers_and_the_next_goes_to_the_cloud_as_busy(
    team: Team, fake: FakeCloud
) -> None:
    held: dict[str, Reply | BaseException] = {}

    def hold(key: str) -> threading.Thread:
        def run() -> None:
            try:
                held[key] = ask(team, stream=True)
            except BaseException as exc:  # reported by the assertions below
                held[key] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def in_flight() -> dict[str, int]:
        return {name: s["in_flight"] for name, s in lan_servers(team).items()}

    stopped = (team.a, team.b)
    for server in stopped:
        os.kill(server.process.pid, signal.SIGSTOP)
    try:
        first = hold("first")
        wait_for("one request in flight", lambda: sum(in_flight().values()) == 1)
        busy_one = [name for name, count in in_flight().items() if count == 1]
        second = hold("second")  # one server is full: the other takes it
        wait_for(
            "a request in flight on each server", lambda: in_flight() == {"a": 1, "b": 1, "c": 0}
        )
        third = ask(team)  # both full
        servers = lan_servers(team)
    finally:
        for server in stopped:
            os.kill(server.process.pid, signal.SIGCONT)
    first.join(WAIT_S)
    second.join(WAIT_S)

    assert third.route == "cloud"
    assert third.model.startswith("openai/")
    assert third.reason.startswith("difficulty:") and third.reason.endswith(";lan:busy")
    assert third.text == fake.reply
    assert [r.api for r in fake.requests] == ["openai"]
    assert servers["a"]["utilisation"] == servers["b"]["utilisation"] == 1.0
    replies = [held["first"], held["second"]]
    assert all(isinstance(r, Reply) for r in replies), replies
    models = {r.model for r in replies if isinstance(r, Reply)}
    assert models == {f"a/{ALIAS}", f"b/{ALIAS}"}
    first_reply = held["first"]
    assert isinstance(first_reply, Reply) and first_reply.model == f"{busy_one[0]}/{ALIAS}"
    assert all(r.route == "lan" and r.text.strip() for r in replies if isinstance(r, Reply))
    wait_for("nothing in flight", lambda: sum(in_flight().values()) == 0)


def test_a_server_down_at_start_is_shown_down_in_health_and_probe(team: Team) -> None:
    c = lan_servers(team)["c"]
    assert c["up"] is False and c["error"]
    assert c["base_url"] == team.down_url
    printed = subprocess.run(
        [sys.executable, "-m", "hybrid", "probe", "--no-bench"],
        env=team.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    section = printed.stdout.split("LAN servers (least-loaded):", 1)[1].splitlines()
    at = section.index(f"  c  {team.down_url}")
    assert section[at + 1].startswith("      down: ")
    assert f"  a  {team.a.base_url}/v1" in section
    assert any(line.startswith(f"      up; models: {ALIAS}") for line in section)
    probed = subprocess.run(
        [sys.executable, "-m", "hybrid", "probe", "--no-bench", "--json"],
        env=team.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ups = {s["name"]: s["up"] for s in json.loads(probed.stdout)["lan"]}
    assert ups == {"a": True, "b": True, "c": False}


def test_a_server_killed_while_requests_flow_fails_over_then_is_skipped(
    team: Team, fake: FakeCloud
) -> None:
    replies: list[Reply | BaseException] = []
    stop = threading.Event()

    def flow() -> None:
        while not stop.is_set():
            try:
                replies.append(ask(team))
            except BaseException as exc:  # reported by the assertions below
                replies.append(exc)

    sender = threading.Thread(target=flow, daemon=True)
    sender.start()
    try:
        wait_for("two answers", lambda: len(replies) >= 2)
        team.a.process.terminate()
        team.a.process.wait(WAIT_S)
        killed_at = len(replies)
        wait_for("three answers after the kill", lambda: len(replies) >= killed_at + 3)
    finally:
        stop.set()
        sender.join(WAIT_S)
    last = ask(team)

    failed = [r for r in replies if not isinstance(r, Reply)]
    assert failed == []
    answers = [r for r in replies if isinstance(r, Reply)] + [last]
    assert all(r.route == "lan" and r.text.strip() for r in answers), answers
    assert fake.requests == []  # b was free every time
    # The request in flight at the kill may have been answered by a, or failed over.
    assert all(r.model == f"b/{ALIAS}" for r in answers[killed_at + 1 :]), answers
    failovers = [r.reason for r in answers if ";failover:lan:a:" in r.reason]
    assert failovers, [r.reason for r in answers]
    assert all(f.startswith(f"lan:b/{ALIAS};difficulty:") for f in failovers)
    assert "failover" not in last.reason  # a is known down now: skipped, not tried
    servers = lan_servers(team)
    assert servers["a"]["up"] is False
    assert "could not connect" in (servers["a"]["error"] or "")  # why, not just down
    assert servers["b"]["up"] is True
