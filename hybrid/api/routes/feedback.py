"""``POST /v1/hybrid/feedback``: say whether the answer to a request was good.

The label is stored in the ledger (:mod:`hybrid.ledger.learning`) for
``hybrid calibrate --from-ledger``; a second label for the same request replaces the first.
What a label means depends on who answered:

- a **local** answer: ``good`` says the local model was good enough for the request, ``bad``
  that it was not; the refit learns from it;
- a **cloud** answer: it is kept, but says nothing about the local model (which never
  answered), so the refit does not use it.  A request the router kept local and also sent to
  the cloud for a shadow comparison has a ``shadow`` label of its own; a person's label on
  the local answer wins over it.

A refit learns from a label only while the ledger keeps the request's signal (its prompt
features: :mod:`hybrid.ledger.learning`).  A label it cannot learn from (a cloud answer, a
request the difficulty policy did not score, ``routing.learn.keep_signals = 0``, a signal
pruned since) is stored all the same, and the response says so (``usable: false``) and why,
with the setting to change where one would help.  A pruned signal's message names no daemon's
setting as the cause: a ledger shared by several daemons (``ledger.url``) is pruned by each of
them, to its own ``keep_signals`` (the newest scored requests of the whole ledger) and
``ledger.retention_days``.

A request refused before any model ran has no answer to label: 400.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hybrid.api.bodies import JsonBody
from hybrid.api.state import app_state
from hybrid.errors import InvalidRequestError, RequestNotFoundError
from hybrid.ledger.learning import Label
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore

router = APIRouter()

PATH = "/v1/hybrid/feedback"
MAX_NOTE_CHARS = 2000


class FeedbackRequest(BaseModel):
    """The body of ``POST /v1/hybrid/feedback``."""

    model_config = ConfigDict(strict=True, extra="forbid", title="FeedbackRequest")

    request_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            description="The request's id: the X-Hybrid-Request-Id header of its response.",
        ),
    ]
    good: bool = Field(description="Whether the answer was good enough.")
    note: Annotated[
        str | None,
        Field(max_length=MAX_NOTE_CHARS, description="Anything to remember about it."),
    ] = None


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "No request with this id in the ledger (never answered, or pruned).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}},
    }
}


@router.post(
    PATH,
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": FeedbackRequest.model_json_schema()}},
        }
    },
)
async def feedback(
    body: Annotated[FeedbackRequest, Depends(JsonBody(FeedbackRequest))], request: Request
) -> JSONResponse:
    """Label the answer to a request good or bad: ``{"request_id", "good", "note"?}``.

    Answers ``{"request_id", "good", "source": "feedback", "route", "about_local",
    "replaced", "usable", "message"}``: ``route`` is where the request was answered,
    ``about_local`` whether the label says something about the local model (a local answer),
    ``replaced`` whether an earlier label of the request was replaced, ``usable`` whether a
    refit can learn from the label (the ledger keeps the request's signal), ``message`` why it
    cannot and what to change (None when it can).  The label is stored either way.

    Raises:
        RequestValidationError: The body is not JSON, or not the object above.
        RequestNotFoundError: The ledger has no request with this id.
        InvalidRequestError: The request was refused before any model answered it.
    """
    state = app_state(request)
    request_id = body.request_id

    def look_up(store: LedgerStore) -> tuple[LedgerRecord | None, bool, bool]:
        answer = store.answer(request_id)
        earlier = any(label.source == "feedback" for label in store.labels(request_id))
        return answer, earlier, store.signal_kept(request_id)

    answer, earlier, signal_kept = await state.ledger.read(look_up)
    if answer is None:
        raise RequestNotFoundError(
            f"the ledger holds no request with id {request_id!r}: send the "
            f"X-Hybrid-Request-Id header of the response you are labelling (requests older "
            f"than ledger.retention_days are deleted)",
            request_id=request_id,
        )
    route = answer.route
    if route == "none":
        raise InvalidRequestError(
            f"request {request_id!r} was refused before any model answered it: there is no "
            f"answer to label",
            param="request_id",
        )
    state.ledger.learn_nowait(Label(request_id, "feedback", body.good, time.time(), note=body.note))
    unusable = _unusable(answer, signal_kept, state.settings.routing.learn.keep_signals)
    return JSONResponse(
        {
            "request_id": request_id,
            "good": body.good,
            "source": "feedback",
            "route": route,
            "about_local": route == "local",
            "replaced": earlier,
            "usable": unusable is None,
            "message": unusable,
        }
    )


def _unusable(answer: LedgerRecord, signal_kept: bool, keep_signals: int) -> str | None:
    """Why no refit can learn from a person's label on ``answer`` and what would change that;
    None when one can (a local answer whose signal the ledger keeps)."""
    kept = "the label is kept, but no refit can learn from it"
    if answer.route != "local":
        where = "LAN" if answer.route == "lan" else answer.route
        return f"a {where} answer says nothing about the local model: {kept}"
    if signal_kept:
        return None
    if keep_signals == 0:
        return (
            f"routing.learn.keep_signals is 0, so this daemon keeps no request's prompt "
            f"features: {kept}; set routing.learn.keep_signals above 0 to learn from labels "
            f"on the requests that follow"
        )
    if not any(v.policy == "difficulty" and v.score is not None for v in answer.verdicts):
        return (
            f"the difficulty policy did not score this request (the client, the routing mode "
            f"or another policy chose its route first, or no difficulty model was in use), so "
            f"its prompt features were not kept: {kept}"
        )
    if answer.status != "ok":
        return (
            f"the answer did not end normally ({answer.status}), so its prompt features were "
            f"not kept: {kept}"
        )
    # Which setting pruned it is not known: a ledger shared by several daemons (ledger.url) is
    # pruned to the keep_signals and the retention_days of each daemon that writes to it.
    return (
        f"the request's prompt features are no longer kept: a ledger keeps those of its newest "
        f"routing.learn.keep_signals scored requests only (counted over every daemon that "
        f"writes to it), and deletes those older than ledger.retention_days: {kept}; raise "
        f"routing.learn.keep_signals (and ledger.retention_days) on every daemon writing to "
        f"this ledger to learn from labels on older requests"
    )
