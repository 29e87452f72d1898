"""What a request cost, and what a local or LAN answer saved.

A cloud answer costs what its provider charges.  A local answer costs electricity (process CPU
seconds times ``energy.cpu_watts``, plus the GPU's energy when it is known) and avoids what a
cloud model would have charged for the same tokens: the request's own cloud model, else the
configured default cloud model, else ``pricing.reference_model``.  Cost avoided is that
counterfactual cost minus the electricity.  A model without a price makes its cost None and the
record's ``price_known`` false: an unknown price is never taken as free.  The same goes for a
cloud answer that read or wrote prompt-cache tokens when its model's price lacks that rate.

A LAN answer (one of a team's servers, route ``lan``) costs ``lan.usd_per_1m_tokens`` per
million tokens, prompt and answer together; it is compared with a cloud model exactly as a local
answer is, and its cost avoided is that counterfactual cost minus the LAN cost.  It is not cloud
spend: its ``cloud_cost_usd`` is 0.0 and no budget counts it.

The counterfactual prices the whole prompt at the uncached input rate: a local answer never
touched a provider's cache, and what part of it would have been a cache hit is not known.

Before a cloud request is sent, its cost is *estimated* for the budget's reservation
(:meth:`Costing.estimate`): its prompt tokens at the uncached input rate plus the most it may
generate (its ``max_tokens``, else :data:`ESTIMATED_MAX_OUTPUT_TOKENS` or the provider's own
default) at the output rate.  A cache hit or a shorter answer only makes the real cost lower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hybrid.ledger.prices import PriceTable
from hybrid.settings.ledger import EnergySettings

_JOULES_PER_KWH = 3.6e6
_TOKENS_PER_PRICE_UNIT = 1_000_000

ESTIMATED_MAX_OUTPUT_TOKENS = 4096
"""Output tokens a cloud request that sets no ``max_tokens`` is estimated at, for a provider
that is sent none (OpenAI and compatible ones; Anthropic gets ``cloud.anthropic.max_tokens``,
which is estimated instead).  Such a provider may answer longer, up to the model's own limit:
the real cost is what is spent, so set ``max_tokens`` to keep the estimate an upper bound."""


@dataclass(frozen=True)
class Costs:
    """The cost fields of a :class:`~hybrid.ledger.record.LedgerRecord`.

    Attributes:
        cloud_cost_usd: What the cloud charged: 0.0 for a local or LAN answer, None when
            unpriced.
        counterfactual_model: For a local or LAN answer, the cloud model it is compared with.
        counterfactual_cost_usd: What that model would have charged, None when unpriced.
        energy_cost_usd: What running the answer on owned hardware cost: electricity for a
            local answer, ``lan.usd_per_1m_tokens`` for a LAN answer (0.0 for a cloud answer).
        cost_avoided_usd: Counterfactual minus ``energy_cost_usd`` (0.0 for a cloud answer),
            None when the counterfactual is unpriced.
        price_known: False when a model that needed a price had none.
    """

    cloud_cost_usd: float | None
    counterfactual_model: str | None
    counterfactual_cost_usd: float | None
    energy_cost_usd: float | None
    cost_avoided_usd: float | None
    price_known: bool

    def fields(self) -> dict[str, Any]:
        """Return the fields by name, to pass as ``LedgerRecord(..., **costs.fields())``."""
        return {
            "cloud_cost_usd": self.cloud_cost_usd,
            "counterfactual_model": self.counterfactual_model,
            "counterfactual_cost_usd": self.counterfactual_cost_usd,
            "energy_cost_usd": self.energy_cost_usd,
            "cost_avoided_usd": self.cost_avoided_usd,
            "price_known": self.price_known,
        }


NOTHING = Costs(
    cloud_cost_usd=0.0,
    counterfactual_model=None,
    counterfactual_cost_usd=None,
    energy_cost_usd=0.0,
    cost_avoided_usd=0.0,
    price_known=True,
)
"""The cost fields of a request no model answered (refused, or failed before any answer):
nothing charged, no electricity, nothing avoided."""


class Costing:
    """Prices requests from a price table, the energy settings, the LAN tier's price and a
    comparison model."""

    def __init__(
        self,
        prices: PriceTable,
        energy: EnergySettings,
        *,
        reference_model: str,
        default_model: str | None = None,
        lan_usd_per_1m_tokens: float = 0.0,
    ) -> None:
        """Build a costing.

        Args:
            prices: The price table (shipped plus overrides).
            energy: Watts and the electricity price.
            reference_model: ``pricing.reference_model``: what a local answer is compared with
                when no cloud model is configured.
            default_model: The default cloud model (``provider/model``) when one is configured.
            lan_usd_per_1m_tokens: ``lan.usd_per_1m_tokens``: what a LAN answer costs per
                million tokens, prompt and answer together.

        Raises:
            ValueError: ``lan_usd_per_1m_tokens`` is negative or not a finite number.
        """
        if not 0.0 <= lan_usd_per_1m_tokens < float("inf"):
            raise ValueError(
                f"lan.usd_per_1m_tokens must be a finite number of USD of 0 or more, not "
                f"{lan_usd_per_1m_tokens!r}"
            )
        self._prices = prices
        self._energy = energy
        self._reference = reference_model
        self._default = default_model
        self._lan_rate = lan_usd_per_1m_tokens

    def cloud_cost(
        self,
        qualified_model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float | None:
        """Return what a cloud model charges for a request.

        Args:
            qualified_model: ``provider/model``.
            prompt_tokens: Input tokens, cache reads and writes included.
            completion_tokens: Output tokens.
            cache_read_tokens: Input tokens the provider read from its prompt cache.
            cache_write_tokens: Input tokens the provider wrote to its prompt cache.

        Returns:
            USD, or None when the model has no price, or none for the cache tokens it used.
        """
        price = self._prices.lookup(qualified_model)
        if price is None:
            return None
        return price.cost(prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens)

    def estimate(
        self, qualified_model: str, prompt_tokens: int, max_output_tokens: int
    ) -> float | None:
        """Return the most a cloud request should cost, to reserve before it is sent.

        Args:
            qualified_model: ``provider/model``.
            prompt_tokens: Its prompt's tokens (all priced at the uncached input rate, or the
                long-prompt rate where the price has one).
            max_output_tokens: The most it may generate (its ``max_tokens``, else the
                provider's default).

        Returns:
            USD, or None when the model has no price.
        """
        price = self._prices.lookup(qualified_model)
        if price is None:
            return None
        return price.cost(max(prompt_tokens, 0), max(max_output_tokens, 0))

    def energy_cost(
        self,
        cpu_seconds: float,
        gpu_joules: float | None = None,
        gpu_seconds: float | None = None,
    ) -> float:
        """Return what the electricity for a local answer cost.

        Args:
            cpu_seconds: CPU time the process spent on the answer.
            gpu_joules: The GPU's measured energy, when known.
            gpu_seconds: GPU busy time, used with ``energy.gpu_watts`` when ``gpu_joules`` is
                unknown (and ignored when ``gpu_watts`` is unset).

        Returns:
            USD.
        """
        joules = max(cpu_seconds, 0.0) * self._energy.cpu_watts
        if gpu_joules is not None:
            joules += max(gpu_joules, 0.0)
        elif gpu_seconds is not None and self._energy.gpu_watts is not None:
            joules += max(gpu_seconds, 0.0) * self._energy.gpu_watts
        return joules / _JOULES_PER_KWH * self._energy.usd_per_kwh

    def counterfactual_model(self, requested_target: str | None) -> str:
        """Return the cloud model a local answer is compared with.

        Args:
            requested_target: The cloud model the request itself named (``provider/model``),
                if any.

        Returns:
            ``requested_target``, else the default cloud model, else the reference model.
        """
        return requested_target or self._default or self._reference

    def for_cloud(
        self,
        qualified_model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> Costs:
        """Return the cost fields of a cloud answer (arguments as :meth:`cloud_cost`)."""
        cost = self.cloud_cost(
            qualified_model, prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens
        )
        return Costs(
            cloud_cost_usd=cost,
            counterfactual_model=None,
            counterfactual_cost_usd=None,
            energy_cost_usd=0.0,
            cost_avoided_usd=0.0,
            price_known=cost is not None,
        )

    def for_local(
        self,
        requested_target: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cpu_seconds: float,
        gpu_joules: float | None = None,
        gpu_seconds: float | None = None,
    ) -> Costs:
        """Return the cost fields of a local answer.

        Args:
            requested_target: The cloud model the request named, if any (see
                :meth:`counterfactual_model`).
            prompt_tokens: Input tokens.
            completion_tokens: Output tokens.
            cpu_seconds: As :meth:`energy_cost`.
            gpu_joules: As :meth:`energy_cost`.
            gpu_seconds: As :meth:`energy_cost`.
        """
        model = self.counterfactual_model(requested_target)
        counterfactual = self.cloud_cost(model, prompt_tokens, completion_tokens)
        energy = self.energy_cost(cpu_seconds, gpu_joules, gpu_seconds)
        return Costs(
            cloud_cost_usd=0.0,
            counterfactual_model=model,
            counterfactual_cost_usd=counterfactual,
            energy_cost_usd=energy,
            cost_avoided_usd=None if counterfactual is None else counterfactual - energy,
            price_known=counterfactual is not None,
        )

    def lan_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Return what a LAN answer cost at ``lan.usd_per_1m_tokens``.

        Args:
            prompt_tokens: Input tokens.
            completion_tokens: Output tokens.

        Returns:
            USD (0.0 at the default price).
        """
        tokens = max(prompt_tokens, 0) + max(completion_tokens, 0)
        return tokens * self._lan_rate / _TOKENS_PER_PRICE_UNIT

    def for_lan(
        self, requested_target: str | None, prompt_tokens: int, completion_tokens: int
    ) -> Costs:
        """Return the cost fields of a LAN answer (one of a team's servers answered).

        It is priced against a cloud model as a local answer is; what the server cost goes in
        ``energy_cost_usd`` (what running the answer on owned hardware cost) and is taken off
        the cost avoided.  It is not cloud spend: ``cloud_cost_usd`` is 0.0.

        Args:
            requested_target: The cloud model the request would otherwise have gone to, if
                any (see :meth:`counterfactual_model`).
            prompt_tokens: Input tokens.
            completion_tokens: Output tokens.

        Returns:
            The cost fields; cost avoided is None when the counterfactual has no price.
        """
        model = self.counterfactual_model(requested_target)
        counterfactual = self.cloud_cost(model, prompt_tokens, completion_tokens)
        lan = self.lan_cost(prompt_tokens, completion_tokens)
        return Costs(
            cloud_cost_usd=0.0,
            counterfactual_model=model,
            counterfactual_cost_usd=counterfactual,
            energy_cost_usd=lan,
            cost_avoided_usd=None if counterfactual is None else counterfactual - lan,
            price_known=counterfactual is not None,
        )

    def for_unanswered_lan(self, prompt_tokens: int, completion_tokens: int) -> Costs:
        """Return the cost fields of a LAN answer no client got (a shadow call to a LAN
        server): what the server cost (``lan.usd_per_1m_tokens``) spent and nothing avoided,
        as for :meth:`for_discarded_local`."""
        return _unanswered(self.lan_cost(prompt_tokens, completion_tokens))

    def for_discarded_local(
        self,
        *,
        cpu_seconds: float,
        gpu_joules: float | None = None,
        gpu_seconds: float | None = None,
    ) -> Costs:
        """Return the cost fields of local work no client got: a cascade's discarded local
        leg or a local shadow answer.  Energy spent, nothing avoided (the cloud answered
        anyway), so its cost avoided is minus its energy; no counterfactual.

        Args:
            cpu_seconds: As :meth:`energy_cost`.
            gpu_joules: As :meth:`energy_cost`.
            gpu_seconds: As :meth:`energy_cost`.
        """
        return _unanswered(self.energy_cost(cpu_seconds, gpu_joules, gpu_seconds))


def _unanswered(spent: float) -> Costs:
    """The cost fields of work no client got: ``spent`` (energy, or a LAN server's price), and
    minus that avoided; no counterfactual."""
    return Costs(
        cloud_cost_usd=0.0,
        counterfactual_model=None,
        counterfactual_cost_usd=None,
        energy_cost_usd=spent,
        cost_avoided_usd=-spent,
        price_known=True,
    )
