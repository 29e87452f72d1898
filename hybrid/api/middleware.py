"""ASGI middleware: the request id, hybrid's response headers, and the request body limit.

Pure ASGI rather than ``BaseHTTPMiddleware``, which buffers and re-wraps streaming responses: an
SSE stream must reach the client token by token, and a client disconnect must reach the route.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Callable

from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybrid.api.errors import WireError, shape_for_path

HEADER_ROUTE = "x-hybrid-route"
HEADER_MODEL = "x-hybrid-model"
HEADER_REQUEST_ID = "x-hybrid-request-id"
HEADER_REASON = "x-hybrid-reason"
STATE_REQUEST_ID = "hybrid_request_id"
_ROUTE, _MODEL, _REASON, _REQUEST_ID = (
    name.encode() for name in (HEADER_ROUTE, HEADER_MODEL, HEADER_REASON, HEADER_REQUEST_ID)
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
    """Gives each request an id, caps its body, and gives each response hybrid's headers.

    One pure-ASGI layer rather than one per concern: every layer costs each request a call and
    a closure, and the cloud path's whole overhead is a millisecond.

    - The body is read (up to ``max_body_bytes``) before the application runs, so an oversized
      upload is refused with a 413 in the client's API shape without the route seeing part of
      it.
    - A route that answered sets ``X-Hybrid-Route``, ``X-Hybrid-Model`` and ``X-Hybrid-Reason``
      itself, and an error sets its reason; the middleware fills in the rest (``/health``, ...),
      so every response carries all four.

    Args:
        app: The wrapped application.
        model_id: Returns the id of the local model (or what is configured, while loading).
        max_body_bytes: The largest request body accepted.
    """

    def __init__(
        self,
        app: ASGIApp,
        model_id: Callable[[], str],
        max_body_bytes: int,
        api_key: SecretStr | None = None,
    ) -> None:
        self._app = app
        self._model_id = model_id
        self._max_bytes = max_body_bytes
        self._key = api_key.get_secret_value().encode() if api_key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})[STATE_REQUEST_ID] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if _ROUTE not in present:
                    headers.append((_ROUTE, b"local"))
                if _MODEL not in present:
                    headers.append((_MODEL, self._model_id().encode()))
                if _REASON not in present:
                    headers.append((_REASON, b"none"))
                headers.append((_REQUEST_ID, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        if self._key is not None and scope["path"] != "/health" and not self._authorized(scope):
            await self._refuse(scope, send_with_headers, _UNAUTHORIZED)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self._app(scope, receive, send_with_headers)
            return
        body = await self._read_body(scope, receive, send_with_headers)
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

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole request body, or None when it was refused or the client left."""
        declared = _content_length(scope)
        if declared is not None and declared > self._max_bytes:
            await self._refuse(scope, send, self._too_large(declared))
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_bytes:
                await self._refuse(scope, send, self._too_large(size))
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _authorized(self, scope: Scope) -> bool:
        """Whether the request carries the API key (bearer token or ``x-api-key``)."""
        assert self._key is not None
        sent = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                sent = value[7:].strip()
            elif name == b"x-api-key":
                sent = value.strip()
        # Constant time: how much of a guess matched must not show in how long it took.
        return hmac.compare_digest(sent, self._key)

    def _too_large(self, size: int) -> WireError:
        message = (
            f"request body is {size:,} bytes, over the limit of {self._max_bytes:,}; "
            f"send less, or raise HYBRID_SERVER__MAX_BODY_BYTES"
        )
        return WireError(413, message, "invalid_request_error", "request_too_large")

    async def _refuse(self, scope: Scope, send: Send, error: WireError) -> None:
        body = json.dumps(error.body(shape_for_path(scope["path"]))).encode()
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *((name.lower().encode(), value.encode()) for name, value in error.headers().items()),
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
