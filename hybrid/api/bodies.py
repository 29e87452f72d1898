"""How every route reads its JSON body: from its bytes, validated by pydantic in one step.

FastAPI's own body handling parses the JSON into Python objects and then validates them, two
passes over a body that may be megabytes of prompt.  A route here declares its body as a
:class:`JsonBody` dependency instead: the raw bytes go to ``model_validate_json`` once, on a
worker thread when they are large, and a body that is not JSON or not the model is a
``RequestValidationError``, which :mod:`hybrid.api.errors` turns into the API's 400.
:mod:`hybrid.api.openapi` documents each such body under ``requestBody``, as FastAPI would.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

Body = TypeVar("Body", bound=BaseModel)

LARGE_BODY_BYTES = 256 * 1024
"""Bodies from this size up are parsed on a worker thread: pydantic takes about 2 ms a
megabyte, which would hold the event loop (and ``/health``) for a multi-megabyte prompt."""


def parse_body(model: type[Body], raw: bytes) -> Body:
    """Read a request body from its bytes into ``model``.

    pydantic's parser validates in the same pass, and refuses JSON nested deeper than it can
    walk with a ``json_invalid`` error, where ``json.loads`` would raise ``RecursionError``.

    Args:
        model: The body's pydantic model.
        raw: The body as it arrived.

    Returns:
        The validated body.

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


class JsonBody(Generic[Body]):
    """A route's JSON body, as a FastAPI dependency:
    ``body: Annotated[Model, Depends(JsonBody(Model))]``.

    Args:
        model: The body's pydantic model; :mod:`hybrid.api.openapi` documents it.
    """

    def __init__(self, model: type[Body]) -> None:
        self.model = model

    async def __call__(self, request: Request) -> Body:
        """Read the request's body (already buffered by the middleware) into the model.

        Raises:
            RequestValidationError: The body is not JSON, or not what the model describes.
        """
        return await read_body(self.model, await request.body())
