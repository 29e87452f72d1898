"""What every generating route does first: read the routing header and start an answer."""

from __future__ import annotations

from typing import cast

from fastapi import Request

from hybrid.api.accounting import Api
from hybrid.api.state import app_state
from hybrid.errors import HybridError, InvalidRequestError
from hybrid.generation import GenerationRequest
from hybrid.routing.dispatcher import Answer, RouteOverride

ROUTE_HEADER = "x-hybrid-route"
_OVERRIDES = ("auto", "local", "cloud")


def route_override(request: Request) -> RouteOverride | None:
    """The ``X-Hybrid-Route`` request header, validated.

    Raises:
        InvalidRequestError: The header holds something other than auto, local or cloud.
    """
    value = request.headers.get(ROUTE_HEADER)
    if value is None:
        return None
    value = value.strip().lower()
    if value not in _OVERRIDES:
        raise InvalidRequestError(
            f"X-Hybrid-Route must be one of auto, local, cloud (got {value!r})",
            param="X-Hybrid-Route",
        )
    return cast(RouteOverride, value)


async def start_answer(
    request: Request, generation_request: GenerationRequest, *, model: str | None
) -> Answer:
    """Start answering through the app's dispatcher, with the answer accounted for.

    Args:
        request: The HTTP request (for its headers and the app state).
        generation_request: The translated request.
        model: The model name the client asked for.

    Returns:
        The started answer with its route, model and reason; its generation writes the
        request's ledger record as it ends.

    Raises:
        HybridError: Nothing could start the answer (recorded in the ledger first).
    """
    state = app_state(request)
    api: Api = "anthropic" if request.scope["path"].startswith("/v1/messages") else "openai"
    ticket = state.accountant.open(
        generation_request.request_id, api, model, stream=generation_request.stream
    )
    try:
        answer = await state.dispatcher.start(
            generation_request, model=model, override=route_override(request)
        )
    except HybridError as exc:
        await state.accountant.failed(ticket, generation_request, exc)
        raise
    answer = await state.accountant.watch(ticket, answer, generation_request)
    if state.learner is not None:
        answer = state.learner.watch(answer, generation_request, api=api, model=model)
    return answer
