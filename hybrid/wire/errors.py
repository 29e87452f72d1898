"""Errors as they go on the wire: hybrid's errors mapped to a status and each API's error fields.

``wire_error`` maps a :class:`~hybrid.errors.HybridError` by type; :class:`WireError` gives the
body in OpenAI's or Anthropic's shape, the headers (``Retry-After``, ``x-should-retry``,
``X-Hybrid-Reason``) and the reason codes the ledger records.  No web framework here: the API
turns a ``WireError`` into a response, and the service records its reasons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from hybrid.errors import (
    BudgetExceededError,
    ContextLengthExceededError,
    GenerationError,
    HybridError,
    InvalidRequestError,
    LedgerUnavailableError,
    ModelNotFoundError,
    ModelNotReadyError,
    NoRouteError,
    PrivateDataError,
    ProviderError,
    ProviderRejectedError,
    QueueFullError,
    RequestNotFoundError,
    SwitchInProgressError,
)

# Seconds a client should wait before retrying while the model loads.
_LOADING_RETRY_AFTER_S = 5
# ... and while a shared ledger database cannot be reached.
_LEDGER_RETRY_AFTER_S = 5


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
    if isinstance(exc, SwitchInProgressError):
        return WireError(409, message, "invalid_request_error", "switch_in_progress", exc.param)
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
        # OpenAI's own answer when an account is out of quota; retrying does not help.  The
        # cap that stopped it (budget:daily_cap, budget:unavailable, ...) is its cause.
        return WireError(
            429,
            message,
            "insufficient_quota",
            "insufficient_quota",
            should_retry=False,
            cause=exc.cap,
        )
    if isinstance(exc, NoRouteError):
        if exc.rate_limited:
            # Every provider rate-limited it, now or by the requests that opened its circuit:
            # say so as they did (429, with their wait), so that a client backs off instead of
            # retrying at once.  The first failure is the
            # cause, which tells it from a full local queue in the ledger.
            return WireError(
                429,
                message,
                "rate_limit_error",
                "rate_limit_exceeded",
                retry_after_s=exc.retry_after,
                should_retry=exc.should_retry,
                cause=exc.failures[0] if exc.failures else None,
            )
        return WireError(
            503,
            message,
            "server_error",
            "no_route",
            retry_after_s=exc.retry_after,
            should_retry=exc.should_retry,
        )
    if isinstance(exc, ProviderRejectedError):
        status = exc.status if exc.status is not None and 400 <= exc.status < 500 else 400
        return WireError(status, message, "invalid_request_error", "upstream_rejected")
    if isinstance(exc, ProviderError):
        return WireError(
            502, message, "server_error", f"upstream_{exc.reason}", should_retry=exc.retryable
        )
    if isinstance(exc, GenerationError):
        return WireError(500, message, "server_error", "generation_failed")
    if isinstance(exc, LedgerUnavailableError):
        # The shared database is down or unreachable: it passes, and nothing was lost.
        return WireError(
            503, message, "server_error", "ledger_unavailable", retry_after_s=_LEDGER_RETRY_AFTER_S
        )
    return WireError(500, message, "server_error")
