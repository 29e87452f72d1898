"""Escalating a request to the cloud: the chosen target, then each failover target, in turn.

A target is skipped when its provider has no key or its estimated cost does not fit under a
spend cap (the cost is reserved before the request is sent, :mod:`hybrid.routing.reserving`),
and left for the next one when it fails before its first byte (a provider retries by itself
until then).  A request the provider rejects as malformed is not failed over: it would fail
everywhere.  When every target failed, :class:`CloudFailures` says why, for the dispatcher's
local fallback and, when nothing can answer, for the error the client gets: a rate limit when
every target rate-limited the request (HTTP 429) or was skipped for a circuit that rate limits
opened (``openai:circuit_open``), else that nothing could answer (:func:`all_rate_limited`,
which decides the same for the LAN tier's servers).

A wait a provider asked for (its ``Retry-After``, or its open circuit's time to the next probe)
is kept with the moment it was said, on a monotonic clock: the wait the client is told is what
is left of the soonest of them when the error is built, after the other targets and the local
model had their turn.  The LAN tier's failures (:mod:`hybrid.routing.lan`) are kept and told
the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hybrid.cloud.provider import CloudProvider
from hybrid.errors import (
    BudgetExceededError,
    CircuitOpenError,
    HybridError,
    NoRouteError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRejectedError,
)
from hybrid.generation import GenerationRequest
from hybrid.ledger.budget import Reservation
from hybrid.routing.answer import Answer
from hybrid.routing.names import CloudTarget, ModelNames
from hybrid.routing.reserving import Reserving

log = logging.getLogger("hybrid.routing")

NO_PROVIDER_HINT = (
    "set OPENAI_API_KEY or ANTHROPIC_API_KEY, or declare one under [[cloud.providers]]"
)
"""What to do when no cloud provider is configured."""


@dataclass(frozen=True)
class Failure:
    """Why one cloud target did not answer.

    Attributes:
        where: The provider (or ``cloud`` when none is configured).
        reason: A short code (``timeout``, ``no_key``, ``budget:daily_cap``).
        detail: A sentence for the client.
        retryable: Whether the same request may succeed later.
        retry_after: Seconds the provider asked to wait before retrying, when it said (or its
            open circuit's time to the next probe).
        rate_limited: Whether the provider rate-limited the request (HTTP 429), or was skipped
            for a circuit that rate limits opened (its reason stays ``circuit_open``).
        said_at: When the wait was said, in monotonic seconds (None: just now).
    """

    where: str
    reason: str
    detail: str
    retryable: bool
    retry_after: float | None = None
    rate_limited: bool = False
    said_at: float | None = None

    @classmethod
    def of(cls, error: ProviderError, *, at: float) -> Failure:
        """The failure a provider's error stands for.

        Args:
            error: What :meth:`CloudProvider.start` raised; it raises as soon as the answer
                that said the wait is read, so the wait was said ``at``.
            at: Now, in monotonic seconds.
        """
        return cls(
            error.provider,
            error.reason,
            str(error),
            # An open circuit lets a probe through after its wait: a retry then may succeed.
            error.retryable or isinstance(error, CircuitOpenError),
            retry_after=error.retry_after,
            rate_limited=isinstance(error, ProviderRateLimitedError)
            or (isinstance(error, CircuitOpenError) and error.rate_limited),
            said_at=at,
        )

    def wait_left(self, now: float) -> float | None:
        """Seconds left at ``now`` (monotonic) of the wait, 0 once over; None when none was
        said."""
        if self.retry_after is None:
            return None
        if self.said_at is None:
            return self.retry_after
        return max(0.0, self.said_at + self.retry_after - now)

    @property
    def code(self) -> str:
        """``provider:reason``, as the ``X-Hybrid-Reason`` header gives it."""
        return f"{self.where}:{self.reason}"


@dataclass(frozen=True)
class CloudFailures:
    """Every cloud target's failure, in the order they were tried (at least one).

    Attributes:
        failures: The failures.
        clock: Monotonic seconds, the clock the failures' ``said_at`` was read from.
    """

    failures: tuple[Failure, ...]
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    @property
    def capped(self) -> str | None:
        """The spend cap's reason code when a cap stopped every target, else None."""
        capped = [f.reason for f in self.failures if f.reason.startswith("budget:")]
        return capped[0] if capped and len(capped) == len(self.failures) else None

    @property
    def fallback_reason(self) -> str:
        """The reason of a local answer given instead: the cap, or the first failure."""
        capped = self.capped
        return capped if capped is not None else f"cloud_unavailable:{self.failures[0].code}"

    def error(self, local: str) -> HybridError:
        """The error when the local model cannot answer either.

        Args:
            local: Why the local model did not answer.

        Returns:
            A BudgetExceededError when spend caps stopped every target, else a NoRouteError;
            either names every failure.  A NoRouteError carries what is left now of the
            soonest wait a provider asked for (of the failures a retry may fix), and says
            whether every target was rate limited: rate-limited the request now, or was skipped
            for a circuit that rate limits opened.
        """
        details = "; ".join([*(f.detail for f in self.failures), local])
        capped = self.capped
        if capped is not None:
            lead = (
                "the shared budget cannot be reached"
                if capped == "budget:unavailable"
                else "the cloud spend cap is reached"
            )
            return BudgetExceededError(
                lead + " and the local model cannot answer: " + details, cap=capped
            )
        retry_after = soonest_wait(self.failures, self.clock())
        rate_limited = all_rate_limited(self.failures)
        lead = "no backend could answer"
        if rate_limited:
            lead = "every cloud provider tried rate-limited the request"
            if any(f.reason != ProviderRateLimitedError.reason for f in self.failures):
                lead = "every cloud provider tried is rate limiting requests"
            if retry_after is not None:
                lead += f" (retry in {max(1, math.ceil(retry_after))} s)"
            lead += ", and nothing else could answer"
        return NoRouteError(
            f"{lead}: {details}",
            failures=[f.code for f in self.failures],
            should_retry=any(f.retryable for f in self.failures),
            retry_after=retry_after,
            rate_limited=rate_limited,
        )


def all_rate_limited(failures: Sequence[Failure]) -> bool:
    """Whether every failure is a rate limit (there is at least one): the target rate-limited
    the request (HTTP 429), or was skipped for a circuit that rate limits opened.  A client is
    then told it is rate limited (429), not that nothing could answer (503)."""
    return bool(failures) and all(f.rate_limited for f in failures)


def soonest_wait(failures: Iterable[Failure], now: float) -> float | None:
    """What is left at ``now`` (monotonic) of the soonest wait said by the failures a retry may
    fix, or None when none of them said one: the ``Retry-After`` a client is told."""
    left = [f.wait_left(now) for f in failures if f.retryable]
    waits = [wait for wait in left if wait is not None]
    return min(waits) if waits else None


class Failover:
    """Starts requests on the cloud, failing over from target to target.

    Args:
        providers: The cloud providers by name.
        names: Says which providers have their key.
        failover: Cloud targets tried, in order, after the chosen one fails.
        budget: Reserves each target's estimated cost before it is sent (None: no budget).
        clock: Monotonic seconds, for what is left of a provider's wait; injectable for tests.
    """

    def __init__(
        self,
        providers: Mapping[str, CloudProvider],
        names: ModelNames,
        failover: Sequence[CloudTarget],
        budget: Reserving | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self._names = names
        self._failover = tuple(failover)
        self._budget = budget
        self._clock = clock

    async def start(
        self,
        request: GenerationRequest,
        target: CloudTarget | None,
        reason: str,
        *,
        score: float | None = None,
        prompt_tokens: int | None = None,
    ) -> Answer | CloudFailures:
        """Start a request on the first cloud target that takes it.

        Each target's estimated cost is reserved before it is sent and released when it fails;
        the started answer holds its reservation
        (:class:`~hybrid.routing.reserving.ReservedGeneration`) until its
        record settles it.

        Args:
            request: The request (its ``model`` is set to each target's in turn).
            target: The chosen cloud model (None when none is configured).
            reason: The answer's reason; ``;failover:<first failure>`` is added when a later
                target answers.
            score: The difficulty score, for the answer.
            prompt_tokens: The prompt's tokens, when the router counted them already.

        Returns:
            The started answer, or why no target took it.

        Raises:
            ProviderRejectedError: A provider rejected the request itself.
        """
        failures: list[Failure] = []
        if target is None:
            detail = f"no cloud provider is configured ({NO_PROVIDER_HINT})"
            failures.append(Failure("cloud", "no_provider", detail, retryable=False))
        for candidate in self._candidates(target):
            provider = self._providers.get(candidate.provider)
            if provider is None or not self._names.usable(candidate.provider):
                failures.append(_no_key(candidate.provider))
                continue
            held: Reservation | None = None
            if self._budget is not None:
                if prompt_tokens is None:
                    prompt_tokens = self._budget.prompt_tokens(request)
                reserved = await self._budget.reserve(request, candidate, prompt_tokens)
                if isinstance(reserved, str):
                    detail = _capped_detail(reserved)
                    failures.append(Failure(candidate.provider, reserved, detail, False))
                    continue
                held = reserved
            try:
                generation = await provider.start(
                    dataclasses.replace(request, model=candidate.model)
                )
            except BaseException as exc:
                # Failed, rejected or cancelled before an answer: nothing was spent.
                if held is not None and self._budget is not None:
                    self._budget.release(held)
                if isinstance(exc, ProviderError) and not isinstance(exc, ProviderRejectedError):
                    log.warning("cloud target %s failed: %s", candidate.qualified, exc)
                    failures.append(Failure.of(exc, at=self._clock()))
                    continue
                raise
            if held is not None and self._budget is not None:
                generation = self._budget.hold(generation, held)
            if failures:
                reason = f"{reason};failover:{failures[0].code}"
            return Answer(generation, "cloud", candidate.qualified, reason, score)
        return CloudFailures(tuple(failures), self._clock)

    def _candidates(self, target: CloudTarget | None) -> list[CloudTarget]:
        ordered = ([target] if target is not None else []) + list(self._failover)
        return list(dict.fromkeys(ordered))


def _capped_detail(reason: str) -> str:
    if reason == "budget:unavailable":
        return (
            f"{reason}: the shared budget's database (ledger.url) cannot be reached, and no "
            f"cloud request is sent without a reservation (it is tried again every second)"
        )
    return (
        f"{reason}: the cloud spend cap is reached, or the request's estimated cost (its "
        f"prompt and max_tokens at the model's price) does not fit in what is left under it "
        f"(set a lower max_tokens, raise budget.daily_usd / budget.monthly_usd, or wait for "
        f"the next day or month)"
    )


def _no_key(provider: str) -> Failure:
    variables = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
    hint = variables.get(provider, "the variable its api_key_env names")
    return Failure(provider, "no_key", f"{provider}: no API key (set {hint})", retryable=False)
