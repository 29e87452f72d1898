"""One provider's HTTP side: build a request, send it, read a bounded body.

:class:`Upstream` is what one attempt of :class:`~hybrid.cloud.provider.CloudProvider` does on
the wire, below its retries, its circuit breaker and its wire format: the URL and the headers
every request carries (built once), a send that goes out again at once when its pooled
connection was closed by the server before the request was written whole, and a body read with
an idle timeout and a size cap.  Its failures are already :class:`~hybrid.errors.ProviderError`;
transport errors (``httpx2``'s) pass through for the provider to translate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import orjson
from pydantic import SecretStr

from hybrid.cloud.client import transport_timeout
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.cloud.stream import TimedChunks
from hybrid.errors import ConfigError, ProviderProtocolError, ProviderTimeoutError

log = logging.getLogger("hybrid.cloud")

MAX_BODY_BYTES = 32 * 2**20
"""A whole answer larger than this is not an answer; reading stops rather than fill memory."""
MAX_ERROR_BODY_BYTES = 64 * 2**10
"""Error bodies are read only for their message."""
# How often one attempt is sent again after its pooled connection was closed by the server
# before the request was written whole; each closed connection leaves the pool as it fails, so a
# few resends reach a fresh one.
_STALE_CONNECTION_RESENDS = 4


@dataclass(frozen=True)
class UpstreamCall:
    """One request to send.

    Attributes:
        path: Appended to the provider's base URL (``/chat/completions``).
        body: The JSON body.
    """

    path: str
    body: Mapping[str, Any]


class Upstream:
    """The HTTP exchange with one provider's API.

    Args:
        name: The provider's name, for errors and logs.
        base_url: The API's base URL (``https://api.openai.com/v1``); paths are appended.
        client: The HTTP client (shared, owned by the caller).
        policy: Timeouts (per phase, and the idle timeout between body chunks).
        auth_headers: The headers that carry the key and the API version; called once, when
            the first request is built.

    Raises:
        ConfigError: The base URL is not http(s).
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        client: httpx2.AsyncClient,
        policy: ReliabilityPolicy,
        auth_headers: Callable[[], Mapping[str, str]],
    ) -> None:
        self._name = name
        self._base_url = base_url.rstrip("/")
        url = httpx2.URL(self._base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"the base URL of provider {name!r} must be an http:// or https:// URL "
                f"(got {str(url.copy_with(userinfo=b''))!r})"
            )
        self._host = url.host
        self._client = client
        self._idle_timeout_s = policy.idle_timeout_s
        self._auth_headers = auth_headers
        self._urls: dict[str, httpx2.URL] = {}
        self._request_headers: httpx2.Headers | None = None
        # Requests are built here, not by the client, so they carry its timeouts themselves.
        self._timeouts = transport_timeout(policy).as_dict()

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._base_url

    @property
    def host(self) -> str:
        """The API's host name."""
        return self._host

    def request(self, call: UpstreamCall) -> httpx2.Request:
        """The HTTP request for a call: ``POST`` of its JSON body to its path.

        Built here rather than by the client's ``build_request``, which merges the client's
        defaults, cookies and parameters into every request: they are merged once, into the
        headers every request shares.
        """
        return httpx2.Request(
            "POST", self._url(call.path), content=orjson.dumps(call.body), headers=self._headers()
        )

    async def send(self, http_request: httpx2.Request) -> httpx2.Response:
        """Send a request, again at once when it verifiably never reached the server.

        A server may close a keep-alive connection at any moment (its idle timeout).  When
        that close cuts a request sent on the pooled connection before the request was
        written whole, the server cannot have acted on it (it never had all of it), so it is
        sent again on another connection, neither counted as an attempt nor waited for.  A
        request written whole, and then met by a closed or reset connection, may have been
        received and worked on (and billed): the server might have read it, generated for a
        while and lost the connection, and nothing on the client's side tells that from a
        close that crossed the request on the wire.  That failure, like the failure of a
        request that opened its own connection, is raised: the caller counts it as an
        attempt, subject to its retries, backoff and circuit breaker.

        What happened on the connection comes from the ``trace`` request extension (httpx2's
        public one): a send that reports writing its request without first opening a
        connection went out on a pooled one, and a request body reported complete was handed
        whole to the operating system for the server.

        Returns:
            The response, its body not read yet (streamed).

        Raises:
            httpx2.HTTPError: The send failed (the caller translates it).
        """
        resends = 0
        while True:
            trace = _ConnectionTrace()
            http_request.extensions = {"timeout": self._timeouts, "trace": trace}
            try:
                return await self._client.send(http_request, stream=True, follow_redirects=False)
            except (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError) as exc:
                if not trace.unsent_on_pooled or resends == _STALE_CONNECTION_RESENDS:
                    raise
                log.info(
                    "%s: a pooled connection to %s was closed before the request was written "
                    "whole (%s: %s); sending it again",
                    self._name,
                    self._host,
                    type(exc).__name__,
                    exc,
                )
            resends += 1

    async def read(self, response: httpx2.Response, *, limit: int) -> bytes:
        """Read a body, allowing the idle timeout between chunks.

        Args:
            response: A response from :meth:`send`.
            limit: :data:`MAX_BODY_BYTES` for an answer (longer is an error), or
                :data:`MAX_ERROR_BODY_BYTES` for an error body (longer is truncated).

        Raises:
            ProviderTimeoutError: The body stalled for the idle timeout.
            ProviderProtocolError: An answer is longer than :data:`MAX_BODY_BYTES`.
        """
        chunks: list[bytes] = []
        size = 0
        body = TimedChunks(response, self._idle_timeout_s)
        while size < limit:
            try:
                chunk = await anext(body, None)
            except TimeoutError as exc:
                raise ProviderTimeoutError(
                    self._name,
                    f"the response stalled for {self._idle_timeout_s:g} s while it was "
                    f"being read (idle timeout); retry later",
                ) from exc
            if chunk is None:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        if limit == MAX_BODY_BYTES:
            raise ProviderProtocolError(
                self._name,
                f"the response is larger than {limit // 2**20} MiB; that is not an answer",
            )
        return b"".join(chunks)[:limit]

    def json(self, body: bytes) -> Any:
        """A body parsed as JSON.

        Raises:
            ProviderProtocolError: It is not JSON.
        """
        try:
            return orjson.loads(body)
        except ValueError as exc:
            raise ProviderProtocolError(
                self._name,
                f"the response is not JSON ({exc}); check that the base URL points at the "
                f"provider's API",
            ) from exc

    def _headers(self) -> httpx2.Headers:
        # The same for every request (the key does not change while the server runs); built
        # once as httpx2.Headers, which a request copies without normalizing each header again.
        if self._request_headers is None:
            self._request_headers = httpx2.Headers(
                {
                    **self._client.headers,
                    **self._auth_headers(),
                    "content-type": "application/json",
                }
            )
        return self._request_headers

    def _url(self, path: str) -> httpx2.URL:
        # Parsing the same URL for every request costs more than the rest of building it.
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx2.URL(self._base_url + path)
        return url


