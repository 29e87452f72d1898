"""Escalating a request to the cloud: the chosen target, then each failover target, in turn.

A target is skipped when its provider has no key or its spend cap is reached, and left for the
next one when it fails before its first byte (a provider retries by itself until then).  A
request the provider rejects as malformed is not failed over: it would fail everywhere.  When
every target failed, :class:`CloudFailures` says why, for the dispatcher's local fallback and,
when nothing can answer, for the error the client gets.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hybrid.cloud.provider import CloudProvider
from hybrid.errors import (
    BudgetExceededError,
    HybridError,
    NoRouteError,
    ProviderError,
    ProviderRejectedError,
)
from hybrid.generation import GenerationRequest
from hybrid.routing.answer import Answer
from hybrid.routing.names import CloudTarget, ModelNames

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
    """

    where: str
    reason: str
    detail: str
    retryable: bool

    @property
    def code(self) -> str:
        """``provider:reason``, as the ``X-Hybrid-Reason`` header gives it."""
        return f"{self.where}:{self.reason}"


@dataclass(frozen=True)
class CloudFailures:
    """Every cloud target's failure, in the order they were tried (at least one).

    Attributes:
        failures: The failures.
    """

    failures: tuple[Failure, ...]

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
            either names every failure.
        """
        details = "; ".join([*(f.detail for f in self.failures), local])
        capped = self.capped
        if capped is not None:
            return BudgetExceededError(
                "the cloud spend cap is reached and the local model cannot answer: " + details,
                cap=capped,
            )
        return NoRouteError(
            "no backend could answer: " + details,
            failures=[f.code for f in self.failures],
            should_retry=any(f.retryable for f in self.failures),
        )


class Failover:
    """Starts requests on the cloud, failing over from target to target.

    Args:
        providers: The cloud providers by name.
        names: Says which providers have their key.
        failover: Cloud targets tried, in order, after the chosen one fails.
        budget: Says why a provider may not be sent requests now (a spend cap's reason code,
            ``budget:daily_cap``), or None when it may.
    """

    def __init__(
        self,
        providers: Mapping[str, CloudProvider],
        names: ModelNames,
        failover: Sequence[CloudTarget],
        budget: Callable[[str], str | None],
    ) -> None:
        self._providers = providers
        self._names = names
        self._failover = tuple(failover)
        self._budget = budget

    async def start(
        self,
        request: GenerationRequest,
        target: CloudTarget | None,
        reason: str,
        *,
        score: float | None = None,
    ) -> Answer | CloudFailures:
        """Start a request on the first cloud target that takes it.

        Args:
            request: The request (its ``model`` is set to each target's in turn).
            target: The chosen cloud model (None when none is configured).
            reason: The answer's reason; ``;failover:<first failure>`` is added when a later
                target answers.
            score: The difficulty score, for the answer.

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
            capped = self._budget(candidate.provider)
            if capped is not None:
                failures.append(Failure(candidate.provider, capped, _capped_detail(capped), False))
                continue
            try:
                generation = await provider.start(
                    dataclasses.replace(request, model=candidate.model)
                )
            except ProviderRejectedError:
                raise
            except ProviderError as exc:
                log.warning("cloud target %s failed: %s", candidate.qualified, exc)
                failures.append(Failure(exc.provider, exc.reason, str(exc), exc.retryable))
                continue
            if failures:
                reason = f"{reason};failover:{failures[0].code}"
            return Answer(generation, "cloud", candidate.qualified, reason, score)
        return CloudFailures(tuple(failures))

    def _candidates(self, target: CloudTarget | None) -> list[CloudTarget]:
        ordered = ([target] if target is not None else []) + list(self._failover)
        return list(dict.fromkeys(ordered))


def _capped_detail(reason: str) -> str:
    return (
        f"{reason}: the cloud spend cap is reached (raise budget.daily_usd / "
        f"budget.monthly_usd, or wait for the next day or month)"
    )


def _no_key(provider: str) -> Failure:
    variables = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
    hint = variables.get(provider, "the variable its api_key_env names")
    return Failure(provider, "no_key", f"{provider}: no API key (set {hint})", retryable=False)
