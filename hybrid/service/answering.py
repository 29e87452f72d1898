"""Starting an answer the way the server does: decided, started, accounted, learnt from.

A request whose ``model`` names a local model other than the one served (any name
``GET /v1/models`` lists from ``GET /v1/hybrid/model``'s ``available``) is served by that model:
the server switches to it first, as Ollama does with one model loaded, and the answer's reason
ends in ``local:switched`` when it had to load.  Names the cloud providers resolve keep their
meaning; only a name they would refuse as unknown is looked up among the local models.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from hybrid.errors import HybridError, LocalModelNotFoundError, ModelNotFoundError

if TYPE_CHECKING:
    from hybrid.generation import GenerationRequest
    from hybrid.routing.answer import Answer, RouteOverride, RoutePlan
    from hybrid.service.recorded import Api
    from hybrid.service.service import Service


async def start_answer(
    service: Service,
    request: GenerationRequest,
    *,
    api: Api,
    model: str | None,
    override: RouteOverride | None = None,
) -> Answer:
    """Start answering through the service's dispatcher, with the answer accounted for.

    Args:
        service: The service that answers.
        request: The translated request.
        api: The API the client speaks (its ledger record says so).
        model: The model name the client asked for.
        override: The route the client pinned (``X-Hybrid-Route``), if any.

    Returns:
        The started answer with its route, model and reason; its generation writes the
        request's ledger record as it ends, and tells the learner once it was read whole.

    Raises:
        HybridError: Nothing could start the answer, or switching to the local model it
            names failed (recorded in the ledger first).
        asyncio.CancelledError: The start was cancelled (its client left): recorded as a
            cancelled answer first.
    """
    ticket = service.accountant.open(request.request_id, api, model, stream=request.stream)
    plan: RoutePlan | None = None
    try:
        switched = await _serve_named(service, model)
        # Once the named local model is served, the request is the local model's.
        named = "local" if switched is not None else model
        plan = await service.dispatcher.plan(request, model=named, override=override)
        answer = await service.dispatcher.start_planned(request, plan)
    except HybridError as exc:
        await service.accountant.failed(ticket, request, exc, plan)
        raise
    except asyncio.CancelledError as exc:
        local_model = service.runtime.model_id
        service.accountant.abandoned(ticket, request, exc, plan, local_model=local_model)
        raise
    if switched:
        answer = dataclasses.replace(answer, reason=f"{answer.reason};local:switched")
    answer = await service.accountant.watch(ticket, answer, request)
    return service.learner.watch(answer, request, api=api, model=model)


async def refuse(
    service: Service,
    request: GenerationRequest,
    error: HybridError,
    *,
    api: Api,
    model: str | None,
) -> None:
    """Record a request turned away before the dispatcher saw it (a malformed route header).

    Args:
        service: The service that would have answered.
        request: The translated request.
        error: Why it was turned away; the caller raises it next.
        api: The API the client speaks.
        model: The model name the client asked for.
    """
    ticket = service.accountant.open(request.request_id, api, model, stream=request.stream)
    await service.accountant.failed(ticket, request, error)


async def _serve_named(service: Service, model: str | None) -> bool | None:
    """Switch to the local model ``model`` names, when no alias or provider knows the name.

    Returns:
        None when the name is an alias, the served model or a cloud model (nothing to do);
        otherwise whether a switch loaded the model (False: served already, by another name).

    Raises:
        ModelNotFoundError: Neither a provider nor a local model has that name.
        InvalidRequestError: The name is a path, or the model is broken or does not fit.
        ModelNotReadyError: Loading the model failed.
    """
    if not model:
        return None
    try:
        service.dispatcher.names.resolve(model, local_id=service.runtime.model_id)
    except ModelNotFoundError as unknown:
        try:
            return await service.switching.serve(model)
        except LocalModelNotFoundError:
            raise unknown from None  # the error that lists the cloud models and aliases too
    return None
