"""ASGI middleware: the request id, hybrid's response headers, and the request body limit.

Pure ASGI rather than ``BaseHTTPMiddleware``, which buffers and re-wraps streaming responses: an
SSE stream must reach the client token by token, and a client disconnect must reach the route.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybrid.api.errors import WireError, shape_for_path

HEADER_ROUTE = "x-hybrid-route"
HEADER_MODEL = "x-hybrid-model"
HEADER_REQUEST_ID = "x-hybrid-request-id"
HEADER_REASON = "x-hybrid-reason"
STATE_REQUEST_ID = "hybrid_request_id"


def request_id_of(scope: Scope) -> str:
    """The id the middleware gave this request."""
    return str(scope["state"][STATE_REQUEST_ID])


class HybridHeadersMiddleware:
    """Gives each request an id and each response the ``X-Hybrid-*`` headers.

    A route that answered sets ``X-Hybrid-Route``, ``X-Hybrid-Model`` and ``X-Hybrid-Reason``
    itself, and an error sets its reason; the middleware fills in the rest (``/health``, ...), so
    every response carries all four.

    Args:
        app: The wrapped application.
        model_id: Returns the id of the local model (or what is configured, while loading).
    """

    def __init__(self, app: ASGIApp, model_id: Callable[[], str]) -> None:
        self._app = app
        self._model_id = model_id

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
                defaults = {
                    HEADER_ROUTE: "local",
                    HEADER_MODEL: self._model_id(),
                    HEADER_REASON: "none",
                    HEADER_REQUEST_ID: request_id,
                }
                for name, value in defaults.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_headers)


class BodyLimitMiddleware:
    """Refuses request bodies over a size limit with a 413 in OpenAI's error shape.

    The body is read (up to the limit) before the application runs, so an oversized upload is
    refused without the route ever seeing part of it.

    Args:
        app: The wrapped application.
        max_bytes: The largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self._app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self._max_bytes:
            await self._refuse(scope, send, declared)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_bytes:
                await self._refuse(scope, send, size)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self._app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, size: int) -> None:
        message = (
            f"request body is {size:,} bytes, over the limit of {self._max_bytes:,}; "
            f"send less, or raise HYBRID_SERVER__MAX_BODY_BYTES"
        )
        error = WireError(413, message, "invalid_request_error", "request_too_large")
        body = json.dumps(error.body(shape_for_path(scope["path"]))).encode()
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *((name.lower().encode(), value.encode()) for name, value in error.headers().items()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
