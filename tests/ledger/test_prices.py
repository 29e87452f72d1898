"""The price table: shipped, sourced rows; overrides; lookups; what a request costs."""

from __future__ import annotations

import re

import pytest

from hybrid.ledger.prices import LongPromptPrice, Price, PriceTable
from hybrid.settings.cloud import AnthropicSettings, OpenAISettings
from hybrid.settings.ledger import PriceOverride, PricingSettings


@pytest.fixture(scope="module")
def shipped() -> PriceTable:
    return PriceTable.shipped()


def test_every_shipped_row_names_its_date_and_source(shipped: PriceTable) -> None:
    for model in shipped.models():
        price = shipped.lookup(model)
        assert price is not None
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price.date), model
        assert price.source.startswith("https://"), model


def test_the_default_cloud_models_and_the_reference_model_have_prices(
    shipped: PriceTable,
) -> None:
    defaults = [f"openai/{m}" for m in OpenAISettings().models]
    defaults += [f"anthropic/{m}" for m in AnthropicSettings().models]
    unpriced = [model for model in defaults if shipped.lookup(model) is None]
    assert unpriced == []
    assert shipped.lookup(PricingSettings().reference_model) is not None


def test_an_unknown_model_has_no_price_rather_than_a_zero_one(shipped: PriceTable) -> None:
    assert shipped.lookup("openai/gpt-99") is None
    assert shipped.lookup("groq/llama-3.3-70b-versatile") is None
    assert shipped.lookup("gpt-4.1-mini") is None  # a name without its provider


def test_a_dated_snapshot_has_its_base_models_price(shipped: PriceTable) -> None:
    assert shipped.lookup("openai/gpt-4.1-mini-2025-04-14") == shipped.lookup("openai/gpt-4.1-mini")
    assert shipped.lookup("anthropic/claude-haiku-4-5-20251001") == shipped.lookup(
        "anthropic/claude-haiku-4-5"
    )
    # A suffix that is not a date is another model, not a snapshot.
    assert shipped.lookup("openai/gpt-4.1-mini-turbo") is None


def test_a_snapshot_priced_on_its_own_keeps_its_own_price(shipped: PriceTable) -> None:
    first = shipped.lookup("openai/gpt-4o-2024-05-13")
    assert first is not None and shipped.lookup("openai/gpt-4o") is not None
    assert first != shipped.lookup("openai/gpt-4o")


def test_overrides_win_over_the_shipped_table_and_add_models() -> None:
    table = PriceTable.shipped(
        [
            PriceOverride(provider="openai", model="gpt-4.1-mini", input=9.0, output=9.0),
            PriceOverride(provider="groq", model="llama-3.3-70b", input=0.59, output=0.79),
        ]
    )
    mini = table.lookup("openai/gpt-4.1-mini")
    assert mini is not None and mini.input_per_mtok == 9.0 and mini.source == "pricing.overrides"
    # The override also prices the model's dated snapshots.
    assert table.lookup("openai/gpt-4.1-mini-2025-04-14") == mini
    assert table.lookup("groq/llama-3.3-70b") is not None


def test_cost_bills_cache_reads_and_writes_at_their_own_rates() -> None:
    price = Price(2.0, 8.0, 0.5, "2026-06-21", "https://example.com", cache_write_per_mtok=2.5)
    assert price.cost(1_000_000, 0) == pytest.approx(2.0)
    assert price.cost(1_000_000, 1_000_000, cache_read_tokens=400_000) == pytest.approx(
        0.6 * 2.0 + 0.4 * 0.5 + 8.0
    )
    assert price.cost(
        1_000_000, 0, cache_read_tokens=400_000, cache_write_tokens=100_000
    ) == pytest.approx(0.5 * 2.0 + 0.4 * 0.5 + 0.1 * 2.5)


def test_cache_tokens_without_their_rate_leave_the_request_unpriced_not_free() -> None:
    no_rates = Price(5.0, 15.0, None, "2025-06-03", "https://example.com")
    assert no_rates.cost(1000, 10) is not None
    assert no_rates.cost(1000, 10, cache_read_tokens=1) is None
    reads_only = Price(5.0, 15.0, 0.5, "2025-06-03", "https://example.com")
    assert reads_only.cost(1000, 10, cache_read_tokens=600) is not None
    assert reads_only.cost(1000, 10, cache_write_tokens=1) is None


def test_shipped_anthropic_rows_price_cache_writes_where_a_source_gives_the_rate(
    shipped: PriceTable,
) -> None:
    sonnet = shipped.lookup("anthropic/claude-sonnet-4-6")
    assert sonnet is not None and sonnet.cache_write_per_mtok == 3.75
    assert sonnet.cost(1_000_000, 0, cache_write_tokens=1_000_000) == pytest.approx(3.75)
    # No source gives this model's cache-write rate: a write leaves the request unpriced.
    opus = shipped.lookup("anthropic/claude-opus-5")
    assert opus is not None and opus.cache_write_per_mtok is None
    assert opus.cost(1000, 10, cache_write_tokens=500) is None


def test_a_long_prompt_pays_the_long_rates_on_every_token(shipped: PriceTable) -> None:
    haiku = shipped.lookup("anthropic/claude-haiku-5-5")
    assert haiku is not None and haiku.long_prompt == LongPromptPrice(100_000, 0.5, 2.5, 0.05)
    assert haiku.cost(100_000, 1000) == pytest.approx((100_000 * 0.1 + 1000 * 0.5) / 1e6)
    assert haiku.cost(100_001, 1000) == pytest.approx((100_001 * 0.5 + 1000 * 2.5) / 1e6)


def test_a_malformed_table_is_refused_with_its_origin() -> None:
    with pytest.raises(ValueError, match=r"mine\.json"):
        PriceTable.from_json('{"prices": [{"provider": "x", "model": "y"}]}', origin="mine.json")
    row = '{"provider": "x", "model": "y", "input": -1, "output": 1, "date": "d", "source": "s"}'
    with pytest.raises(ValueError, match=r"mine\.json.*>= 0"):
        PriceTable.from_json('{"prices": [' + row + "]}", origin="mine.json")
