"""The generating endpoints, served without FastAPI's routing and dependency machinery.

On the cloud path hybrid's whole overhead is about a millisecond, and FastAPI's layers (its
exception and exit-stack middlewares, the router walk, dependency solving, reading the body as
JSON and then validating it) are a fair share of it.  :class:`DirectRoutes` sends
``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/messages`` straight to the same
route functions FastAPI has registered, with the body validated from its bytes by pydantic in
one step, and every failure turned into the same response :func:`hybrid.api.errors.response_for`
gives FastAPI's handlers.  Everything else (other methods on these paths included) goes to
FastAPI as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hybrid.api.errors import response_for

Body = TypeVar("Body", bound=BaseModel)

LARGE_BODY_BYTES = 256 * 1024
"""Bodies from this size up are parsed on a worker thread: pydantic takes about 2 ms a
megabyte, which would hold the event loop (and ``/health``) for a multi-megabyte prompt."""


def parse_body(model: type[Body], raw: bytes) -> Body:
    """Read a request body from its bytes into ``model``: how every route reads its body.

    pydantic's parser validates in the same pass, and refuses JSON nested deeper than it can
    walk with a ``json_invalid`` error, where ``json.loads`` would raise ``RecursionError``.

    Raises:
        RequestValidationError: The body is not JSON, or not what ``model`` describes.
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc


async def read_body(model: type[Body], raw: bytes) -> Body:
    """:func:`parse_body`, on a worker thread for a body of :data:`LARGE_BODY_BYTES` or more.

    Raises:
        RequestValidationError: The body is not JSON, or not what ``model`` describes.
    """
    if len(raw) < LARGE_BODY_BYTES:
        return parse_body(model, raw)  # a thread hop would cost more than the parse
    return await asyncio.to_thread(parse_body, model, raw)


@dataclass(frozen=True)
class DirectRoute(Generic[Body]):
    """A route served directly.

    Attributes:
        body: The request body's model.
        endpoint: The route function, as FastAPI would call it.
    """

    body: type[Body]
    endpoint: Callable[[Body, Request], Awaitable[Response]]


class DirectRoutes:
    """Serves some ``POST`` routes itself and passes everything else on (pure ASGI).

    Args:
        app: The application for every other request.
        routes: Path to route.
    """

    def __init__(self, app: ASGIApp, routes: Mapping[str, DirectRoute[Any]]) -> None:
        self._app = app
        self._routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self._routes.get(scope["path"])
        if route is None:
            await self._app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            body = await read_body(route.body, await request.body())
            response = await route.endpoint(body, request)
        except Exception as exc:
            response = response_for(request, exc)
        await response(scope, receive, send)
