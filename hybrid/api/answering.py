"""What every generating route does: read the routing header, start an answer, and send it
back whole or streamed (:func:`respond`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response

from hybrid.api.disconnect import unless_disconnected
from hybrid.api.keepalive import stream_answer
from hybrid.api.responses import JsonResponse
from hybrid.api.state import app_state
from hybrid.backend import Completion, collect
from hybrid.errors import HybridError, InvalidRequestError
from hybrid.generation import GenerationRequest
from hybrid.routing.answer import ROUTE_OVERRIDES, Answer, RouteOverride
from hybrid.service import answering
from hybrid.service.recorded import Api

ROUTE_HEADER = "x-hybrid-route"

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Headers of every streamed answer (beside its own ``X-Hybrid-*``)."""


def route_override(request: Request) -> RouteOverride | None:
    """The ``X-Hybrid-Route`` request header, validated.

    Raises:
        InvalidRequestError: The header holds something other than auto, local, cloud or lan.
    """
    value = request.headers.get(ROUTE_HEADER)
    if value is None:
        return None
    value = value.strip().lower()
    if value not in ROUTE_OVERRIDES:
        raise InvalidRequestError(
            f"X-Hybrid-Route must be one of {', '.join(ROUTE_OVERRIDES)} (got {value!r})",
            param="X-Hybrid-Route",
        )
    return value


async def start_answer(
    request: Request, generation_request: GenerationRequest, *, model: str | None
) -> Answer:
    """Start answering an HTTP request through the app's service (see
    :func:`hybrid.service.answering.start_answer`).

    Args:
        request: The HTTP request (its path says the API; its headers may pin the route).
        generation_request: The translated request.
        model: The model name the client asked for.

    Returns:
        The started, accounted answer.

    Raises:
        HybridError: The route header is malformed, or nothing could start the answer
            (recorded in the ledger first, either way).
    """
    service = app_state(request)
    api: Api = "anthropic" if request.scope["path"].startswith("/v1/messages") else "openai"
    try:
        override = route_override(request)
    except InvalidRequestError as exc:
        await answering.refuse(service, generation_request, exc, api=api, model=model)
        raise
    return await answering.start_answer(
        service, generation_request, api=api, model=model, override=override
    )


async def respond(
    request: Request,
    generation_request: GenerationRequest,
    *,
    model: str | None,
    stream: bool,
    frames: Callable[[Answer], AsyncGenerator[bytes, None]],
    error_event: Callable[[HybridError], bytes],
    whole: Callable[[Answer, Completion], Mapping[str, Any]],
) -> Response:
    """Answer an HTTP request, in one JSON body or as a stream of SSE events.

    Args:
        request: The HTTP request.
        generation_request: The translated request.
        model: The model name the client asked for.
        stream: Whether the client asked for a stream.
        frames: The API's SSE events of a started answer (a stream).
        error_event: The API's SSE error event for a failure after the stream began.
        whole: The API's JSON body of a started answer read to its end.

    Returns:
        The response.  A whole answer's stops its work if the client leaves first: while it
        starts (a cascade reading the local answer, a cloud call) as while it is read.

    Raises:
        HybridError: Nothing could start the answer (:func:`start_answer`).
        ClientDisconnect: The client left before a whole answer was read.
    """
    starting = start_answer(request, generation_request, model=model)
    if stream:
        return await stream_answer(
            starting,
            frames,
            error_event,
            headers=SSE_HEADERS,
            keep_alive_s=app_state(request).settings.cloud.stream_keep_alive_s,
        )
    answer, completion = await unless_disconnected(request.receive, _read_whole(starting))
    return JsonResponse(whole(answer, completion), headers=answer.headers())


async def _read_whole(starting: Coroutine[Any, Any, Answer]) -> tuple[Answer, Completion]:
    """Start an answer and read it to its end (which closes it)."""
    answer = await starting
    return answer, await collect(answer.generation)
