"""Why an attempt failed, whether to try again, and how long to wait first.

A failed attempt becomes one of the ProviderError subclasses of :mod:`hybrid.errors`: its type
says what happened and its ``retryable`` flag whether the same request may succeed later.
Retries happen only before the first byte of an answer reached the client: a retry after that
would repeat or splice text the client already has.
"""

from __future__ import annotations

import json
import math
import random
import re
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx2
from pydantic import SecretStr

from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.errors import (
    ProviderAuthError,
    ProviderConnectTimeoutError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ProviderUnreachableError,
)

# An upstream error message is quoted to the user, but not at any length.
_MAX_MESSAGE_CHARS = 500

# The (remaining, reset) header pairs of the limits a provider counts: OpenAI's (and compatible
# servers') resets are durations ("6m0s"), Anthropic's RFC 3339 timestamps.
_RATE_LIMIT_HEADERS = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    *(
        (f"anthropic-ratelimit-{limit}-remaining", f"anthropic-ratelimit-{limit}-reset")
        for limit in ("requests", "tokens", "input-tokens", "output-tokens")
    ),
)
# A Go duration as OpenAI writes it: "1h2m3.5s", "6m0s", "20ms".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_DURATION = re.compile(f"(?:{_DURATION_PART.pattern})+")
_DURATION_UNIT_S = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}


def retry_after_s(headers: Mapping[str, str], *, now: float) -> float | None:
    """How long the provider asked to wait, from its response headers.

    ``retry-after-ms`` (OpenAI, Anthropic) wins over ``retry-after``, which holds either
    seconds or an HTTP date.

    Args:
        headers: The response headers (case-insensitive lookup, as ``httpx2.Headers``).
        now: The current wall-clock time in epoch seconds, to turn a date into a delay.

    Returns:
        Seconds (0 or more), or None when neither header holds a usable value.
    """
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT, so read it as GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def rate_limit_wait_s(headers: Mapping[str, str], *, now: float) -> float | None:
    """How long a rate-limited (HTTP 429) response says to wait.

    What :func:`retry_after_s` reads comes first. Without it, the provider's rate-limit headers
    say when its limits reset: the wait is the reset of the limits that are used up (remaining
    ``0``; the latest of them, as all must reset), or, when no remaining header says which
    limit it is, the latest reset given. A value that does not parse is ignored.

    Args:
        headers: The response headers (case-insensitive lookup, as ``httpx2.Headers``).
        now: The current wall-clock time in epoch seconds, to turn a date into a delay.

    Returns:
        Seconds (0 or more), or None when no header holds a usable value.
    """
    asked = retry_after_s(headers, now=now)
    if asked is not None:
        return asked
    resets: list[float] = []
    exhausted: list[float] = []
    for remaining_name, reset_name in _RATE_LIMIT_HEADERS:
        reset = _reset_s(headers.get(reset_name), now=now)
        if reset is None:
            continue
        resets.append(reset)
        if _number(headers.get(remaining_name)) == 0:
            exhausted.append(reset)
    return max(exhausted or resets, default=None)


