"""The admin API (``docs/events.md``): stats, the live event stream, the routing mode, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from hybrid import __version__
from hybrid.api.bodies import JsonBody
from hybrid.api.state import app_state
from hybrid.errors import InvalidRequestError
from hybrid.ledger.budget import day_start
from hybrid.ledger.totals import GROUP_BYS, GroupBy
from hybrid.routing.answer import MODES, Mode
from hybrid.service.events import CLOSED
from hybrid.service.service import Service
from hybrid.wire.sse import sse_comment, sse_event

router = APIRouter()

# A comment line this often keeps proxies from closing a quiet stream.
PING_INTERVAL_S = 15.0
PING = sse_comment("ping")


async def stats_snapshot(state: Service) -> dict[str, Any]:
    """The body of ``GET /v1/hybrid/stats``: today's and all-time totals, the labels each local
    model has for learning (by source), budget, mode, and whether the ledger is shared."""
    today = await state.ledger.totals(since=day_start(time.time()))
    all_time = await state.ledger.totals()
    labels = await state.ledger.read(lambda store: store.label_counts())
    return {
        "today": today.to_dict(),
        "all_time": all_time.to_dict(),
        "labels": [count.to_dict() for count in labels],
        "budget": state.accountant.budget.to_dict(),
        "mode": state.dispatcher.mode,
        "model": {"id": state.runtime.model_id, "state": state.runtime.state},
        "ledger": {
            "shared": state.settings.ledger.url is not None,
            "instance": state.ledger.instance,
        },
        "version": __version__,
    }


@router.get("/v1/hybrid/stats")
async def stats(
    request: Request,
    by: Annotated[
        str | None,
        Query(
            description="Also group the totals by this, as `hybrid stats --by` does.",
            json_schema_extra={"enum": list(GROUP_BYS)},
        ),
    ] = None,
) -> JSONResponse:
    """Totals for today (UTC) and all time, the budget and the mode.

    ``?by=route|model|reason|day|decided|instance`` adds ``by`` and ``groups``: ``{"today": [...],
    "all_time": [...]}``, each a list of ``{"key", "totals", "latency"}`` as ``hybrid stats
    --by`` prints them (``by=instance`` adds ``last_time``: the instance's newest record).

    Raises:
        InvalidRequestError: ``by`` is not one of those.
    """
    state = app_state(request)
    body = await stats_snapshot(state)
    if by is not None:
        if by not in GROUP_BYS:
            raise InvalidRequestError(
                f"by must be one of {', '.join(GROUP_BYS)} (got {by!r})", param="by"
            )
        body["by"] = by
        body["groups"] = {
            "today": await _groups(state, by, day_start(time.time())),
            "all_time": await _groups(state, by, None),
        }
        if by == "instance":  # when each daemon of a fleet last wrote a record
            newest = await state.ledger.read(lambda store: store.newest_by_instance())
            for group in (*body["groups"]["today"], *body["groups"]["all_time"]):
                group["last_time"] = newest.get(group["key"])
    return JSONResponse(body)


async def _groups(state: Service, by: GroupBy, since: float | None) -> list[dict[str, Any]]:
    groups = await state.ledger.read(lambda store: store.grouped(by, since))
    return [
        {"key": key, "totals": totals.to_dict(), "latency": latency.to_dict()}
        for key, totals, latency in groups
    ]


@router.get("/v1/hybrid/events")
async def events(request: Request) -> StreamingResponse:
    """Server-Sent Events: a snapshot first, then requests, hardware, budget and mode."""
    state = app_state(request)
    return StreamingResponse(
        _follow(state),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _follow(state: Service) -> AsyncIterator[bytes]:
    # Subscribe before reading the snapshot, so nothing falls between the two.
    with state.bus.follow() as queue:
        snapshot = await stats_snapshot(state)
        snapshot["recent"] = state.bus.recent
        snapshot["hardware"] = state.bus.hardware
        yield sse_event(snapshot, "snapshot")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), PING_INTERVAL_S)
            except TimeoutError:
                yield PING
                continue
            if event is CLOSED:
                return  # the server is shutting down; the client reconnects to the next one
            name, data = event
            yield sse_event(data, name)


class ModeRequest(BaseModel):
    """The body of ``POST /v1/hybrid/mode``; the route checks ``mode`` itself, for a message
    that lists the modes."""

    model_config = ConfigDict(strict=True)

    mode: str | None = None


# What the route accepts, which is narrower than what ModeRequest parses (see there).
_MODE_BODY = {
    "title": "ModeRequest",
    "type": "object",
    "required": ["mode"],
    "properties": {"mode": {"title": "Mode", "enum": list(MODES)}},
}


@router.post(
    "/v1/hybrid/mode",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _MODE_BODY}},
        }
    },
)
async def set_mode(
    body: Annotated[ModeRequest, Depends(JsonBody(ModeRequest))], request: Request
) -> JSONResponse:
    """Set the routing mode: ``{"mode": "auto" | "local-only" | "cloud-only"}``.

    Raises:
        RequestValidationError: The body is not JSON, or ``mode`` is not a string.
        InvalidRequestError: ``mode`` is missing or not one of the modes.
    """
    mode = body.mode
    if mode not in MODES:
        raise InvalidRequestError(
            f'send a JSON object {{"mode": ...}} with one of {", ".join(MODES)} (got {mode!r})',
            param="mode",
        )
    state = app_state(request)
    chosen: Mode = mode
    if state.dispatcher.mode != chosen:
        state.dispatcher.mode = chosen
        state.bus.publish("mode", {"mode": chosen})
    return JSONResponse({"mode": chosen})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    state = app_state(request)
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
