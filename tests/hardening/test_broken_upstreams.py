"""A cloud upstream that never answers, or that closes the keep-alive connections hybrid keeps.

With short ``cloud.*`` timeouts every request ends: in the local model's answer when local
fallback is on, in a 503 in the API's shape when it is off, and through a fresh connection
when the one hybrid kept was closed under it.  Nothing hangs: each client gives up after
``HANG_S``, which no answer here comes near.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import httpx
import pytest
from fake_cloud import FakeCloud, Fault
from server_logs import logged_tracebacks
from soak_tally import SoakTally
from spending_requests import error_code

from hybrid.settings.cloud import CloudSettings

HANG_S = 60
CHAT = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hi"}]}
MESSAGES = {
    "model": "claude-haiku-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Hi"}],
}
# Each API's endpoint, a body naming one of its models, and its error shape.
APIS = {
    "openai": ("/v1/chat/completions", CHAT, "openai"),
    "anthropic": ("/v1/messages", MESSAGES, "anthropic"),
}
TO_CLOUD = {"X-Hybrid-Route": "cloud"}


def black_hole() -> FakeCloud:
    """An upstream that accepts every connection, reads the request and says nothing."""
    return FakeCloud(default_fault=Fault.black_hole())


def stale_cloud(answers_per_connection: int, idle_close_s: float = 1.0) -> FakeCloud:
    """The fake cloud closing kept-alive connections as an idle timeout would."""
    return FakeCloud(idle_close_s=idle_close_s, answers_per_connection=answers_per_connection)


def short_timeouts(base_url: str, **cli: object) -> dict[str, object]:
    """Settings that send both providers to ``base_url`` and give up on it quickly."""
    settings: dict[str, object] = {
        "cloud.openai.base_url": f"{base_url}/v1",
        "cloud.anthropic.base_url": base_url,
        "cloud.connect_timeout_s": 0.5,
        "cloud.first_byte_timeout_s": 0.5,
        "cloud.whole_answer_timeout_s": 0.5,
        "cloud.idle_timeout_s": 0.5,
        "cloud.max_attempts": 2,
        "cloud.backoff_base_s": 0.0,
    }
    if "max_total_s" in CloudSettings.model_fields:
        settings["cloud.max_total_s"] = 2.0
    return {**settings, **cli}


def post(base_url: str, api: str, *, stream: bool) -> httpx.Response:
    """One request to the cloud through hybrid, read whole."""
    path, body, _ = APIS[api]
    with httpx.Client(timeout=HANG_S) as client:
        response = client.post(
            f"{base_url}{path}", json={**body, "stream": stream}, headers=TO_CLOUD
        )
    return response


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api", sorted(APIS))
def test_a_black_hole_upstream_ends_in_the_local_answer(
    serve: Callable[..., str], api: str, stream: bool
) -> None:
    with black_hole() as hole:
        base_url = serve(**short_timeouts(hole.base_url))
        response = post(base_url, api, stream=stream)
        assert hole.connections >= 1

    assert response.status_code == 200
    assert response.headers["x-hybrid-route"] == "local"
    assert "timeout" in response.headers["x-hybrid-reason"]
    assert "Hello" in response.text and "world" in response.text  # the scripted local model


@pytest.mark.parametrize("api", sorted(APIS))
def test_a_black_hole_upstream_without_local_fallback_is_a_503(
    serve: Callable[..., str], api: str
) -> None:
    with black_hole() as hole:
        base_url = serve(**short_timeouts(hole.base_url, **{"cloud.local_fallback": False}))
        response = post(base_url, api, stream=False)

    assert response.status_code == 503
    error = response.json()["error"]
    assert error_code(response.json(), APIS[api][2]) in ("no_route", "overloaded_error")
    assert "whole_answer_timeout_s" in error["message"]  # a whole answer, not streamed
    assert "cloud.local_fallback" in error["message"]


@pytest.mark.parametrize("api", sorted(APIS))
def test_a_connection_the_upstream_closed_is_not_used_for_the_answer(
    serve: Callable[..., str], api: str
) -> None:
    # Every kept connection is closed as the next request arrives on it: the race a client
    # loses when a server times out an idle connection just as it is reused.
    with stale_cloud(answers_per_connection=1) as stale:
        base_url = serve(**short_timeouts(stale.base_url))
        responses = [post(base_url, api, stream=i % 2 == 1) for i in range(4)]
        dropped = stale.dropped

    assert dropped >= 1
    assert [r.status_code for r in responses] == [200] * 4
    assert [r.headers["x-hybrid-route"] for r in responses] == ["cloud"] * 4
    assert all("fake" in r.text and "cloud." in r.text for r in responses)


def load(base_url: str, rounds: int, pause_s: Callable[[], float]) -> tuple[list[int], list[str]]:
    """Four clients, each sending ``rounds`` requests (both APIs, whole and streamed) with a
    pause between; the status of each response, and each request not answered with a 200."""
    statuses: list[int] = []
    problems: list[str] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        pauses = threading.Event()
        for round_ in range(rounds):
            api = sorted(APIS)[round_ % 2]
            try:
                response = post(base_url, api, stream=rng.random() < 0.5)
            except httpx.HTTPError as exc:  # a hang ends here, after HANG_S
                with lock:
                    statuses.append(0)
                    problems.append(f"{api}: {exc!r}")
                continue
            with lock:
                statuses.append(response.status_code)
                if response.status_code != 200:
                    problems.append(f"{api}: {response.status_code} {response.text[:200]}")
            pauses.wait(pause_s())

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, problems


# Each upstream, and what shows it did its harm: connections held, or requests dropped.
UPSTREAMS: dict[str, tuple[Callable[[], FakeCloud], Callable[[FakeCloud], int]]] = {
    "black hole": (black_hole, lambda hole: hole.connections),
    "stale connections": (
        lambda: stale_cloud(answers_per_connection=2, idle_close_s=0.2),
        lambda stale: stale.dropped,
    ),
}


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("upstream", sorted(UPSTREAMS))
def test_soak_broken_upstream(
    serve: Callable[..., str], soak_tally: SoakTally, upstream: str
) -> None:
    rng = random.Random(upstream)
    start, harm = UPSTREAMS[upstream]
    with logged_tracebacks() as tracebacks, start() as broken:
        base_url = serve(**short_timeouts(broken.base_url))
        # Pauses around the idle timeout make the close and the next request cross.
        statuses, problems = load(base_url, rounds=40, pause_s=lambda: rng.uniform(0.0, 0.4))
        done = harm(broken)
    soak_tally.add(
        upstream,
        requests=len(statuses),
        server_errors=sum(status >= 500 for status in statuses),
        tracebacks=len(tracebacks),
    )
    assert done > 0
    assert problems == []
    assert tracebacks == []