def _reset_s(value: str | None, *, now: float) -> float | None:
    """Seconds until a limit resets, from a duration (``6m0s``) or an RFC 3339 timestamp."""
    if value is None:
        return None
    text = value.strip()
    if _DURATION.fullmatch(text):
        seconds = sum(
            float(number) * _DURATION_UNIT_S[unit] for number, unit in _DURATION_PART.findall(text)
        )
        return seconds if math.isfinite(seconds) else None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:  # RFC 3339 always has an offset; read a bare time as UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def backoff_s(attempt: int, policy: ReliabilityPolicy, rng: random.Random) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): full jitter.

    Full jitter (uniform between zero and the exponential cap) spreads out the clients that
    failed together, so they do not all come back in the same instant.
    """
    cap = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1))
    return rng.uniform(0.0, cap)


def retry_delay(
    error: ProviderError, attempt: int, policy: ReliabilityPolicy, rng: random.Random
) -> float | None:
    """Whether to try the same provider again after a failed attempt, and after how long.

    Args:
        error: Why attempt number ``attempt`` failed.
        attempt: The attempt that just failed, 1-based.
        policy: The provider's reliability policy.
        rng: Randomness for the jitter.

    Returns:
        Seconds to wait before the next attempt, or None to give up now: the error is not
        retryable, the attempts are used up, or the provider asked for a longer wait than
        ``max_retry_after_s`` (another provider should take the request instead).
    """
    if not error.retryable or attempt >= policy.max_attempts:
        return None
    if error.retry_after is not None:
        if error.retry_after > policy.max_retry_after_s:
            return None
        return error.retry_after
    return backoff_s(attempt, policy, rng)


def status_error(
    provider: str,
    response: httpx2.Response,
    body: bytes,
    *,
    has_key: bool,
    secret: SecretStr | None,
    now: float,
) -> ProviderError:
    """Translate an unsuccessful HTTP response into the error a caller can act on.

    429 is rate limiting, 401/403 the key, another 4xx the request itself (with the provider's
    own message), 5xx the provider's health.  A 3xx is not followed, so that the key never
    travels to another host.  ``x-should-retry: false`` makes any of them final.

    Args:
        provider: The provider's name.
        response: The response, its headers read.
        body: Its body, or the start of it.
        has_key: Whether a key was sent (a 401 without one needs a different fix).
        secret: The key, to scrub from the provider's message should it echo it.
        now: Wall-clock epoch seconds, for a ``Retry-After`` date or a rate limit's reset.

    Returns:
        The error, with ``status`` and ``retry_after`` filled in.
    """
    status = response.status_code
    detail = upstream_message(body, secret=secret)
    said = f": {detail}" if detail else ""
    error: ProviderError
    if status == 429:
        error = ProviderRateLimitedError(
            provider,
            f"rate limited (HTTP 429{said}); wait a little, or check the account's rate limits "
            f"and quota",
            status=status,
            retry_after=rate_limit_wait_s(response.headers, now=now),
        )
    elif status == 401:
        hint = (
            "check that the key is valid and belongs to this provider"
            if has_key
            else "it needs an API key and none is configured"
        )
        error = ProviderAuthError(
            provider, f"the API key was refused (HTTP 401{said}); {hint}", status=status
        )
    elif status == 403:
        error = ProviderAuthError(
            provider,
            f"access denied (HTTP 403{said}); check the key's permissions and that it may use "
            f"this model",
            status=status,
        )
    elif 400 <= status < 500:
        error = ProviderRejectedError(
            provider,
            detail or f"the request was rejected with HTTP {status} and no explanation",
            status=status,
        )
    elif status >= 500:
        error = ProviderUnavailableError(
            provider,
            f"the provider failed (HTTP {status}{said}); it is down or overloaded, retry later",
            status=status,
            retry_after=retry_after_s(response.headers, now=now),
        )
    else:
        location = response.headers.get("location", "nowhere")
        error = ProviderProtocolError(
            provider,
            f"answered HTTP {status} (to {location}) instead of an answer; hybrid follows no "
            f"redirects so that the key stays with its host: set the base URL to the API's "
            f"final address",
            status=status,
        )
        error.retryable = False  # the same redirect would come back
    if response.headers.get("x-should-retry", "").strip().lower() == "false":
        error.retryable = False  # the provider knows better than the status code
    return error


def transport_error(
    provider: str,
    host: str,
    exc: httpx2.HTTPError,
    *,
    connect_timeout_s: float,
    mid_answer: bool,
) -> ProviderError:
    """Translate an httpx2 failure; the message names the host, never the key.

    Args:
        provider: The provider's name.
        host: The host that was called.
        exc: What httpx2 raised.
        connect_timeout_s: The connect timeout in force, to quote it.
        mid_answer: Whether part of the answer had already gone to the client.

    Returns:
        ProviderTimeoutError for timeouts (ProviderConnectTimeoutError when no connection was
        made), ProviderProtocolError for an undecodable body,
        ProviderUnavailableError for refused, reset or broken connections.
    """
    cut = (
        "; the answer is incomplete, retry the request"
        if mid_answer
        else "; check the base URL and the network, or retry later"
    )
    if isinstance(exc, httpx2.ConnectTimeout):
        return ProviderConnectTimeoutError(
            provider,
            f"could not connect to {host} within {connect_timeout_s:g} s (connect timeout){cut}",
        )
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderTimeoutError(
            provider, f"the connection to {host} timed out ({type(exc).__name__}){cut}"
        )
    if isinstance(exc, httpx2.ConnectError):
        if _untrusted_certificate(exc):
            return ProviderUnavailableError(
                provider,
                f"the TLS certificate of {host} is not trusted ({exc}); if a private CA signs "
                f"it (a proxy that inspects TLS, a self-hosted server), point SSL_CERT_FILE at "
                f"that CA's PEM bundle",
            )
        return ProviderUnreachableError(provider, f"could not connect to {host} ({exc}){cut}")
    if isinstance(exc, httpx2.DecodingError):
        return ProviderProtocolError(
            provider, f"the response body could not be decoded ({exc}){cut}"
        )
    what = "broke mid-answer" if mid_answer else "failed"
    return ProviderUnavailableError(
        provider, f"the connection to {host} {what} ({type(exc).__name__}: {exc}){cut}"
    )


def _untrusted_certificate(exc: BaseException) -> bool:
    """Whether a failure comes from a server certificate that did not verify.

    The standard library's ``ssl.SSLCertVerificationError`` is somewhere down the chain of
    causes (httpx2 wraps its transport's error, which wraps the handshake's).
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def upstream_message(body: bytes, *, secret: SecretStr | None) -> str | None:
    """The provider's own error message from an error body, scrubbed of the key and shortened.

    Understands OpenAI's and Anthropic's ``{"error": {"message"}}``, plain ``{"error": "..."}``,
    ``{"message"}`` and FastAPI's ``{"detail"}`` (vLLM and friends), and plain text; an HTML
    error page (from a proxy) says nothing useful and gives None.
    """
    text = body.decode("utf-8", errors="replace").strip()
    message: str | None = None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
        if text and not text.startswith("<"):
            message = text
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        for candidate in (error, data.get("message"), data.get("detail")):
            if isinstance(candidate, str) and candidate.strip():
                message = candidate
                break
    if message is None:
        return None
    message = " ".join(message.split())
    if secret is not None and secret.get_secret_value():
        message = message.replace(secret.get_secret_value(), "[key]")
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + "..."
    return message


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number
