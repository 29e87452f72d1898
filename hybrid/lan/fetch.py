"""One short GET to a LAN inference server, which never raises for what the server does.

A LAN server is probed often and may be down, loading, or something other than what it was
configured as.  :func:`fetch` turns every way a GET can go wrong on the server's side (refused,
timed out, reset, cut off, too big) into an :class:`Unreachable` with a one-line reason, and
every answer, whatever its status, into a :class:`Fetched`; the probes decide what the answer
means.  :func:`server_root` derives the server's root (where ``/health``, ``/slots`` and
``/metrics`` live) from the OpenAI base URL a server is configured with.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx2

from hybrid.errors import ConfigError

# A /slots answer carries every slot's sampling parameters (~2 KB a slot); a few hundred slots
# fit well inside this.  Anything bigger is not a load report.
MAX_BODY_BYTES = 4 * 1024 * 1024
# A LAN server answers a probe in milliseconds; one that takes seconds is as good as down.
DEFAULT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Fetched:
    """A complete answer.

    Attributes:
        status: The HTTP status code.
        body: The whole body.
        elapsed_s: Seconds from sending the request to the last byte of the body.
    """

    status: int
    body: bytes
    elapsed_s: float


@dataclass(frozen=True)
class Unreachable:
    """No complete answer: the reason, in one line (``connection refused by http://...``)."""

    reason: str


def server_root(base_url: str) -> str:
    """The server's root URL from its OpenAI base URL: a trailing ``/v1`` (and slash) removed.

    ``http://gpu-box:8080/v1`` and ``http://gpu-box:8080/v1/`` give ``http://gpu-box:8080``;
    ``http://gpu-box/llama/v1`` gives ``http://gpu-box/llama``; a URL without ``/v1`` is kept
    as it is, less a trailing slash.

    Args:
        base_url: The OpenAI base URL (``GET {base_url}/models`` lists the models).

    Returns:
        The root, without a trailing slash.

    Raises:
        ConfigError: ``base_url`` is not an ``http://`` or ``https://`` URL with a host, or it
            carries a query or fragment.
    """
    text = base_url.strip()
    try:
        url = httpx2.URL(text)
    except httpx2.InvalidURL as exc:
        raise ConfigError(_bad_url(base_url, str(exc))) from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(_bad_url(base_url, "it needs http:// or https:// and a host"))
    if url.query or url.fragment:
        raise ConfigError(_bad_url(base_url, "it must not carry a query (?) or fragment (#)"))
    root = text.rstrip("/")
    return root.removesuffix("/v1") if root.endswith("/v1") else root


def models_url(base_url: str) -> str:
    """``GET`` here lists the models: ``{base_url}/models``, as OpenAI clients build it.

    Raises:
        ConfigError: as :func:`server_root`.
    """
    server_root(base_url)
    return base_url.strip().rstrip("/") + "/models"


def _bad_url(base_url: str, why: str) -> str:
    return (
        f"LAN server base_url {base_url!r} is not usable ({why}); give the server's OpenAI "
        f"base URL, such as http://gpu-box:8080/v1"
    )


def auth_headers(api_key: str | None) -> dict[str, str]:
    """``Authorization: Bearer <key>`` when there is a key; llama-server, vLLM and hybrid
    all read it, Ollama ignores it."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


async def fetch(
    client: httpx2.AsyncClient, url: str, headers: dict[str, str], timeout_s: float
) -> Fetched | Unreachable:
    """``GET url``, read whole within `timeout_s` seconds, redirects not followed.

    Args:
        client: The shared client (its pool is reused; its own timeouts are overridden).
        url: What to get.
        headers: Extra request headers (the key).
        timeout_s: The most the whole exchange may take, connecting included.

    Returns:
        The answer, or why there is none.
    """
    if timeout_s <= 0:
        return Unreachable(f"no time left to ask {url}")
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream(
                "GET",
                url,
                headers=headers,
                timeout=httpx2.Timeout(timeout_s),
                follow_redirects=False,
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        return Unreachable(
                            f"{url} answered more than {MAX_BODY_BYTES // 1024 // 1024} MiB"
                        )
                status = response.status_code
    except TimeoutError:
        return Unreachable(f"no answer from {url} within {timeout_s:.2g} s")
    except (httpx2.HTTPError, httpx2.StreamError) as exc:
        return Unreachable(_reason(url, exc, timeout_s))
    return Fetched(status, bytes(body), time.monotonic() - started)


def _reason(url: str, exc: httpx2.HTTPError | httpx2.StreamError, timeout_s: float) -> str:
    """What went wrong, in one line the user can act on."""
    if isinstance(exc, httpx2.TimeoutException):
        return f"no answer from {url} within {timeout_s:.2g} s"
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect to {url} (is the server running, and the address right?)"
    if isinstance(exc, httpx2.RemoteProtocolError | httpx2.ReadError):
        return f"{url} closed the connection mid-answer"
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return f"{url} failed: {detail}"
