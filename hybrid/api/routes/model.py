"""``GET`` and ``POST /v1/hybrid/model``: the served local model, and switching it by name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from hybrid.api.bodies import JsonBody
from hybrid.api.state import app_state
from hybrid.errors import InvalidRequestError

router = APIRouter()


class ModelRequest(BaseModel):
    """The body of ``POST /v1/hybrid/model``; the route checks ``model`` itself, for a message
    that says what to send."""

    model_config = ConfigDict(strict=True)

    model: str | None = None
    wait: bool = False


# What the route accepts, which is narrower than what ModelRequest parses (see there).
_MODEL_BODY = {
    "title": "ModelRequest",
    "type": "object",
    "required": ["model"],
    "properties": {
        "model": {
            "title": "Model",
            "type": "string",
            "pattern": "\\S",
            "description": "A name GET /v1/hybrid/model lists under `available`.",
        },
        "wait": {
            "title": "Wait",
            "type": "boolean",
            "default": False,
            "description": "Answer once the switch has ended (200) instead of at once (202).",
        },
    },
}


@router.get("/v1/hybrid/model")
async def get_model(request: Request) -> JSONResponse:
    """The local model: ``state`` (``loading``, ``ready``, ``switching``, ``unloaded``,
    ``failed``, ``closed``), ``model``, ``path``, ``loading`` (the switch or reload in
    progress: ``model``, ``path``, ``reason``, ``started``), ``error``, ``switch_error``,
    ``keep_alive_s``, ``load_s``, and ``available``: the models it can switch to
    (``name``, ``path``, ``size_bytes``, ``quantization``, ``chat_template``, ``serving``)."""
    state = app_state(request)
    available = await state.switching.available()
    body = state.runtime.status().to_json()
    body["available"] = [model.to_json() for model in available]
    return JSONResponse(body)


@router.post(
    "/v1/hybrid/model",
    status_code=202,
    responses={
        200: {"description": "With `wait`: the switch has ended (see `state`, `switch_error`)."},
        202: {"description": "The new model is loading; the old one serves until it is ready."},
        404: {"description": "No model of that name; the message lists those that exist."},
        409: {"description": "Another model is loading (`switch_in_progress`)."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _MODEL_BODY}},
        }
    },
)
async def switch_model(
    body: Annotated[ModelRequest, Depends(JsonBody(ModelRequest))], request: Request
) -> JSONResponse:
    """Switch the local model: ``{"model": NAME, "wait": false}``.

    The new model is planned for this machine and loaded while the old one keeps serving;
    requests already running or queued finish on the old one, later ones go to the new one,
    and the old one is then freed.  Answers 202 with the state (``switching``, and the model
    under ``loading``) at once, or with ``wait`` 200 once the switch has ended.

    Raises:
        InvalidRequestError: ``model`` is missing, a path, a broken file, or does not fit.
        LocalModelNotFoundError: No model has that name (404).
        SwitchInProgressError: Another model is loading (409).
        ModelNotReadyError: The server is shutting down (503).
    """
    if not body.model:
        raise InvalidRequestError(
            'send a JSON object {"model": NAME} naming a model GET /v1/hybrid/model lists',
            param="model",
        )
    state = app_state(request)
    status = await state.switching.switch(body.model, wait=body.wait)
    return JSONResponse(status.to_json(), status_code=200 if body.wait else 202)
