"""The one place where errors become OpenAI-shaped HTTP responses.

The mapping is by exception type, never by message text.  Every error body is
``{"error": {"message", "type", "param", "code"}}``; no traceback ever reaches a client.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hybrid.errors import (
    BudgetExceededError,
    ContextLengthExceededError,
    GenerationError,
    HybridError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    NoRouteError,
    PrivateDataError,
    ProviderError,
    ProviderRejectedError,
    QueueFullError,
    RequestNotFoundError,
)

log = logging.getLogger("hybrid.api")

# Seconds a client should wait before retrying while the model loads.
_LOADING_RETRY_AFTER_S = 5


ApiShape = Literal["openai", "anthropic"]

# Anthropic names its error types by status; hybrid's statuses map onto them.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


@dataclass(frozen=True)
class WireError:
    """An error as it goes on the wire, in either API's shape.

    Attributes:
        status: HTTP status.
        message: What happened and what to do.
        type: OpenAI's error type (``invalid_request_error``, ``server_error``, ...).
        code: OpenAI's error code, when there is one.
        param: The request field at fault, when there is one.
        retry_after_s: Seconds to wait before retrying (``Retry-After``), when known.
        should_retry: Whether a retry can help (``x-should-retry``), when hybrid knows.
        cause: A reason code for what caused the error (``openai:no_key``), when known.
    """

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    retry_after_s: float | None = None
    should_retry: bool | None = None
    cause: str | None = None

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reason codes of the error: ``error:<code>``, then its cause when known."""
        reason = f"error:{self.code or self.type}"
        return (reason, self.cause) if self.cause is not None else (reason,)

    def body(self, shape: ApiShape = "openai") -> dict[str, Any]:
        """The error object in OpenAI's or Anthropic's shape."""
        if shape == "anthropic":
            kind = _ANTHROPIC_TYPES.get(self.status, "api_error")
            return {"type": "error", "error": {"type": kind, "message": self.message}}
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """``Retry-After`` and ``x-should-retry`` when they apply, and the error as the reason."""
        headers = {"X-Hybrid-Reason": ";".join(self.reasons)}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        if self.should_retry is not None:
            headers["x-should-retry"] = "true" if self.should_retry else "false"
        return headers


def shape_for_path(path: str) -> ApiShape:
    """Which API's error shape a request path speaks."""
    return "anthropic" if path.startswith("/v1/messages") else "openai"


def wire_error(exc: HybridError) -> WireError:
    """Map one of hybrid's errors to its status and error fields, by type."""
    message = str(exc)
    if isinstance(exc, ContextLengthExceededError):
        return WireError(
            400, message, "invalid_request_error", "context_length_exceeded", "messages"
        )
    if isinstance(exc, RequestNotFoundError):
        return WireError(404, message, "invalid_request_error", "request_not_found", exc.param)
    if isinstance(exc, InvalidRequestError):
        return WireError(400, message, "invalid_request_error", None, exc.param)
    if isinstance(exc, ModelNotFoundError):
        return WireError(
            404, message, "invalid_request_error", "model_not_found", "model", cause=exc.cause
        )
    if isinstance(exc, QueueFullError):
        return WireError(
            429, message, "rate_limit_error", "rate_limit_exceeded", retry_after_s=exc.retry_after
        )
    if isinstance(exc, ModelNotReadyError):
        return WireError(
            503, message, "server_error", "model_not_ready", retry_after_s=_LOADING_RETRY_AFTER_S
        )
    if isinstance(exc, PrivateDataError):
        return WireError(
            503, message, "server_error", "private_data_kept_local", should_retry=exc.should_retry
        )
    if isinstance(exc, BudgetExceededError):
        # OpenAI's own answer when an account is out of quota; retrying does not help.
        return WireError(
            429, message, "insufficient_quota", "insufficient_quota", should_retry=False
        )
    if isinstance(exc, NoRouteError):
        return WireError(503, message, "server_error", "no_route", should_retry=exc.should_retry)
    if isinstance(exc, ProviderRejectedError):
        status = exc.status if exc.status is not None and 400 <= exc.status < 500 else 400
        return WireError(status, message, "invalid_request_error", "upstream_rejected")
    if isinstance(exc, ProviderError):
        return WireError(
            502, message, "server_error", f"upstream_{exc.reason}", should_retry=exc.retryable
        )
    if isinstance(exc, GenerationError):
        return WireError(500, message, "server_error", "generation_failed")
    return WireError(500, message, "server_error")


def error_response(error: WireError, shape: ApiShape = "openai") -> JSONResponse:
    """The HTTP response for a wire error, in the shape of the API the client speaks."""
    return JSONResponse(error.body(shape), status_code=error.status, headers=error.headers())


def response_for(request: Request, exc: Exception) -> Response:
    """The response for any failure of a route, in the shape of the API the client speaks.

    The one mapping both FastAPI's exception handlers and the direct routes
    (:mod:`hybrid.api.direct`) use.
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
