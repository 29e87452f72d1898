"""scripts/router_whole.py: what ``hybrid calibrate`` saves, against a fit on a part, read on
prompts none of the fits saw.

The generated items are wrong when they hold a digit, and so are the "real" ones: every fit
learns it, and reads the real prompts well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from scripts_import import script

from hybrid.generation import Message
from hybrid.routing.calibration.fitting import calibrate
from hybrid.routing.calibration.item import CalibrationItem, Words
from hybrid.routing.calibration.items import calibration_set


@pytest.fixture(scope="module")
def whole() -> Iterator[ModuleType]:
    with script("router_whole") as module:
        yield module


def labelled(module: ModuleType, items: list[CalibrationItem]) -> object:
    wrong = np.array([any(ch.isdigit() for ch in i.prompt) for i in items], dtype=np.float64)
    vectors = np.random.default_rng(0).normal(size=(len(items), 8))
    return module.Labelled(items, wrong, vectors)


def real(module: ModuleType) -> object:
    texts = [f"Please add {n} and {n + 3}." for n in range(20)]
    texts += [f"Say hello to {name}." for name in "Ann Bob Cy Dee Eve Fay Gus Hal Ivy Jo".split()]
    items = [
        CalibrationItem(f"real-{n}", "real", (Message("user", text),), Words(("ok",)), "word")
        for n, text in enumerate(texts)
    ]
    return labelled(module, items)


def test_each_seed_is_read_with_both_fits_and_the_shipped_fit_is_named(
    whole: ModuleType,
) -> None:
    generated = labelled(whole, calibration_set(0, per_category=12))
    items = generated.items  # type: ignore[attr-defined]
    vectors = list(generated.vectors)  # type: ignore[attr-defined]
    correct = [not w for w in generated.wrong]  # type: ignore[attr-defined]
    shipped = calibrate(items, correct, seed=1, vectors=vectors).model

    fitted = whole.part_or_whole(
        generated, real(whole), real(whole), seeds=(0, 1), orders=2, shipped=shipped
    )

    assert [fit.seed for fit in fitted] == [0, 1]
    assert [fit.shipped for fit in fitted] == [False, True]
    # Rounding in the last bits (another number of BLAS threads) is still the same fit.
    rounded = dataclasses.replace(shipped, weights=shipped.weights * (1 + 1e-13))
    assert whole.same_fit(rounded, shipped)
    assert not whole.same_fit(dataclasses.replace(shipped, weights=shipped.weights * 1.01), shipped)
    assert not whole.same_fit(
        dataclasses.replace(shipped, threshold=shipped.threshold + 0.01), shipped
    )
    for fit in fitted:
        for where in (fit.external, fit.traffic):
            assert set(where) == set(whole.FITS)
            assert all(value > 0.9 for value in where.values())  # digits rank first
        assert all(0 <= share <= 0.4 for share in fit.band_share.values())
        assert 0 <= fit.held_out <= 1


def fit(module: ModuleType, seed: int, part: float, every: float, *, shipped: bool) -> object:
    return module.Fitted(
        seed=seed,
        shipped=shipped,
        held_out=0.85,
        band_share={"part": 0.3, "every item": 0.0},
        external={"part": part, "every item": every},
        traffic={"part": part, "every item": every},
    )


def test_the_section_says_what_the_seeds_show(whole: ModuleType) -> None:
    steady = [fit(whole, 0, 0.60, 0.65, shipped=True), fit(whole, 1, 0.70, 0.66, shipped=False)]
    text = " ".join(whole.part_or_whole_section(steady, orders=3).split())  # lines wrapped
    assert "| 0 (shipped) | 0.850 | 0.600 | 0.600 | 30% | 0.650 | 0.650 | 0% |" in text
    assert "external 0.650 (0.600-0.700)" in text and "traffic 0.655 (0.650-0.660)" in text
    assert "moves less with the seed" in text and "at least as well on average" in text
    assert "The shipped calibration is seed 0's fit on every item." in text

    unsteady = [fit(whole, 0, 0.60, 0.50, shipped=False), fit(whole, 1, 0.61, 0.70, shipped=False)]
    text = " ".join(whole.part_or_whole_section(unsteady, orders=3).split())
    assert "moves not less" in text and "ranks one worse on average" in text
    assert "None of these fits is the shipped calibration" in text
