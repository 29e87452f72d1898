"""What every generating route does first: read the routing header and start an answer."""

from __future__ import annotations

from fastapi import Request

from hybrid.api.state import app_state
from hybrid.errors import InvalidRequestError
from hybrid.generation import GenerationRequest
from hybrid.routing.answer import ROUTE_OVERRIDES
from hybrid.routing.dispatcher import Answer, RouteOverride
from hybrid.service import answering
from hybrid.service.recorded import Api

ROUTE_HEADER = "x-hybrid-route"


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
