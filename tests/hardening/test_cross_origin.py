"""No web page the user opens can spend their budget, switch the mode, or read their stats.

Each request here is what a browser sends for a page on another origin (``Origin``,
``Sec-Fetch-*``, the content types a page can send without a CORS preflight) or for a
DNS-rebinding page (its own name in ``Host``), against hybrid on a real loopback port with no
API key, the loopback default.  What would show the attack worked is checked where it would
happen: the fake cloud's request log and the routing mode.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from fake_cloud import FakeCloud
from spending_requests import ENDPOINTS, error_code

from hybrid.api.browsers import AllowedHosts

EVIL = "http://evil.example"
PAGE = "http://localhost:3000"
BOUNDARY = "----WebKitFormBoundaryh7Gq2TLOcOZm9Ki4"


def simple_body(kind: str, body: dict[str, object]) -> tuple[str, bytes]:
    """A body of one of the types a page sends without a preflight, and its Content-Type."""
    text = json.dumps(body)
    if kind == "fetch-text":  # fetch(url, {method: "POST", body: JSON.stringify(body)})
        return "text/plain;charset=UTF-8", text.encode()
    if kind == "form-text":
        # <form enctype="text/plain"> writes name=value: a field named '{..., "x": "' with the
        # value '"}' makes the body the JSON {..., "x": "="}.
        return "text/plain", (text[:-1] + ', "x": "' + "=" + '"}').encode()
    if kind == "form-urlencoded":  # <form method="post">
        return "application/x-www-form-urlencoded", str(httpx.QueryParams({text: ""})).encode()
    assert kind == "form-multipart"  # <form enctype="multipart/form-data" method="post">
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="payload"\r\n\r\n{text}\r\n'
        f"--{BOUNDARY}--\r\n"
    )
    return f"multipart/form-data; boundary={BOUNDARY}", part.encode()


def browser_headers(origin: str, site: str, mode: str) -> dict[str, str]:
    """The headers Chromium adds to a request a page on ``origin`` makes."""
    return {
        "Origin": origin,
        "Referer": f"{origin}/",
        "Sec-Fetch-Site": site,
        "Sec-Fetch-Mode": mode,
        "Sec-Fetch-Dest": "document" if mode == "navigate" else "empty",
        "Accept": "*/*",
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0 Safari/537.36",
    }


def expect(shape: str, code: str) -> str:
    """What :func:`error_code` gives for an error with this code: Anthropic names the type."""
    anthropic = {"403": "permission_error", "415": "invalid_request_error"}
    return anthropic[code[:3]] if shape == "anthropic" else code[4:]


def mode_of(base_url: str) -> str:
    stats = httpx.get(f"{base_url}/v1/hybrid/stats")
    assert stats.status_code == 200
    return str(stats.json()["mode"])


def assert_nothing_happened(base_url: str, fake: FakeCloud) -> None:
    assert fake.requests == []
    assert mode_of(base_url) == "auto"


@pytest.mark.parametrize("kind", ["fetch-text", "form-text", "form-urlencoded", "form-multipart"])
@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_page_on_another_site_cannot_post_a_simple_request(
    hybrid: str, fake: FakeCloud, path: str, kind: str
) -> None:
    body, shape = ENDPOINTS[path]
    content_type, content = simple_body(kind, body)
    mode = "cors" if kind == "fetch-text" else "navigate"
    headers = {**browser_headers(EVIL, "cross-site", mode), "Content-Type": content_type}

    response = httpx.post(f"{hybrid}{path}", content=content, headers=headers)

    assert response.status_code == 403
    assert error_code(response.json(), shape) == expect(shape, "403 origin_not_allowed")
    assert EVIL in response.json()["error"]["message"]
    assert "server.allowed_origins" in response.json()["error"]["message"]
    assert "access-control-allow-origin" not in response.headers
    assert_nothing_happened(hybrid, fake)


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_page_on_another_site_cannot_post_json_either(
    hybrid: str, fake: FakeCloud, path: str
) -> None:
    # A browser sends this only after a preflight it would not pass; an older one, or an
    # extension, may send it straight away.
    body, shape = ENDPOINTS[path]
    headers = {**browser_headers(EVIL, "cross-site", "cors"), "Content-Type": "application/json"}

    response = httpx.post(f"{hybrid}{path}", json=body, headers=headers)

    assert response.status_code == 403
    assert error_code(response.json(), shape) == expect(shape, "403 origin_not_allowed")
    assert_nothing_happened(hybrid, fake)


@pytest.mark.parametrize("kind", ["fetch-text", "form-text", "form-urlencoded", "form-multipart"])
@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_body_that_is_not_json_is_refused_with_415_in_the_api_shape(
    hybrid: str, fake: FakeCloud, path: str, kind: str
) -> None:
    # No Origin, no Sec-Fetch-*: what a browser that sends neither would still send.
    body, shape = ENDPOINTS[path]
    content_type, content = simple_body(kind, body)

    response = httpx.post(
        f"{hybrid}{path}", content=content, headers={"Content-Type": content_type}
    )

    assert response.status_code == 415
    assert error_code(response.json(), shape) == expect(shape, "415 unsupported_media_type")
    assert "Content-Type: application/json" in response.json()["error"]["message"]
    assert_nothing_happened(hybrid, fake)


def test_a_body_without_a_content_type_is_refused(hybrid: str, fake: FakeCloud) -> None:
    # fetch() with an ArrayBuffer or Blob body sends no Content-Type, and needs no preflight.
    response = httpx.post(
        f"{hybrid}/v1/hybrid/mode",
        content=json.dumps({"mode": "cloud-only"}).encode(),
        headers=browser_headers(EVIL, "cross-site", "no-cors"),
    )
    assert response.status_code == 403
    response = httpx.post(
        f"{hybrid}/v1/hybrid/mode", content=json.dumps({"mode": "cloud-only"}).encode()
    )
    assert response.status_code == 415
    assert "no Content-Type" in response.json()["error"]["message"]
    assert_nothing_happened(hybrid, fake)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/x+json"]
)
def test_json_bodies_are_served(hybrid: str, fake: FakeCloud, content_type: str) -> None:
    body, _ = ENDPOINTS["/v1/chat/completions"]
    response = httpx.post(
        f"{hybrid}/v1/chat/completions",
        content=json.dumps(body).encode(),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 200
    assert response.headers["x-hybrid-route"] == "cloud"
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "path", ["/v1/hybrid/stats", "/v1/hybrid/events", "/health", "/metrics", "/v1/models"]
)
def test_a_page_on_another_site_cannot_read_through_an_embed(hybrid: str, path: str) -> None:
    # <script src=...> or <img src=...>: no Origin, but Sec-Fetch-Site says who asked.
    headers = browser_headers(EVIL, "cross-site", "no-cors")
    del headers["Origin"]
    with httpx.stream("GET", f"{hybrid}{path}", headers=headers) as response:
        assert response.status_code == 403
        response.read()
    assert "server.allowed_origins" in response.json()["error"]["message"]


def test_a_link_the_user_follows_is_served(hybrid: str) -> None:
    headers = browser_headers(EVIL, "cross-site", "navigate")
    del headers["Origin"]
    assert httpx.get(f"{hybrid}/health", headers=headers).status_code == 200


def rebound(base_url: str) -> tuple[str, dict[str, str]]:
    """What a DNS-rebinding page on evil.example sends: its own name, same-origin fetches."""
    port = httpx.URL(base_url).port
    host = f"evil.example:{port}"
    return host, {"Host": host, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}


@pytest.mark.parametrize(
    "path", ["/v1/hybrid/stats", "/v1/hybrid/events", "/health", "/metrics", "/v1/models"]
)
def test_a_rebinding_page_cannot_read_anything(hybrid: str, path: str) -> None:
    _, headers = rebound(hybrid)
    with httpx.stream("GET", f"{hybrid}{path}", headers=headers) as response:
        assert response.status_code == 403
        response.read()
    error = response.json()["error"]
    assert error["code"] == "host_not_allowed"
    assert "'evil.example'" in error["message"] and "server.allowed_hosts" in error["message"]
    assert "snapshot" not in response.text


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_rebinding_page_cannot_post(hybrid: str, fake: FakeCloud, path: str) -> None:
    host, headers = rebound(hybrid)
    body, shape = ENDPOINTS[path]
    # Same-origin in the browser's eyes: JSON without a preflight, its own Origin.
    headers = {**headers, "Origin": f"http://{host}", "Content-Type": "application/json"}

    response = httpx.post(f"{hybrid}{path}", json=body, headers=headers)

    assert response.status_code == 403
    assert error_code(response.json(), shape) == expect(shape, "403 host_not_allowed")
    assert_nothing_happened(hybrid, fake)


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST:{port}", "127.0.0.1:{port}", "127.8.9.10:{port}", "[::1]:{port}"],
)
def test_loopback_names_are_served(hybrid: str, host: str) -> None:
    port = httpx.URL(hybrid).port
    response = httpx.get(f"{hybrid}/health", headers={"Host": host.format(port=port)})
    assert response.status_code == 200


def test_a_name_in_allowed_hosts_is_served(serve: Callable[..., str]) -> None:
    refused = serve()
    assert httpx.get(f"{refused}/health", headers={"Host": "hybrid.lan"}).status_code == 403

    allowed = serve(**{"server.allowed_hosts": ["Hybrid.LAN"]})
    assert httpx.get(f"{allowed}/health", headers={"Host": "hybrid.lan:8642"}).status_code == 200
    assert httpx.get(f"{allowed}/health", headers={"Host": "evil.example"}).status_code == 403


def test_the_address_hybrid_is_bound_to_is_served(serve: Callable[..., str]) -> None:
    base_url = serve(**{"server.host": "hybrid.lan"})
    assert httpx.get(f"{base_url}/health", headers={"Host": "hybrid.lan:8642"}).status_code == 200
    assert httpx.get(f"{base_url}/health", headers={"Host": "evil.example"}).status_code == 403


def preflight(base_url: str, origin: str) -> httpx.Response:
    """What a browser sends before a cross-origin JSON POST with a key."""
    return httpx.options(
        f"{base_url}/v1/chat/completions",
        headers={
            **browser_headers(origin, "cross-site", "cors"),
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_an_allowed_page_gets_cors_and_an_answer(
    serve: Callable[..., str], fake: FakeCloud
) -> None:
    base_url = serve(**{"server.allowed_origins": [f"{PAGE}/"]})

    allowed = preflight(base_url, PAGE)
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == PAGE
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert allowed.headers["access-control-allow-headers"] == "authorization,content-type"

    body, _ = ENDPOINTS["/v1/chat/completions"]
    headers = {**browser_headers(PAGE, "cross-site", "cors"), "Authorization": "Bearer x"}
    answer = httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE
    assert "x-hybrid-route" in answer.headers["access-control-expose-headers"]
    assert len(fake.requests) == 1


def test_a_page_not_allowed_gets_no_cors(serve: Callable[..., str], fake: FakeCloud) -> None:
    base_url = serve(**{"server.allowed_origins": [PAGE]})

    refused = preflight(base_url, EVIL)

    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert_nothing_happened(base_url, fake)


def test_a_star_allows_every_page(serve: Callable[..., str], fake: FakeCloud) -> None:
    base_url = serve(**{"server.allowed_origins": ["*"]})

    assert preflight(base_url, EVIL).headers["access-control-allow-origin"] == EVIL
    headers = browser_headers(EVIL, "cross-site", "cors")
    response = httpx.post(
        f"{base_url}/v1/hybrid/mode", json={"mode": "local-only"}, headers=headers
    )
    assert response.status_code == 200
    assert mode_of(base_url) == "local-only"


def test_a_page_served_by_hybrid_itself_is_same_origin(hybrid: str) -> None:
    response = httpx.post(
        f"{hybrid}/v1/hybrid/mode",
        json={"mode": "local-only"},
        headers={**browser_headers(hybrid, "same-origin", "cors")},
    )
    assert response.status_code == 200
    assert mode_of(hybrid) == "local-only"


def test_with_an_api_key_an_allowed_page_can_preflight_and_read_the_401(
    serve: Callable[..., str], fake: FakeCloud
) -> None:
    # Browsers send a preflight without credentials; the page then sends the key itself.
    key = "a-key-of-24-characters!!"
    base_url = serve(**{"server.api_key": key, "server.allowed_origins": [PAGE]})

    assert preflight(base_url, PAGE).status_code == 204
    body, _ = ENDPOINTS["/v1/chat/completions"]
    headers = browser_headers(PAGE, "cross-site", "cors")
    refused = httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers)
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == PAGE
    assert fake.requests == []

    headers["Authorization"] = f"Bearer {key}"
    assert httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers).is_success
    assert len(fake.requests) == 1


def test_a_client_on_the_network_may_name_the_address_it_connected_to() -> None:
    # Bound to every interface, hybrid sees the address each connection reached; a page can
    # rebind only a name it owns, never an address.
    hosts = AllowedHosts.of([], "0.0.0.0")
    assert hosts.allows("192.168.1.20:8642", local_address="192.168.1.20")
    assert not hosts.allows("192.168.1.99:8642", local_address="192.168.1.20")
    assert not hosts.allows("evil.example:8642", local_address="192.168.1.20")
    assert not hosts.allows("fileserver.lan", local_address="fileserver.lan")
