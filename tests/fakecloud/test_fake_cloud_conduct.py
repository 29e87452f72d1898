"""How the fake cloud misbehaves between and around answers: silence, hang-ups, redirects, slow
bodies, stale connections, a standing fault, and replayed answers for the benchmarks."""

from __future__ import annotations

import json
import socket

import httpx
import openai
import pytest
from fake_cloud import FakeCloud, Fault

CHAT = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "say hello"}]}
TERMINATOR = b"0\r\n\r\n"


def chat_request(cloud: FakeCloud, body: dict[str, object] = CHAT) -> bytes:
    """A whole HTTP/1.1 chat completion request, as a client writes it."""
    payload = json.dumps(body).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"host: 127.0.0.1:{cloud.port}\r\n"
        f"authorization: Bearer {cloud.openai_key}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def read_response(sock: socket.socket) -> bytes:
    """One Content-Length response off a kept-alive connection (b"" if it was closed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        ).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def connect(cloud: FakeCloud) -> socket.socket:
    return socket.create_connection(("127.0.0.1", cloud.port), timeout=10)


def test_a_black_hole_reads_the_request_and_never_answers(cloud: FakeCloud) -> None:
    cloud.default_fault = Fault.black_hole()
    with connect(cloud) as sock:
        sock.sendall(chat_request(cloud))
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)

    assert cloud.connections == 1
    assert [r.path for r in cloud.requests] == ["/v1/chat/completions"]


def test_a_hang_up_closes_the_connection_without_a_byte(cloud: FakeCloud) -> None:
    cloud.push(Fault.hang_up())
    with connect(cloud) as sock:
        sock.sendall(chat_request(cloud))
        assert sock.recv(1) == b""
    with connect(cloud) as sock:
        sock.sendall(chat_request(cloud))
        assert b" 200 OK" in read_response(sock), "the fault was for one request only"


def test_a_redirect_names_its_location_and_says_nothing_else(cloud: FakeCloud) -> None:
    cloud.push(Fault.redirect("http://elsewhere.invalid/v1/chat/completions"))
    response = httpx.post(
        f"{cloud.base_url}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {cloud.openai_key}"},
    )

    assert response.status_code == 307
    assert response.headers["location"] == "http://elsewhere.invalid/v1/chat/completions"
    assert response.content == b""


def test_redirect_and_status_refuse_codes_of_another_class() -> None:
    with pytest.raises(ValueError, match="3xx"):
        Fault.redirect("http://x", code=200)
    with pytest.raises(ValueError, match="5xx"):
        Fault.status(404)


def test_a_slow_body_sends_the_end_of_a_stream_after_a_pause(cloud: FakeCloud) -> None:
    cloud.push(Fault.slow_body(0.5))
    with connect(cloud) as sock:
        sock.sendall(chat_request(cloud, {**CHAT, "stream": True}))
        received = b""
        while b"[DONE]" not in received:
            received += sock.recv(65536)
        assert TERMINATOR not in received, "the end of the body waits for the pause"
        while not received.endswith(TERMINATOR):
            received += sock.recv(65536)

    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in received.decode().split("\r\n")
        if line.startswith("data: {")
    )
    assert text == cloud.reply


def test_a_stall_can_say_it_is_still_working_before_its_silence(cloud: FakeCloud) -> None:
    cloud.push(Fault.stall(after_chunks=0, stall_s=30, comment="processing"))
    with connect(cloud) as sock:
        sock.sendall(chat_request(cloud, {**CHAT, "stream": True}))
        received = b""
        while b": processing\n\n" not in received:
            received += sock.recv(65536)

    assert received.startswith(b"HTTP/1.1 200 OK")
    assert b"data:" not in received


def test_a_connection_past_its_answers_is_closed_on_the_next_request() -> None:
    with FakeCloud(answers_per_connection=1) as cloud, connect(cloud) as sock:
        sock.sendall(chat_request(cloud))
        assert b" 200 OK" in read_response(sock)
        sock.sendall(chat_request(cloud))
        assert read_response(sock) == b""
        dropped, requests = cloud.dropped, cloud.requests

    assert (dropped, len(requests)) == (1, 2), "the dropped request was seen, and counted"
    assert requests[1].body is None, "only its head was read: the fake never acted on it"


def test_an_idle_kept_alive_connection_is_closed() -> None:
    with FakeCloud(idle_close_s=0.1) as cloud, connect(cloud) as sock:
        sock.sendall(chat_request(cloud))
        assert b" 200 OK" in read_response(sock)
        assert sock.recv(1) == b"", "closed by the fake, not by the client's timeout"


def test_pushed_faults_come_before_the_default_one_and_reset_forgets_both(
    cloud: FakeCloud,
) -> None:
    client = openai.OpenAI(
        api_key=cloud.openai_key, base_url=cloud.base_url + "/v1", max_retries=0, timeout=5
    )
    cloud.default_fault = Fault.status(503)
    cloud.push(Fault.rate_limit())
    with client:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4.1-mini", messages=[])
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="gpt-4.1-mini", messages=[])
        cloud.reset()
        answer = client.chat.completions.create(model="gpt-4.1-mini", messages=[])

    assert cloud.default_fault is None
    assert answer.choices[0].message.content == cloud.reply


def test_replay_sends_the_same_bytes_to_the_same_request_and_records_each() -> None:
    with FakeCloud(replay=True) as cloud, connect(cloud) as sock:
        answers = []
        for body in (CHAT, CHAT, {**CHAT, "model": "gpt-4.1"}):
            sock.sendall(chat_request(cloud, body))
            answers.append(read_response(sock))
        cloud.push(Fault.status(500))
        sock.sendall(chat_request(cloud))
        faulted = read_response(sock)
        requests = cloud.requests

    assert answers[0] == answers[1], "ids, timestamps and headers repeat"
    assert answers[2] != answers[0] and b'"model":"gpt-4.1"' in answers[2]
    assert b" 500 " in faulted, "faults still apply"
    assert len(requests) == 4
    assert requests[1].body == CHAT


def test_replay_forgets_answers_when_the_reply_changes() -> None:
    with FakeCloud(replay=True) as cloud:
        client = openai.OpenAI(
            api_key=cloud.openai_key, base_url=cloud.base_url + "/v1", max_retries=0, timeout=5
        )
        with client:
            first = client.chat.completions.create(model="gpt-4.1-mini", messages=[])
            cloud.reply = "Something else."
            second = client.chat.completions.create(model="gpt-4.1-mini", messages=[])

    assert first.choices[0].message.content == "Hello from the fake cloud."
    assert second.choices[0].message.content == "Something else."


def test_stats_count_requests_and_connections_without_counting_themselves(
    cloud: FakeCloud,
) -> None:
    with httpx.Client() as client:
        client.post(
            f"{cloud.base_url}/v1/chat/completions",
            json=CHAT,
            headers={"authorization": f"Bearer {cloud.openai_key}"},
        )
        first = client.get(f"{cloud.base_url}/fake/stats").json()
        second = client.get(f"{cloud.base_url}/fake/stats").json()

    assert first == second == {"requests": 1, "connections": 1}
    assert len(cloud.requests) == 1


def test_provider_env_points_both_apis_at_the_fake(cloud: FakeCloud) -> None:
    assert cloud.provider_env() == {
        "OPENAI_API_KEY": "sk-fake-openai",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{cloud.port}/v1",
        "ANTHROPIC_API_KEY": "sk-ant-fake",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{cloud.port}",
    }