class _ConnectionTrace:
    """Follows one send through httpx's ``trace`` extension: was it written on a connection
    that was already open (taken from the pool), and was all of it written?

    A transport that reports nothing (a mock) never counts as having reused a connection.
    """

    def __init__(self) -> None:
        self._opened = False
        self.reused = False
        self.written = False

    @property
    def unsent_on_pooled(self) -> bool:
        """Whether the request went out on a pooled connection and was not written whole: the
        server cannot have acted on it."""
        return self.reused and not self.written

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        if event.startswith(("connection.connect_tcp.", "connection.connect_unix_socket.")):
            self._opened = True
        elif event.endswith(".send_request_headers.started") and not self._opened:
            self.reused = True
        elif event.endswith(".send_request_body.complete"):
            # Its last byte was accepted for sending: from here on the server may have it.
            self.written = True


def checked_key(name: str, key: SecretStr | None) -> SecretStr | None:
    """A provider's key, ready to travel in a header.

    Args:
        name: The provider's name, for the error.
        key: The configured key.

    Returns:
        The key without surrounding whitespace; None when there is none, or it is blank.

    Raises:
        ConfigError: The key holds whitespace, control or non-ASCII characters.
    """
    if key is None:
        return None
    value = key.get_secret_value().strip()
    if not value:
        return None
    if not all(33 <= ord(char) <= 126 for char in value):
        # The message must not quote the key: it would land in logs.
        raise ConfigError(
            f"the API key for provider {name!r} contains spaces, control or non-ASCII "
            f"characters; copy the key again"
        )
    return SecretStr(value)
