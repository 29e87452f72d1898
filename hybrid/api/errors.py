"""The one place where errors become HTTP responses, in OpenAI's shape or Anthropic's.

The mapping is by exception type, never by message text.  A route's failure reaches
:func:`response_for` through FastAPI's exception handlers (:func:`install_error_handlers`); the
middleware's refusals, which happen before any route runs, are rendered by the same
:func:`error_response`.  Every error body is ``{"error": {"message", "type", "param", "code"}}``
(Anthropic's ``{"type": "error", "error": {"type", "message"}}`` on ``/v1/messages``); no
traceback ever reaches a client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hybrid.errors import HybridError
from hybrid.wire.errors import ApiShape, WireError, shape_for_path, wire_error

log = logging.getLogger("hybrid.api")


def error_response(error: WireError, shape: ApiShape = "openai") -> JSONResponse:
    """The HTTP response for a wire error, in the shape of the API the client speaks."""
    return JSONResponse(error.body(shape), status_code=error.status, headers=error.headers())


def response_for(request: Request, exc: Exception) -> Response:
    """The response for any failure of a route, in the shape of the API the client speaks.

    What every exception handler of :func:`install_error_handlers` answers.
    """
    shape = shape_for_path(request.url.path)
    if isinstance(exc, HybridError):
        return error_response(wire_error(exc), shape)
    if isinstance(exc, RequestValidationError):
        return error_response(_validation_error(exc), shape)
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            message = (
                f"no route {request.method} {request.url.path}; see GET /v1/models and /health"
            )
            error = WireError(404, message, "invalid_request_error", "not_found")
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
            error = WireError(405, message, "invalid_request_error", "method_not_allowed")
        else:
            error = WireError(exc.status_code, str(exc.detail), "invalid_request_error")
        return error_response(error, shape)
    if isinstance(exc, ClientDisconnect):
        # Nobody is left to read an answer; the generation was already cancelled.
        log.info("client went away before %s %s was answered", request.method, request.url.path)
        return Response(status_code=499)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    message = "internal error in hybrid; the server log has the details"
    return error_response(WireError(500, message, "server_error"), shape)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into an OpenAI-shaped response."""

    async def handle(request: Request, exc: Exception) -> Response:
        return response_for(request, exc)

    for kind in (
        HybridError,
        RequestValidationError,
        StarletteHTTPException,
        ClientDisconnect,
        Exception,
    ):
        app.add_exception_handler(kind, handle)


def _validation_error(exc: RequestValidationError) -> WireError:
    errors = exc.errors()
    if not errors:
        return WireError(400, "invalid request body", "invalid_request_error")
    # Of a union's branches, the one that got furthest into the value says what is wrong with
    # it; "is not a string" about a list of content parts does not.
    first = max(errors, key=lambda error: len(error.get("loc", ())))
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return WireError(
            400,
            f"the request body is not valid JSON ({detail}); send a JSON object",
            "invalid_request_error",
            "invalid_json",
        )
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = _param_path(loc)
    if not param:
        message = f"the request body must be a JSON object: {first.get('msg', 'invalid')}"
        return WireError(400, message, "invalid_request_error")
    if first.get("type") == "missing":
        message = f"missing required parameter: {param!r}"
        return WireError(400, message, "invalid_request_error", "missing_required_parameter", param)
    value = first.get("input")
    # A validator's own message, without pydantic's "Value error, " in front of it.
    reason = first.get("ctx", {}).get("error") if first.get("type") == "value_error" else None
    message = f"invalid value for {param!r}: {reason or first.get('msg', 'invalid')} "
    message += f"(got {value!r:.80})"
    return WireError(400, message, "invalid_request_error", "invalid_value", param)


def _param_path(loc: list[str]) -> str:
    path = ""
    for part in loc:
        if part.isdigit():
            path += f"[{part}]"
        elif part in ("str", "function-after") or "[" in part:
            continue  # the name of a union branch pydantic tried (list[str], ...), not a field
        else:
            path += f".{part}" if path else part
    return path
