"""Cloud prices: the table shipped with hybrid, the user's overrides, and lookups by model.

The shipped table is ``data/prices.json``: one row per provider and model, each with the date it
was read and its source, in USD per million tokens.  Only sourced prices are shipped, so a model
that is not in the table has no price: :meth:`PriceTable.lookup` returns None and the ledger
records ``price_known: false``, never a cost of 0.  The same holds for prompt-cache tokens: a
row without a cache-read (``cached_input``) or cache-write (``cache_write``) rate prices no
request that read or wrote cache tokens (:meth:`Price.cost` returns None).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from hybrid.settings.ledger import PriceOverride

_SHIPPED_PACKAGE = "hybrid.ledger"
_SHIPPED_FILE = "data/prices.json"
_PER_TOKEN = 1e-6

# A dated snapshot (gpt-4.1-mini-2025-04-14, claude-haiku-4-5-20251001) or a moving alias
# (-latest) is priced as its base model unless the table names the snapshot itself.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-?\d{2}-?\d{2}|latest)$")


@dataclass(frozen=True)
class LongPromptPrice:
    """Rates that replace a model's rates, for every token, when the prompt is long.

    Attributes:
        above_tokens: Prompts with more tokens than this pay these rates.
        input_per_mtok: USD per million input tokens.
        output_per_mtok: USD per million output tokens.
        cached_input_per_mtok: USD per million input tokens read from the prompt cache, or
            None when unknown.
        cache_write_per_mtok: USD per million input tokens written to the prompt cache, or None
            when unknown.
    """

    above_tokens: int
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None
    cache_write_per_mtok: float | None = None


@dataclass(frozen=True)
class Price:
    """One model's price.

    Attributes:
        input_per_mtok: USD per million input (prompt) tokens.
        output_per_mtok: USD per million output (completion) tokens.
        cached_input_per_mtok: USD per million input tokens read from the prompt cache; None
            when unknown (a request that read the cache is then unpriced).
        date: When the source was read or the price took effect (``YYYY-MM-DD``), or
            ``"settings"`` for an override.
        source: Where the price comes from (a URL, or ``pricing.overrides``).
        long_prompt: Rates for long prompts, when the provider charges more for them.
        cache_write_per_mtok: USD per million input tokens written to the prompt cache
            (Anthropic's five-minute cache writes); None when unknown (a request that wrote to
            the cache is then unpriced).
    """

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None
    date: str
    source: str
    long_prompt: LongPromptPrice | None = None
    cache_write_per_mtok: float | None = None

    def cost(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float | None:
        """Return what a request costs at this price, in USD.

        Args:
            prompt_tokens: All input tokens, cache reads and writes included (OpenAI's
                ``prompt_tokens``; for Anthropic, ``input_tokens + cache_read_input_tokens +
                cache_creation_input_tokens``).
            completion_tokens: Output tokens.
            cache_read_tokens: How many of ``prompt_tokens`` the provider read from its cache.
            cache_write_tokens: How many of ``prompt_tokens`` the provider wrote to its cache.
                Both are clamped so that together they never exceed ``prompt_tokens``.

        Returns:
            The cost in USD; None when the request read (or wrote) cache tokens and this price
            has no cache-read (or cache-write) rate: those tokens are never taken as free, nor
            guessed at another rate.
        """
        rates: Price | LongPromptPrice = self
        if self.long_prompt is not None and prompt_tokens > self.long_prompt.above_tokens:
            rates = self.long_prompt
        read = min(max(cache_read_tokens, 0), prompt_tokens)
        written = min(max(cache_write_tokens, 0), prompt_tokens - read)
        read_rate, write_rate = rates.cached_input_per_mtok, rates.cache_write_per_mtok
        if (read and read_rate is None) or (written and write_rate is None):
            return None
        return _PER_TOKEN * (
            (prompt_tokens - read - written) * rates.input_per_mtok
            + read * (read_rate or 0.0)
            + written * (write_rate or 0.0)
            + completion_tokens * rates.output_per_mtok
        )


class PriceTable:
    """Prices by qualified model name (``openai/gpt-4.1-mini``)."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        """Build a table.

        Args:
            prices: Qualified model name (``provider/model``) to its price.
        """
        self._prices = {_key(name): price for name, price in prices.items()}

    @classmethod
    def shipped(cls, overrides: Iterable[PriceOverride] = ()) -> PriceTable:
        """Return the table shipped with hybrid, with ``overrides`` winning over its rows.

        Args:
            overrides: The ``pricing.overrides`` setting.

        Returns:
            The merged table.
        """
        text = resources.files(_SHIPPED_PACKAGE).joinpath(_SHIPPED_FILE).read_text("utf-8")
        return cls.from_json(text, origin=_SHIPPED_FILE).with_overrides(overrides)

    @classmethod
    def from_json(cls, text: str, *, origin: str) -> PriceTable:
        """Parse a table in the shipped format (``{"prices": [{provider, model, ...}]}``).

        Args:
            text: The JSON document.
            origin: Named in error messages.

        Returns:
            The table.

        Raises:
            ValueError: The document is not JSON, or a row lacks a field or has a wrong type.
        """
        try:
            rows = json.loads(text)["prices"]
            prices = {f"{row['provider']}/{row['model']}": _parse_row(row) for row in rows}
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{origin} is not a valid price table: {exc!r}") from exc
        return cls(prices)

    def with_overrides(self, overrides: Iterable[PriceOverride]) -> PriceTable:
        """Return a copy in which each override replaces (or adds) its model's price.

        Args:
            overrides: The ``pricing.overrides`` setting; a later row for the same model wins.
        """
        prices = dict(self._prices)
        for override in overrides:
            prices[_key(f"{override.provider}/{override.model}")] = Price(
                input_per_mtok=override.input,
                output_per_mtok=override.output,
                cached_input_per_mtok=override.cached_input,
                date="settings",
                source="pricing.overrides",
                cache_write_per_mtok=override.cache_write,
            )
        return PriceTable(prices)

    def lookup(self, qualified_model: str) -> Price | None:
        """Return a model's price.

        Args:
            qualified_model: ``provider/model`` (``openai/gpt-4.1-mini``).  A dated snapshot
                (``openai/gpt-4.1-mini-2025-04-14``) has its base model's price unless the table
                names the snapshot itself.

        Returns:
            The price, or None when the model has none here (or the name has no provider).
        """
        key = _key(qualified_model)
        price = self._prices.get(key)
        if price is None and "/" in key:
            base = _SNAPSHOT_SUFFIX.sub("", key)
            price = self._prices.get(base) if base != key else None
        return price

    def models(self) -> list[str]:
        """Return every priced model's qualified name, sorted."""
        return sorted(self._prices)


def _key(qualified_model: str) -> str:
    # Provider and model names are matched as written by people, who mix cases freely.
    return qualified_model.strip().lower()


def _parse_row(row: Mapping[str, Any]) -> Price:
    long_prompt = row.get("long_prompt")
    return Price(
        input_per_mtok=_usd(row["input"]),
        output_per_mtok=_usd(row["output"]),
        cached_input_per_mtok=_usd_or_none(row.get("cached_input")),
        date=str(row["date"]),
        source=str(row["source"]),
        long_prompt=None
        if long_prompt is None
        else LongPromptPrice(
            above_tokens=int(long_prompt["above_tokens"]),
            input_per_mtok=_usd(long_prompt["input"]),
            output_per_mtok=_usd(long_prompt["output"]),
            cached_input_per_mtok=_usd_or_none(long_prompt.get("cached_input")),
            cache_write_per_mtok=_usd_or_none(long_prompt.get("cache_write")),
        ),
        cache_write_per_mtok=_usd_or_none(row.get("cache_write")),
    )


def _usd(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"a price must be a number >= 0, not {value!r}")
    return float(value)


def _usd_or_none(value: object) -> float | None:
    return None if value is None else _usd(value)
