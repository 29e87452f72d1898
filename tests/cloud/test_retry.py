from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx2
import pytest
from pydantic import SecretStr

from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.cloud.retry import (
    backoff_s,
    rate_limit_wait_s,
    retry_after_s,
    retry_delay,
    status_error,
    transport_error,
    upstream_message,
)
from hybrid.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderConnectTimeoutError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)

NOW = datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "Mon, 10 Mar 2025 12:00:42 GMT"}, 42.0),
        ({"retry-after": "Mon, 10 Mar 2025 11:00:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after-ms": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(httpx2.Headers(headers), now=NOW) == expected


def test_retry_after_date_written_by_the_standard_library() -> None:
    when = datetime(2025, 3, 10, 12, 0, 3, tzinfo=UTC)
    headers = httpx2.Headers({"Retry-After": format_datetime(when, usegmt=True)})
    assert retry_after_s(headers, now=NOW) == 3.0


OPENAI_REQUESTS_USED_UP = {
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "2s",
    "x-ratelimit-remaining-tokens": "9000",
    "x-ratelimit-reset-tokens": "6m0s",
}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # The limit that is used up says when, not the longest reset.
        (OPENAI_REQUESTS_USED_UP, 2.0),
        (
            {
                "x-ratelimit-remaining-requests": "12",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "1h2m3.5s",
            },
            3723.5,
        ),
        # No remaining header says which limit: the longest reset.
        ({"x-ratelimit-reset-requests": "20ms", "x-ratelimit-reset-tokens": "0.5s"}, 0.5),
        (
            {
                "x-ratelimit-remaining-requests": "3",
                "x-ratelimit-reset-requests": "20ms",
                "x-ratelimit-remaining-tokens": "lots",
                "x-ratelimit-reset-tokens": "1m30s",
            },
            90.0,
        ),
        # Anthropic: RFC 3339 timestamps; both used up, so both must have reset.
        (
            {
                "anthropic-ratelimit-requests-remaining": "40",
                "anthropic-ratelimit-requests-reset": "2025-03-10T12:05:00Z",
                "anthropic-ratelimit-input-tokens-remaining": "0",
                "anthropic-ratelimit-input-tokens-reset": "2025-03-10T12:00:30Z",
                "anthropic-ratelimit-output-tokens-remaining": "0",
                "anthropic-ratelimit-output-tokens-reset": "2025-03-10T12:00:45Z",
            },
            45.0,
        ),
        (
            {
                "anthropic-ratelimit-tokens-remaining": "0",
                "anthropic-ratelimit-tokens-reset": "2025-03-10T13:00:12+01:00",
            },
            12.0,
        ),
        ({"anthropic-ratelimit-requests-reset": "2025-03-10T11:59:00Z"}, 0.0),
        # retry-after-ms, then retry-after, win over the resets.
        ({**OPENAI_REQUESTS_USED_UP, "retry-after": "7"}, 7.0),
        ({**OPENAI_REQUESTS_USED_UP, "retry-after": "7", "retry-after-ms": "1500"}, 1.5),
        # What does not parse is left out.
        ({**OPENAI_REQUESTS_USED_UP, "retry-after": "soon"}, 2.0),
        (
            {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "soon",
                "x-ratelimit-reset-tokens": "3s",
            },
            3.0,
        ),
        (
            {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "-2s",
                "anthropic-ratelimit-requests-reset": "tomorrow",
                "x-ratelimit-reset-tokens": "9" * 400 + "h",
            },
            None,
        ),
        ({"x-ratelimit-remaining-requests": "0"}, None),
        ({}, None),
    ],
)
def test_rate_limit_wait(headers: dict[str, str], expected: float | None) -> None:
    assert rate_limit_wait_s(httpx2.Headers(headers), now=NOW) == expected


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter() -> None:
    policy = ReliabilityPolicy(backoff_base_s=0.5, backoff_max_s=3.0)
    rng = random.Random(5)
    caps = [0.5, 1.0, 2.0, 3.0, 3.0]
    delays = [backoff_s(attempt, policy, rng) for attempt in range(1, 6)]
    assert all(0.0 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
    replay = random.Random(5)
    assert delays == [replay.uniform(0.0, cap) for cap in caps]


def test_retry_delay_decisions() -> None:
    policy = ReliabilityPolicy(max_attempts=3, max_retry_after_s=20.0)
    rng = random.Random(1)
    unavailable = ProviderUnavailableError("p", "down")
    assert retry_delay(unavailable, 1, policy, rng) is not None
    assert retry_delay(unavailable, 3, policy, rng) is None, "attempts are used up"
    assert retry_delay(ProviderAuthError("p", "bad key"), 1, policy, rng) is None
    assert retry_delay(ProviderRateLimitedError("p", "slow", retry_after=4.0), 1, policy, rng) == 4
    too_long = ProviderRateLimitedError("p", "slow", retry_after=21.0)
    assert retry_delay(too_long, 1, policy, rng) is None


def _response(status: int, payload: object = None, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, json=payload, headers=headers)


def test_status_errors_by_status() -> None:
    def error(status: int, payload: object = None, **headers: str) -> Exception:
        body = b"" if payload is None else httpx2.Response(200, json=payload).content
        return status_error(
            "p", _response(status, payload, **headers), body, has_key=True, secret=None, now=NOW
        )

    limited = error(429, None, **{"retry-after": "3"})
    assert isinstance(limited, ProviderRateLimitedError) and limited.retry_after == 3.0
    reset = error(429, None, **OPENAI_REQUESTS_USED_UP)
    assert isinstance(reset, ProviderRateLimitedError) and reset.retry_after == 2.0
    down = error(503, None, **OPENAI_REQUESTS_USED_UP)
    assert isinstance(down, ProviderUnavailableError)
    assert down.retry_after is None, "only a rate limit's wait comes from its limits' resets"
    assert isinstance(error(401), ProviderAuthError)
    assert isinstance(error(403), ProviderAuthError)
    rejected = error(404, {"error": {"message": "The model `gpt-9` does not exist"}})
    assert isinstance(rejected, ProviderRejectedError)
    assert str(rejected) == "p: The model `gpt-9` does not exist"
    assert rejected.status == 404
    assert isinstance(error(529), ProviderUnavailableError)
    final = error(503, None, **{"x-should-retry": "false"})
    assert isinstance(final, ProviderUnavailableError) and not final.retryable
    redirect = error(301, None, location="https://elsewhere.example/v1")
    assert isinstance(redirect, ProviderProtocolError) and not redirect.retryable
    assert "elsewhere.example" in str(redirect)


def test_a_401_without_a_key_says_to_configure_one() -> None:
    error = status_error("p", _response(401), b"", has_key=False, secret=None, now=NOW)
    assert "none is configured" in str(error)


def test_transport_errors() -> None:
    def error(exc: httpx2.HTTPError, mid_answer: bool = False) -> Exception:
        return transport_error("p", "api.test", exc, connect_timeout_s=5, mid_answer=mid_answer)

    assert isinstance(error(httpx2.ConnectTimeout("slow")), ProviderConnectTimeoutError)
    read = error(httpx2.ReadTimeout("slow"))
    assert isinstance(read, ProviderTimeoutError)
    assert not isinstance(read, ProviderConnectTimeoutError)  # connected: slow, not down
    refused = error(httpx2.ConnectError("[Errno 111] Connection refused"))
    assert isinstance(refused, ProviderUnavailableError) and "api.test" in str(refused)
    cut = error(httpx2.RemoteProtocolError("incomplete chunked read"), mid_answer=True)
    assert isinstance(cut, ProviderUnavailableError) and "incomplete" in str(cut)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}',
            "Incorrect API key",
        ),
        (
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            "Overloaded",
        ),
        (b'{"error": "model not loaded"}', "model not loaded"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b"upstream   connect error\n", "upstream connect error"),
        (b"<html><body>502 Bad Gateway</body></html>", None),
        (b"", None),
    ],
)
def test_upstream_message(body: bytes, expected: str | None) -> None:
    assert upstream_message(body, secret=None) == expected


def test_upstream_message_never_echoes_the_key() -> None:
    body = b'{"error": {"message": "key sk-secret-123 is revoked"}}'
    assert upstream_message(body, secret=SecretStr("sk-secret-123")) == "key [key] is revoked"


@pytest.mark.parametrize(
    "overrides",
    [
        {"connect_timeout_s": 0},
        {"idle_timeout_s": -1},
        {"first_byte_timeout_s": float("nan")},
        {"max_attempts": 0},
        {"breaker_failures": 0},
        {"backoff_base_s": -0.1},
        {"max_total_s": 0},
    ],
)
def test_policy_refuses_values_that_cannot_work(overrides: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ReliabilityPolicy(**overrides)  # type: ignore[arg-type]


def test_policy_allows_retrying_at_once() -> None:
    assert ReliabilityPolicy(backoff_base_s=0, max_retry_after_s=0).backoff_base_s == 0
