"""Which fits may replace the calibration in use: enough held-out evidence, no worse than length."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid.cli.calibrate_run import rejection_message
from hybrid.routing.calibration.acceptance import review
from hybrid.routing.calibration.fitting import Calibration
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel

ITEMS = calibration_set(0, per_category=12)
MODEL = DifficultyModel(
    weights=np.zeros(N_FEATURES),
    bias=0.0,
    threshold=0.5,
    feature_version=FEATURE_VERSION,
    mean=np.zeros(N_FEATURES),
    scale=np.ones(N_FEATURES),
)


def fit(right: int, wrong: int, *, auroc: float = 0.8, length_auroc: float = 0.6) -> Calibration:
    """A fit measured on ``right + wrong`` held-out items with the given AUROCs."""
    labels = np.array([0.0] * right + [1.0] * wrong)
    held_out = ITEMS[: right + wrong]
    return Calibration(MODEL, [], held_out, labels, np.zeros(len(labels)), auroc, length_auroc)


@pytest.mark.parametrize(
    ("right", "wrong"),
    [(10, 40), (40, 10), (25, 25)],
)
def test_a_fit_at_the_minimums_that_beats_length_is_accepted(right: int, wrong: int) -> None:
    assert review(fit(right, wrong)) is None


@pytest.mark.parametrize(
    ("right", "wrong"),
    [(10, 39), (9, 41), (41, 9)],
)
def test_below_any_minimum_the_fit_is_refused(right: int, wrong: int) -> None:
    rejection = review(fit(right, wrong))
    assert rejection is not None and rejection.reason == "sample"
    assert f"{right + wrong} items were held out" in rejection.message
    assert f"{right} answered right and {wrong} wrong" in rejection.message


def test_the_growth_needed_comes_from_the_scarcer_kind_of_answer() -> None:
    rejection = review(fit(3, 15))
    assert rejection is not None
    assert rejection.growth == pytest.approx(10 / 3)  # more than 50 / 18 for the item count
    # 5 per category times 10/3, with a quarter's head-room, rounded up to tens.
    assert "--per-category 30 or more" in rejection_message(rejection, 5, None)


def test_when_every_held_out_answer_is_wrong_the_default_is_suggested() -> None:
    rejection = review(fit(0, 18))
    assert rejection is not None and rejection.growth is None
    message = rejection_message(rejection, 5, None)
    assert "0 answered right and 18 wrong" in message
    assert "--per-category 60 or more" in message


def test_a_fit_worse_than_prompt_length_is_refused_and_a_tie_is_not() -> None:
    rejection = review(fit(25, 25, auroc=0.61, length_auroc=0.62))
    assert rejection is not None and rejection.reason == "length"
    assert "held-out AUROC 0.610, against 0.620" in rejection.message
    assert review(fit(25, 25, auroc=0.62, length_auroc=0.62)) is None
