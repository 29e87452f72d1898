"""Starting an answer the way the server does: decided, started, accounted, learnt from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybrid.errors import HybridError

if TYPE_CHECKING:
    from hybrid.generation import GenerationRequest
    from hybrid.routing.dispatcher import Answer, RouteOverride
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
        HybridError: Nothing could start the answer (recorded in the ledger first).
    """
    ticket = service.accountant.open(request.request_id, api, model, stream=request.stream)
    try:
        answer = await service.dispatcher.start(request, model=model, override=override)
    except HybridError as exc:
        await service.accountant.failed(ticket, request, exc)
        raise
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
