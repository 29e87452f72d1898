"""The HTTP client a cloud provider sends through: httpx2's own, configured in one place.

Every provider gets its own ``httpx2.AsyncClient`` from :func:`cloud_client`, on httpx2's own
transport (httpcore2), with:

- a connection pool (:data:`CLOUD_LIMITS`): many concurrent requests per provider without
  reconnecting, idle connections kept a while for the next request;
- transport timeouts from the provider's :class:`~hybrid.cloud.policy.ReliabilityPolicy`
  (:func:`transport_timeout`; the provider enforces its first-byte, whole-answer and idle
  limits itself);
- HTTP/2 when the ``h2`` package is installed (``pip install 'hybrid[http2]'``), negotiated
  per origin by ALPN, so an HTTP/1.1-only server is still spoken to in HTTP/1.1;
- the environment's proxies and CA bundle: ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
  ``NO_PROXY``, ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``, read by httpx2 itself (``trust_env``)
  when the client is built.  That is why no ``transport=`` is passed: httpx2 ignores the
  environment's proxies for a client given a transport.
- no redirects: a provider's key must never follow one to another host.
"""

from __future__ import annotations

import importlib.util
import ssl

import httpx2

from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.errors import ConfigError

# Enough connections for a burst of concurrent requests to one provider.  An idle connection is
# kept for 30 s: long enough for a follow-up request to skip a new TLS handshake, and below the
# idle timeout of common front ends (60 s or more), so the server seldom closes a pooled
# connection just as a request goes out on it (one cut before it was written whole gets the
# request again at once: Upstream.send; one cut later costs an attempt).  The price: httpcore2
# probes every idle connection's socket twice per request, so for 30 s after a burst of 64
# concurrent requests each request costs more.
CLOUD_LIMITS = httpx2.Limits(
    max_connections=256, max_keepalive_connections=64, keepalive_expiry=30.0
)


def http2_available() -> bool:
    """Whether the ``h2`` package is installed, so that httpx2 can speak HTTP/2."""
    return importlib.util.find_spec("h2") is not None


def transport_timeout(policy: ReliabilityPolicy) -> httpx2.Timeout:
    """httpx2's timeouts for a provider's requests.

    The read timeout is only a backstop: the provider enforces its first-byte and idle limits
    around each await, because one read timeout cannot tell waiting for the first token from
    a stall between two chunks.

    Args:
        policy: The provider's timeouts.

    Returns:
        Connect as the policy says; read, the longest of first byte, whole answer (a
        non-streamed answer's headers wait for all of it) and idle; write, idle; a free pooled
        connection waited for as long as a first byte.
    """
    return httpx2.Timeout(
        connect=policy.connect_timeout_s,
        read=max(policy.first_byte_timeout_s, policy.whole_answer_timeout_s, policy.idle_timeout_s),
        write=policy.idle_timeout_s,
        pool=policy.first_byte_timeout_s,
    )


def cloud_client(policy: ReliabilityPolicy, *, http2: bool | None = None) -> httpx2.AsyncClient:
    """A new HTTP client for one provider; see the module docstring for its configuration.

    Args:
        policy: The provider's timeouts.
        http2: Offer HTTP/2; None (the default) offers it when ``h2`` is installed.

    Returns:
        The client; its owner closes it (``await client.aclose()``).

    Raises:
        ConfigError: ``http2`` is True and ``h2`` is not installed, or ``SSL_CERT_FILE`` /
            ``SSL_CERT_DIR`` names no readable certificates.
    """
    if http2 is None:
        http2 = http2_available()
    elif http2 and not http2_available():
        raise ConfigError(
            "HTTP/2 needs the h2 package; install it with: pip install 'hybrid[http2]'"
        )
    try:
        return httpx2.AsyncClient(
            http2=http2,
            limits=CLOUD_LIMITS,
            timeout=transport_timeout(policy),
            follow_redirects=False,
            trust_env=True,
        )
    except (OSError, ssl.SSLError) as exc:
        # httpx2 loads the environment's CA bundle here, for every client it builds.
        raise ConfigError(
            f"the CA certificates named by SSL_CERT_FILE or SSL_CERT_DIR could not be loaded "
            f"({exc}); point the variable at a readable PEM bundle (or a folder of hashed "
            f"certificates), or unset it to use the system's"
        ) from exc
