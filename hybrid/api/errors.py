"""The one place where errors become OpenAI-shaped HTTP responses.

The mapping is by exception type, never by message text.  Every error body is
``{"error": {"message", "type", "param", "code"}}``; no traceback ever reaches a client.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybrid.errors import (
    ContextLengthExceededError,
    GenerationError,
    HybridError,
    InvalidRequestError,
    ModelNotReadyError,
    QueueFullError,
)

log = logging.getLogger("hybrid.api")

# Seconds a client should wait before retrying while the model loads.
_LOADING_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class WireError:
    """An error as it goes on the wire."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    retry_after_s: float | None = None

    def body(self) -> dict[str, Any]:
        """OpenAI's error object."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def wire_error(exc: HybridError) -> WireError:
    """Map one of hybrid's errors to its status and OpenAI error fields."""
    message = str(exc)
    if isinstance(exc, ContextLengthExceededError):
        return WireError(
            400, message, "invalid_request_error", "context_length_exceeded", "messages"
        )
    if isinstance(exc, InvalidRequestError):
        return WireError(400, message, "invalid_request_error", None, exc.param)
    if isinstance(exc, QueueFullError):
        return WireError(
            429, message, "rate_limit_error", "rate_limit_exceeded", retry_after_s=exc.retry_after
        )
    if isinstance(exc, ModelNotReadyError):
        return WireError(
            503, message, "server_error", "model_not_ready", retry_after_s=_LOADING_RETRY_AFTER_S
        )
    if isinstance(exc, GenerationError):
        return WireError(500, message, "server_error", "generation_failed")
    return WireError(500, message, "server_error")


def error_response(error: WireError) -> JSONResponse:
    """The HTTP response for a wire error, with ``Retry-After`` when it applies."""
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into an OpenAI-shaped response."""

    async def on_hybrid_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HybridError)
        return error_response(wire_error(exc))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(_validation_error(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = (
                f"no route {request.method} {request.url.path}; see GET /v1/models and /health"
            )
            return error_response(WireError(404, message, "invalid_request_error", "not_found"))
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
            return error_response(
                WireError(405, message, "invalid_request_error", "method_not_allowed")
            )
        return error_response(WireError(exc.status_code, str(exc.detail), "invalid_request_error"))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = "internal error in hybrid; the server log has the details"
        return error_response(WireError(500, message, "server_error"))

    app.add_exception_handler(HybridError, on_hybrid_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def _validation_error(exc: RequestValidationError) -> WireError:
    errors = exc.errors()
    if not errors:
        return WireError(400, "invalid request body", "invalid_request_error")
    first = errors[0]
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
    message = f"invalid value for {param!r}: {first.get('msg', 'invalid')} (got {value!r:.80})"
    return WireError(400, message, "invalid_request_error", "invalid_value", param)


def _param_path(loc: list[str]) -> str:
    path = ""
    for part in loc:
        if part.isdigit():
            path += f"[{part}]"
        elif part in ("str", "list[ContentPart]", "list[str]", "function-after"):
            continue  # the name of a union branch pydantic tried, not a field
        else:
            path += f".{part}" if path else part
    return path
