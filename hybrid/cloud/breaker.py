"""A circuit breaker: stop calling a provider that keeps failing, and probe it now and then.

```
closed --(failures in a row)--> open --(its wait elapsed)--> half_open --(probe succeeds)--> closed
                                  ^                             |
                                  +------(probe fails)----------+
```

While open, requests skip the provider at once (and fail over) instead of waiting for timeouts.
Half-open lets exactly one probe through at a time; its outcome closes or re-opens the circuit.

An open circuit waits ``reset_s``, or longer when a failure since the last success came with a
longer wait the provider asked for (its ``Retry-After``): a probe sent before then would only be
refused, and the time to the next probe is the wait clients are told.

It also remembers whether the failures that opened it (the ``failures`` in a row, or the failed
probe that re-opened it) were all rate limits: a provider left alone because it is rate limiting
requests is, for a client, still rate limiting them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """The failure memory of one provider.

    Every method runs without awaiting, so within one event loop each call is atomic; the
    breaker is not meant to be shared across threads.

    Args:
        failures: Consecutive failures that open the circuit (at least 1).
        reset_s: Seconds the circuit stays open before a probe is let through, at least (see
            :meth:`record_failure` for longer).
        clock: Monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        *,
        failures: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        # The latest moment a provider asked to be left alone until, of the failures since the
        # last success (-inf: none asked).
        self._asked_until = -math.inf
        # Whether every failure since the last success was a rate limit (True while none), and
        # whether those that opened the circuit were.
        self._rate_limits_only = True
        self._opened_by_rate_limits = False
        self._probe_started: float | None = None

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open``, or ``half_open`` (which includes "open, but due for a probe")."""
        if self._state == "open" and self._clock() >= self._reopens_at:
            return "half_open"
        return self._state

    @property
    def _reopens_at(self) -> float:
        """When the open circuit lets a probe through: ``reset_s`` after it opened, or when the
        wait the provider asked for ends, whichever is later."""
        return max(self._opened_at + self._reset_s, self._asked_until)

    @property
    def consecutive_failures(self) -> int:
        """Failures recorded since the last success."""
        return self._failures

    @property
    def opened_by_rate_limits(self) -> bool:
        """Whether the circuit is not closed because of rate limits: the failures that opened it
        (the threshold's in a row, or the failed probe that re-opened it) were all rate limits
        (HTTP 429).  False while closed."""
        return self._state != "closed" and self._opened_by_rate_limits

    def retry_in_s(self) -> float | None:
        """Seconds until the open circuit lets a probe through; None unless it is open."""
        if self.state != "open":
            return None
        return max(0.0, self._reopens_at - self._clock())

    def allow(self) -> bool:
        """Whether a request may go to the provider now.

        Returns:
            True when closed; when half-open, True for one probe at a time (the caller must
            then report the outcome with :meth:`record_success`, :meth:`record_failure` or
            :meth:`release`); False while open.
        """
        now = self._clock()
        if self._state == "closed":
            return True
        if self._state == "open":
            if now < self._reopens_at:
                return False
            self._state = "half_open"
            self._probe_started = None
        # A probe whose outcome never arrived (a caller that forgot to report) must not keep
        # the circuit shut forever: after another reset period, let a new probe through.
        if self._probe_started is not None and now - self._probe_started < self._reset_s:
            return False
        self._probe_started = now
        return True

    def record_success(self) -> None:
        """A request the breaker allowed succeeded: close the circuit.

        A success reported while the circuit is open belongs to a request started before it
        opened; it proves less than the failures since, so it changes nothing.
        """
        if self._state == "open":
            return
        self._state = "closed"
        self._failures = 0
        self._asked_until = -math.inf
        self._rate_limits_only = True
        self._opened_by_rate_limits = False
        self._probe_started = None

    def record_failure(self, wait_s: float | None = None, *, rate_limited: bool = False) -> None:
        """A request failed in a way that says the provider is unwell.

        Opens the circuit when the count reaches the threshold, or at once when the failed
        request was the half-open probe.

        Args:
            wait_s: Seconds the provider asked to be left alone for with this failure (its
                ``Retry-After``), when it said.  Until the next success, an open circuit lets
                no probe through before the longest such wait has passed, even when that is
                later than ``reset_s`` after it opened.
            rate_limited: Whether the failure was a rate limit (HTTP 429): a circuit opened by
                rate limits only says so (:attr:`opened_by_rate_limits`).
        """
        if wait_s is not None:
            self._asked_until = max(self._asked_until, self._clock() + wait_s)
        self._failures += 1
        self._rate_limits_only = self._rate_limits_only and rate_limited
        if self._state == "half_open":
            # The failed probe re-opens it: what the provider does now is what counts.
            opens, by_rate_limits = True, rate_limited
        else:
            opens = self._state == "closed" and self._failures >= self._threshold
            by_rate_limits = self._rate_limits_only
        if opens:
            self._state = "open"
            self._opened_at = self._clock()
            self._opened_by_rate_limits = by_rate_limits
            self._probe_started = None

    def release(self) -> None:
        """An allowed request ended without a verdict on the provider's health.

        The client went away, or the provider rejected the request itself (a bad key, a bad
        parameter): the failure count stays as it is and a half-open probe slot is freed.
        """
        if self._state == "half_open":
            self._probe_started = None

    def snapshot(self) -> dict[str, Any]:
        """The breaker's state for ``/health``.

        Returns:
            ``{"state", "consecutive_failures", "retry_in_s", "rate_limited"}``;
            ``retry_in_s`` is the number of seconds until a probe is let through while open,
            else None; ``rate_limited`` is :attr:`opened_by_rate_limits`.
        """
        retry_in = self.retry_in_s()
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "retry_in_s": None if retry_in is None else round(retry_in, 1),
            "rate_limited": self.opened_by_rate_limits,
        }
