"""The cloud providers' HTTP client honours the environment: proxies, NO_PROXY, the CA bundle.

Each test builds the providers as ``hybrid serve`` does (``build_providers``), sets the
variables the way a user would, and sends real requests over loopback: through a forward
proxy (``proxy_fakes.ForwardProxy``) to the fake cloud, or over TLS (``proxy_fakes.TlsFront``
with a certificate from a throwaway CA) to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import trustme
from fake_cloud import FakeCloud
from proxy_fakes import ForwardProxy, ProxiedRequest, TlsFront

from hybrid.backend import collect
from hybrid.cloud.client import cloud_client, http2_available
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.errors import ConfigError, ProviderError
from hybrid.generation import GenerationRequest, Message
from hybrid.service.providers import build_providers
from hybrid.settings import CloudSettings

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="Hello through the middle.") as fake:
        yield fake


@pytest.fixture
def ca(monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A throwaway CA; the machine's own CA variables are cleared (the system store stays)."""
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return trustme.CA()


def tls_server_context(ca: trustme.CA, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def keyed(cloud: FakeCloud, base: str) -> CloudSettings:
    """Both providers at ``base``, each with the key the fake cloud wants from it."""
    return CloudSettings.model_validate(
        {
            "openai": {"api_key": cloud.openai_key, "base_url": base + "/v1"},
            "anthropic": {"api_key": cloud.anthropic_key, "base_url": base},
            "max_attempts": 1,
        }
    )


def ask(provider: str, stream: bool = True) -> GenerationRequest:
    model = "gpt-4.1-mini" if provider == "openai" else "claude-sonnet-4-5"
    return GenerationRequest(
        request_id="req-env",
        messages=(Message("user", "Say hello"),),
        model=model,
        stream=stream,
    )


async def answer(cloud: CloudSettings, provider: str, stream: bool = True) -> str:
    """The text one provider built from these settings answers, its clients closed after."""
    pool = build_providers(cloud)
    try:
        generation = await pool.providers[provider].start(ask(provider, stream))
        return (await collect(generation)).text
    finally:
        await pool.aclose()


@pytest.mark.parametrize(
    ("provider", "stream"),
    [("openai", False), ("openai", True), ("anthropic", True)],
    ids=["openai-whole", "openai-stream", "anthropic-stream"],
)
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_a_cloud_call_goes_through_the_proxy_the_environment_names(
    cloud: FakeCloud,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    provider: str,
    stream: bool,
) -> None:
    async def scenario() -> tuple[str, list[ProxiedRequest]]:
        async with ForwardProxy() as proxy:
            monkeypatch.setenv(variable, proxy.url)
            text = await answer(keyed(cloud, cloud.base_url), provider, stream)
            return text, proxy.seen

    text, seen = asyncio.run(scenario())
    path = "/v1/chat/completions" if provider == "openai" else "/v1/messages"
    assert text == "Hello through the middle."
    assert seen == [ProxiedRequest("POST", cloud.base_url + path)]
    assert [received.path for received in cloud.requests] == [path]


def test_no_proxy_sends_loopback_calls_past_the_proxy(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> tuple[str, list[ProxiedRequest]]:
        async with ForwardProxy() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            text = await answer(keyed(cloud, cloud.base_url), "openai")
            return text, proxy.seen

    text, seen = asyncio.run(scenario())
    assert text == "Hello through the middle."
    assert seen == [], "NO_PROXY names the host: the proxy is not used"
    assert len(cloud.requests) == 1


def test_an_https_call_tunnels_through_https_proxy(
    cloud: FakeCloud, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(bundle)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    async def scenario() -> tuple[str, list[ProxiedRequest], int]:
        async with (
            TlsFront(cloud.port, tls_server_context(ca)) as front,
            ForwardProxy() as proxy,
        ):
            monkeypatch.setenv("HTTPS_PROXY", proxy.url)
            text = await answer(keyed(cloud, front.base_url), "openai")
            return text, proxy.seen, front.port

    text, seen, port = asyncio.run(scenario())
    assert text == "Hello through the middle."
    assert seen == [ProxiedRequest("CONNECT", f"127.0.0.1:{port}")]
    assert len(cloud.requests) == 1


def test_a_server_signed_by_a_private_ca_is_reached_only_with_ssl_cert_file(
    cloud: FakeCloud, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(bundle)

    async def scenario() -> tuple[ProviderError, str]:
        async with TlsFront(cloud.port, tls_server_context(ca)) as front:
            with pytest.raises(ProviderError) as refused:
                await answer(keyed(cloud, front.base_url), "openai")
            monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
            return refused.value, await answer(keyed(cloud, front.base_url), "openai")

    refused, text = asyncio.run(scenario())
    assert "is not trusted" in str(refused) and "SSL_CERT_FILE" in str(refused)
    assert text == "Hello through the middle."
    assert len(cloud.requests) == 1, "nothing was sent to the server that was not trusted"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_ssl_cert_dir_is_honoured_too(
    cloud: FakeCloud, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(bundle)
    # OpenSSL looks a CA up in a folder by the hash of its subject name.
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(bundle)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    folder = tmp_path / "certs"
    folder.mkdir()
    shutil.copy(bundle, folder / f"{subject_hash}.0")
    monkeypatch.setenv("SSL_CERT_DIR", str(folder))

    async def scenario() -> str:
        async with TlsFront(cloud.port, tls_server_context(ca)) as front:
            return await answer(keyed(cloud, front.base_url), "anthropic")

    assert asyncio.run(scenario()) == "Hello through the middle."


def test_an_unreadable_ssl_cert_file_is_a_config_error_that_names_it(
    cloud: FakeCloud, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError) as caught:
        build_providers(keyed(cloud, cloud.base_url))
    assert "SSL_CERT_FILE" in str(caught.value)


def test_http2_is_offered_exactly_when_h2_is_installed(
    cloud: FakeCloud, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(bundle)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    async def scenario() -> list[str | None]:
        # The server would take HTTP/2 if offered; the handshake shows what the client offered.
        context = tls_server_context(ca, alpn=["h2", "http/1.1"])
        async with TlsFront(cloud.port, context) as front:
            async with cloud_client(ReliabilityPolicy()) as client:
                # An HTTP/2 client meets an HTTP/1.1 backend behind the front: it may fail.
                with contextlib.suppress(httpx2.HTTPError):
                    await client.get(front.base_url + "/v1/models")
            return front.handshakes

    expected = "h2" if http2_available() else "http/1.1"
    assert asyncio.run(scenario()) == [expected]


@pytest.mark.skipif(http2_available(), reason="h2 is installed here")
def test_asking_for_http2_without_h2_says_what_to_install() -> None:
    with pytest.raises(ConfigError, match=r"hybrid\[http2\]"):
        cloud_client(ReliabilityPolicy(), http2=True)
