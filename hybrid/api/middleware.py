"""ASGI middleware: who may call, the request id, hybrid's response headers, the request body.

Pure ASGI rather than ``BaseHTTPMiddleware``, which buffers and re-wraps streaming responses: an
SSE stream must reach the client token by token, and a client disconnect must reach the route.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import Callable

from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybrid.api.browsers import AllowedHosts, AllowedOrigins, from_foreign_page, host_name
from hybrid.api.errors import error_response
from hybrid.wire.errors import WireError, shape_for_path

HEADER_ROUTE = "x-hybrid-route"
HEADER_MODEL = "x-hybrid-model"
HEADER_REQUEST_ID = "x-hybrid-request-id"
HEADER_REASON = "x-hybrid-reason"
STATE_REQUEST_ID = "hybrid_request_id"
_ROUTE, _MODEL, _REASON, _REQUEST_ID = (
    name.encode() for name in (HEADER_ROUTE, HEADER_MODEL, HEADER_REASON, HEADER_REQUEST_ID)
)


# The request headers the middleware reads; the rest are left to the routes.
_READ = frozenset(
    {
        b"host",
        b"origin",
        b"sec-fetch-site",
        b"sec-fetch-mode",
        b"content-type",
        b"content-length",
        b"authorization",
        b"x-api-key",
        b"access-control-request-method",
        b"access-control-request-headers",
        b"access-control-request-private-network",
    }
)
_METHODS_WITHOUT_BODY = ("GET", "HEAD", "OPTIONS")
# What a page allowed by CORS may read of a response besides the CORS-safelisted headers.
_EXPOSED = b"x-hybrid-route, x-hybrid-model, x-hybrid-reason, x-hybrid-request-id, " + (
    b"retry-after, x-should-retry"
)

_UNAUTHORIZED = WireError(
    401,
    "this server needs its API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>') "
    "with the key set in server.api_key",
    "invalid_request_error",
    "invalid_api_key",
)


def request_id_of(scope: Scope) -> str:
    """The id the middleware gave this request."""
    return str(scope["state"][STATE_REQUEST_ID])


class HybridMiddleware:
    """Decides who may call, gives each request an id, reads its body, and gives each response
    hybrid's headers.

    One pure-ASGI layer rather than one per concern: every layer costs each request a call and
    a closure, and the cloud path's whole overhead is a millisecond.

    - A request addressed to a host name that is not allowed (DNS rebinding), or sent by a web
      page whose origin is not allowed, gets a 403 before anything runs (see
      :mod:`hybrid.api.browsers`).  Allowed origins get CORS: preflights are answered here and
      responses carry ``Access-Control-Allow-Origin``.
    - A request with a body must send JSON (``Content-Type: application/json`` or a ``+json``
      type), or it gets a 415: the types an HTML form or a plain ``fetch()`` can send without a
      preflight (``text/plain``, form data) never reach a route.
    - The body is read (up to ``max_body_bytes``, within ``body_timeout_s``) before the
      application runs, so an oversized upload is refused with a 413 and a stalled one with a
      408, in the client's API shape, without the route seeing part of it.
    - A route that answered sets ``X-Hybrid-Route``, ``X-Hybrid-Model`` and ``X-Hybrid-Reason``
      itself, and an error sets its reason; the middleware fills in the rest (``/health``, ...),
      so every response carries all four.

    Args:
        app: The wrapped application.
        model_id: Returns the id of the local model (or what is configured, while loading).
        max_body_bytes: The largest request body accepted.
        api_key: The key every request but ``/health`` must carry; None for none.
        allowed_hosts: The host names requests may address the server by.
        allowed_origins: The web pages a browser may let call the server.
        body_timeout_s: Seconds a client has to send the whole body once its headers arrived.
    """

    def __init__(
        self,
        app: ASGIApp,
        model_id: Callable[[], str],
        max_body_bytes: int,
        api_key: SecretStr | None = None,
        *,
        allowed_hosts: AllowedHosts,
        allowed_origins: AllowedOrigins,
        body_timeout_s: float,
    ) -> None:
        self._app = app
        self._model_id = model_id
        self._max_bytes = max_body_bytes
        self._key = api_key.get_secret_value().encode() if api_key is not None else None
        self._hosts = allowed_hosts
        self._origins = allowed_origins
        self._body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})[STATE_REQUEST_ID] = request_id
        headers = {
            name: value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name in _READ
        }
        refusal = self._refusal(scope, headers)
        # CORS for an allowed origin only: a refused page must not read even the refusal.
        origin = headers.get(b"origin") if refusal is None else None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if _ROUTE not in present:
                    # A refusal went nowhere; other answers without a route (/health) are local.
                    refused = message.get("status", 200) >= 400
                    headers.append((_ROUTE, b"none" if refused else b"local"))
                if _MODEL not in present:
                    headers.append((_MODEL, self._model_id().encode()))
                if _REASON not in present:
                    headers.append((_REASON, b"none"))
                headers.append((_REQUEST_ID, request_id.encode()))
                if origin is not None:
                    headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
                    headers.append((b"access-control-expose-headers", _EXPOSED))
                    headers.append((b"vary", b"Origin"))
                message = {**message, "headers": headers}
            await send(message)

        if refusal is not None:
            await self._refuse(scope, send_with_headers, refusal)
            return
        if (
            scope["method"] == "OPTIONS"
            and origin is not None
            and b"access-control-request-method" in headers
        ):
            await _preflight(headers, send_with_headers)
            return
        if self._key is not None and scope["path"] != "/health" and not self._authorized(headers):
            await self._refuse(scope, send_with_headers, _UNAUTHORIZED)
            return
        if scope["method"] in _METHODS_WITHOUT_BODY:
            await self._app(scope, receive, send_with_headers)
            return
        content_type = headers.get(b"content-type")
        if not _is_json(content_type):
            await self._refuse(scope, send_with_headers, _not_json(content_type))
            return
        body = await self._read_body(scope, headers, receive, send_with_headers)
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._app(scope, replay, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[bytes, str]) -> WireError | None:
        """Why a request must not be served because of where it comes from, or None."""
        host = headers.get(b"host")
        server = scope.get("server")
        if not self._hosts.allows(host, server[0] if server else None):
            assert host is not None
            return _host_refused(host)
        origin = headers.get(b"origin")
        if origin is not None:
            own = f"{scope.get('scheme', 'http')}://{host}".lower()
            if not self._origins.allows(origin, own):
                return _origin_refused(origin)
        elif from_foreign_page(headers.get(b"sec-fetch-site"), headers.get(b"sec-fetch-mode")):
            return _origin_refused(None)
        return None

    async def _read_body(
        self, scope: Scope, headers: dict[bytes, str], receive: Receive, send: Send
    ) -> bytes | None:
        """The whole request body, or None when it was refused or the client left."""
        declared = _content_length(headers)
        if declared is not None and declared > self._max_bytes:
            await self._refuse(scope, send, self._too_large(declared))
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self._max_bytes:
                        break
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError:
            await self._refuse(scope, send, self._too_slow(size))
            return None
        await self._refuse(scope, send, self._too_large(size))
        return None

    def _authorized(self, headers: dict[bytes, str]) -> bool:
        """Whether the request carries the API key (bearer token or ``x-api-key``)."""
        assert self._key is not None
        bearer = headers.get(b"authorization", "")
        token = bearer[7:] if bearer[:7].lower() == "bearer " else ""
        # Constant time: how much of a guess matched must not show in how long it took.  Both
        # are compared, since SDKs send one or the other, or both with a dummy in one.
        by_header = hmac.compare_digest(
            headers.get(b"x-api-key", "").strip().encode("latin-1"), self._key
        )
        by_bearer = hmac.compare_digest(token.strip().encode("latin-1"), self._key)
        return by_header or by_bearer

    def _too_large(self, size: int) -> WireError:
        message = (
            f"request body is {size:,} bytes, over the limit of {self._max_bytes:,}; "
            f"send less, or raise HYBRID_SERVER__MAX_BODY_BYTES"
        )
        return WireError(413, message, "invalid_request_error", "request_too_large")

    def _too_slow(self, size: int) -> WireError:
        message = (
            f"the request body did not arrive within {self._body_timeout_s:g} s "
            f"({size:,} bytes came); send the whole body at once, or raise "
            f"HYBRID_SERVER__BODY_TIMEOUT_S"
        )
        return WireError(408, message, "invalid_request_error", "request_timeout")

    async def _refuse(self, scope: Scope, send: Send, error: WireError) -> None:
        response = error_response(error, shape_for_path(scope["path"]))
        # The request's body may still be arriving, or never come: this connection is done.
        response.headers["connection"] = "close"
        await response(scope, _nothing_received, send)


async def _nothing_received() -> Message:
    """The receive channel of a refusal, which reads nothing of the request."""
    return {"type": "http.disconnect"}


def _content_length(headers: dict[bytes, str]) -> int | None:
    try:
        return int(headers[b"content-length"])
    except (KeyError, ValueError):
        return None


def _is_json(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names JSON (``application/json``, ``application/*+json``)."""
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def _preflight(headers: dict[bytes, str], send: Send) -> None:
    """Answer a CORS preflight from an allowed origin: any method hybrid serves, any header."""
    grants: list[tuple[bytes, bytes]] = [
        (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
        (b"access-control-max-age", b"600"),
        (b"content-length", b"0"),
    ]
    asked = headers.get(b"access-control-request-headers")
    if asked:
        grants.append((b"access-control-allow-headers", asked.encode("latin-1")))
    if headers.get(b"access-control-request-private-network") == "true":
        # Chrome asks before a public page may reach a loopback address.
        grants.append((b"access-control-allow-private-network", b"true"))
    await send({"type": "http.response.start", "status": 204, "headers": grants})
    await send({"type": "http.response.body", "body": b""})


def _host_refused(host: str) -> WireError:
    name = host_name(host)
    message = (
        f"requests for host {name!r} are refused: a web page can reach this server under its "
        f"own name (DNS rebinding). Call hybrid as 127.0.0.1 or localhost, or add {name!r} to "
        f"server.allowed_hosts (HYBRID_SERVER__ALLOWED_HOSTS='[\"{name}\"]')"
    )
    return WireError(403, message, "invalid_request_error", "host_not_allowed")


def _origin_refused(origin: str | None) -> WireError:
    if origin is None:
        message = (
            "requests a web page on another site makes are refused; to let a page call hybrid, "
            "add its origin to server.allowed_origins"
        )
    else:
        message = (
            f"requests from the web page at {origin!r} are refused; to let that page call "
            f"hybrid, add its origin to server.allowed_origins "
            f"(HYBRID_SERVER__ALLOWED_ORIGINS='[\"{origin}\"]')"
        )
    return WireError(403, message, "invalid_request_error", "origin_not_allowed")


def _not_json(content_type: str | None) -> WireError:
    sent = "no Content-Type" if content_type is None else f"Content-Type {content_type!r}"
    message = (
        f"the request body must be JSON sent with 'Content-Type: application/json' (got "
        f"{sent}); with curl, add -H 'Content-Type: application/json'"
    )
    return WireError(415, message, "invalid_request_error", "unsupported_media_type")
