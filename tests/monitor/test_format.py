"""Figures are written the way a person reads them: no exponents, no fake zeros."""

from __future__ import annotations

import pytest

from hybrid.monitor import format as fmt


@pytest.mark.parametrize(
    ("usd", "text"),
    [
        (0.0, "$0.00"),
        (0.0000312, "$0.0000312"),
        (0.0042, "$0.0042"),
        (0.0131, "$0.0131"),
        (0.31, "$0.31"),
        (4.27, "$4.27"),
        (1234.5, "$1,234"),
        (-0.5, "-$0.50"),
        (None, "?"),
    ],
)
def test_money_keeps_the_digits_its_size_needs(usd: float | None, text: str) -> None:
    assert fmt.money(usd) == text


def test_money_can_be_shorter_for_the_large_digits() -> None:
    assert fmt.money(0.0000312, significant=2) == "$0.000031"
    assert fmt.money(0.00497, significant=2) == "$0.005"


@pytest.mark.parametrize(
    ("value", "text"), [(950, "950"), (1804, "1.8k"), (12_400, "12k"), (3_400_000, "3.4M")]
)
def test_count(value: int, text: str) -> None:
    assert fmt.count(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.041, "41 ms"), (1.44, "1.4 s"), (125.0, "2m05s"), (None, "?")],
)
def test_seconds(value: float | None, text: str) -> None:
    assert fmt.seconds(value) == text


def test_sizes_and_percentages() -> None:
    assert fmt.size(8_123_456_789) == "7.6 GiB"
    assert fmt.size(512) == "512 B"
    assert fmt.percent(0.75, of_one=True) == "75%"
    assert fmt.percent(38.4) == "38%"
    assert fmt.percent(None) == "?"


def test_gauge_draws_the_empty_part_so_it_reads_without_colour() -> None:
    assert fmt.gauge(0.0, 10) == "░" * 10
    assert fmt.gauge(0.5, 10) == "█" * 5 + "░" * 5
    assert fmt.gauge(2.0, 4) == "████"
    assert fmt.gauge(0.05, 10) == "▌" + "░" * 9  # half a cell
    assert len(fmt.gauge(0.37, 10)) == 10
