"""A client that sends headers and part of a body, then stalls, gets a 408 and a closed
connection after ``server.body_timeout_s``, rather than holding a connection open forever.

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


def stall(base_url: str, path: str, body: bytes) -> bytes:
    """Send the headers and half the body, then wait for whatever comes back until EOF."""
    url = httpx.URL(base_url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.host, url.port)) as sock:
        sock.settimeout(WAIT_BOUND_S)
        sock.sendall(head + body[: len(body) // 2])
        received = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            received += chunk
    return received


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
