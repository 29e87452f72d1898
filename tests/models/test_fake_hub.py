"""The fake hub answers as huggingface.co does: the headers, the redirect and Range requests
``hybrid pull`` relies on, and the hub's error codes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx2
import pytest
from fake_hub import FakeHub, HubFile

DATA = bytes(range(256)) * 64


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(tokens=("hf_ok",)) as fake:
        fake.add("o/n", {"M-Q4_K_M.gguf": HubFile(DATA), "README.md": HubFile(b"hi", lfs=False)})
        yield fake


def test_listing_with_blobs_carries_sizes_and_lfs_checksums(hub: FakeHub) -> None:
    data = httpx2.get(f"{hub.url}/api/models/o/n", params={"blobs": "true"}).json()
    gguf = next(s for s in data["siblings"] if s["rfilename"] == "M-Q4_K_M.gguf")
    assert gguf["lfs"] == {
        "sha256": hashlib.sha256(DATA).hexdigest(),
        "size": len(DATA),
        "pointerSize": 134,
    }
    assert len(data["sha"]) == 40


def test_resolve_redirects_to_the_cdn_with_the_linked_headers(hub: FakeHub) -> None:
    head = httpx2.head(f"{hub.url}/o/n/resolve/main/M-Q4_K_M.gguf")
    sha = hashlib.sha256(DATA).hexdigest()
    assert head.status_code == 302
    assert head.headers["x-linked-etag"] == f'"{sha}"'
    assert head.headers["x-linked-size"] == str(len(DATA))
    assert len(head.headers["x-repo-commit"]) == 40
    cdn = httpx2.get(head.headers["location"], headers={"range": "bytes=100-"})
    assert cdn.status_code == 206
    assert cdn.headers["content-range"] == f"bytes 100-{len(DATA) - 1}/{len(DATA)}"
    assert cdn.headers["accept-ranges"] == "bytes"
    assert cdn.content == DATA[100:]


def test_errors_carry_the_hub_error_codes(hub: FakeHub) -> None:
    anonymous = httpx2.get(f"{hub.url}/api/models/o/missing")
    signed = httpx2.get(
        f"{hub.url}/api/models/o/missing", headers={"authorization": "Bearer hf_ok"}
    )
    bad = httpx2.get(f"{hub.url}/api/models/o/n", headers={"authorization": "Bearer nope"})
    entry = httpx2.head(f"{hub.url}/o/n/resolve/main/absent.gguf")
    assert (anonymous.status_code, anonymous.headers["x-error-code"]) == (401, "RepoNotFound")
    assert (signed.status_code, signed.headers["x-error-code"]) == (404, "RepoNotFound")
    assert bad.status_code == 401
    assert (entry.status_code, entry.headers["x-error-code"]) == (404, "EntryNotFound")


def test_a_cut_body_stops_short(hub: FakeHub) -> None:
    hub.cut_next(hashlib.sha256(DATA).hexdigest(), 1000)
    location = httpx2.head(f"{hub.url}/o/n/resolve/main/M-Q4_K_M.gguf").headers["location"]
    with pytest.raises(httpx2.RemoteProtocolError):
        httpx2.get(location)
