"""How patient and how persistent hybrid is with one cloud provider."""

from __future__ import annotations

from dataclasses import dataclass, fields

from hybrid.errors import ConfigError

# Waits that may be zero (retry at once, never wait for Retry-After); timeouts may not.
_MAY_BE_ZERO = frozenset({"backoff_base_s", "backoff_max_s", "max_retry_after_s"})


@dataclass(frozen=True)
class ReliabilityPolicy:
    """Timeouts, retries and circuit-breaker thresholds for one provider.

    Attributes:
        connect_timeout_s: Seconds to open the TCP/TLS connection.
        first_byte_timeout_s: Seconds from sending a streamed request to its first event that
            carries output (text or the end of the answer), so that everything before the
            client sees a byte stays retryable.
        whole_answer_timeout_s: Seconds from sending a request that is not streamed to its
            response headers.  A provider sends those only once the whole answer is generated,
            so this bounds the generation itself: it takes the place of
            ``first_byte_timeout_s`` for such a request, and ``max_total_s`` does not cut an
            attempt that is under way.
        idle_timeout_s: Seconds allowed between two chunks of a response body or stream once
            it is flowing.
        max_attempts: Attempts per request to this provider, all before the first byte.
        max_total_s: Seconds one request may spend on this provider before its first byte,
            over every attempt and every wait between them.  A streamed attempt's first-byte
            deadline is cut to what is left of it, and a retry whose wait would outlast it is
            not made (streamed or not): the request fails over (or falls back to the local
            model) instead.
        backoff_base_s: Exponential backoff: attempt ``n`` waits up to
            ``backoff_base_s * 2**(n-1)`` seconds (full jitter: uniformly from zero).
        backoff_max_s: Cap on one backoff wait.
        max_retry_after_s: A ``Retry-After`` longer than this is not waited for: the request
            fails at once so that another provider can take it.
        breaker_failures: Consecutive failed requests that open the circuit.
        breaker_reset_s: Seconds the circuit stays open before one probe request is let
            through (half-open); longer when a failure came with a longer ``Retry-After``.

    Raises:
        ConfigError: A timeout is not positive, a wait is negative, or a count is below 1.
    """

    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float = 60.0
    whole_answer_timeout_s: float = 600.0
    idle_timeout_s: float = 30.0
    max_attempts: int = 3
    max_total_s: float = 30.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 20.0
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name in ("max_attempts", "breaker_failures"):
                if value < 1:
                    raise ConfigError(f"{spec.name} must be at least 1 (got {value})")
            elif spec.name in _MAY_BE_ZERO:
                if not value >= 0:
                    raise ConfigError(f"{spec.name} must not be negative (got {value})")
            elif not value > 0:
                raise ConfigError(f"{spec.name} must be a positive number of seconds (got {value})")
