"""A client that sends headers and part of a body, then stalls, gets a 408 and a closed
connection after ``server.body_timeout_s``, rather than holding a connection open forever; one
that stalls before its headers are complete is closed after ``server.header_timeout_s``.

The timeout is set short here so that the test finishes soon; the socket's own timeout is a
generous bound on the wait, not a measure of speed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import httpx
import pytest
from fake_cloud import FakeCloud
from spending_requests import ENDPOINTS, error_code

# Far above the server's timeout below: only a server that never answers reaches it.
WAIT_BOUND_S = 60.0


def request_head(base_url: str, path: str, body: bytes) -> bytes:
    url = httpx.URL(base_url)
    return (
        f"POST {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()


def send_and_wait(base_url: str, data: bytes) -> bytes:
    """Send ``data``, then read whatever comes back until the server closes the connection."""
    url = httpx.URL(base_url)
    with socket.create_connection((url.host, url.port)) as sock:
        sock.settimeout(WAIT_BOUND_S)  # a server that never closes fails the test here
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def stall(base_url: str, path: str, body: bytes) -> bytes:
    """Send the headers and half the body, then wait for whatever comes back until EOF."""
    return send_and_wait(base_url, request_head(base_url, path, body) + body[: len(body) // 2])


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_stalled_upload_gets_408_and_its_connection_closed(
    serve: Callable[..., str], fake: FakeCloud, path: str
) -> None:
    base_url = serve(**{"server.body_timeout_s": 0.5})
    body, shape = ENDPOINTS[path]

    received = stall(base_url, path, json.dumps(body).encode())

    head, _, content = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    answer = json.loads(content)
    assert error_code(answer, shape) == (
        "invalid_request_error" if shape == "anthropic" else "request_timeout"
    )
    assert "HYBRID_SERVER__BODY_TIMEOUT_S" in answer["error"]["message"]
    assert fake.requests == []
    assert httpx.get(f"{base_url}/v1/hybrid/stats").json()["mode"] == "auto"


def test_an_upload_that_completes_is_served(serve: Callable[..., str], fake: FakeCloud) -> None:
    base_url = serve(**{"server.body_timeout_s": 0.5})
    body, _ = ENDPOINTS["/v1/chat/completions"]
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"],
    ids=["nothing", "part of the headers"],
)
def test_a_client_that_stalls_before_its_headers_end_is_disconnected(
    serve: Callable[..., str], fake: FakeCloud, sent: bytes
) -> None:
    base_url = serve(**{"server.header_timeout_s": 0.3})
    assert send_and_wait(base_url, sent) == b""  # closed, nothing answered
    assert fake.requests == []


def test_a_kept_alive_connection_that_stalls_in_its_next_headers_is_disconnected(
    serve: Callable[..., str], fake: FakeCloud
) -> None:
    base_url = serve(**{"server.header_timeout_s": 0.3})
    first = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    received = send_and_wait(base_url, first + b"GET /health HTTP/1.1\r\nHo")
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.count(b"HTTP/1.1 ") == 1  # the first answered, then closed


def test_complete_headers_leave_the_body_to_its_own_timeout(
    serve: Callable[..., str], fake: FakeCloud
) -> None:
    # The header timer is disarmed once the headers are in: the stalled body gets the 408
    # after body_timeout_s, not a silent close after the shorter header_timeout_s.
    base_url = serve(**{"server.header_timeout_s": 0.2, "server.body_timeout_s": 1.0})
    body, _ = ENDPOINTS["/v1/chat/completions"]
    received = stall(base_url, "/v1/chat/completions", json.dumps(body).encode())
    assert received.startswith(b"HTTP/1.1 408 ")
