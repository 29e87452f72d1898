"""scripts/router_probe_recent.py: the model stage asked for every request, read beside recent
requests and averaged with the feature stage, at several weights and at the fitted
thresholds."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from scripts_import import script

from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.difficulty.probe import EVERY_WEIGHT, ProbeStage


@pytest.fixture(scope="module")
def mixing() -> Iterator[ModuleType]:
    with script("router_probe_recent") as module:
        yield module


class Reader:
    """Stands for a fitted read: the feature stage's scores (read beside recent requests),
    the default router's, the probe's, the guess factors and the fitted thresholds."""

    def __init__(
        self, base: np.ndarray, probe: np.ndarray, dim: int, *, every_threshold: float = 0.5
    ) -> None:
        self.base = base
        self.shipped = np.clip(base + 0.01, 0, 1)
        self.probe_scores = probe
        self.factors = np.ones(len(probe))  # no prompt offers a closed set
        self.threshold = 0.5
        self.probe = ProbeStage(
            np.zeros(dim),
            0.0,
            np.zeros(dim),
            np.ones(dim),
            (0.5, 0.5),
            0.5,
            every_threshold=every_threshold,
        )

    def recent(self, seed: int) -> dict[str, np.ndarray]:
        return {"features+recent": self.base, "two-stage+recent": self.shipped}


def kinds(mixing: ModuleType, seed: int) -> tuple[Any, Reader]:
    """Two kinds of prompt, told apart by the prompt vectors; one mostly answered wrong.  The
    shipped router cannot tell them apart; the probe can, through much noise."""
    rng = np.random.default_rng(seed)
    kind = np.repeat([0, 1], 100)
    wrong = (rng.random(200) < np.where(kind == 1, 0.8, 0.2)).astype(np.float64)
    vectors = np.zeros((200, 3))
    vectors[np.arange(200), kind] = 1.0
    vectors[5] = np.nan  # a prompt the model could not take: no vector
    items = calibration_set(0, per_category=20)[:200]
    data = mixing.Labelled(items, wrong, vectors)
    shipped = rng.random(200)
    probe = np.clip(np.where(kind == 1, 0.6, 0.4) + rng.normal(scale=0.3, size=200), 0, 1)
    return data, Reader(shipped, probe, 3)


def test_the_model_stage_read_beside_recent_requests_ranks_the_kinds(
    mixing: ModuleType,
) -> None:
    data, reader = kinds(mixing, 0)

    got = mixing.mixed(reader, data, orders=range(2), resamples=50)

    assert set(got.aurocs) == set(mixing.WEIGHTS)
    # The runtime's figures in the first order, with an interval around them.
    figure = got.first["AUROC"]
    assert figure.value == got.aurocs[EVERY_WEIGHT][0] and figure.low < figure.value < figure.high
    assert got.first["kept local @95%"].value == got.kept[EVERY_WEIGHT][0]
    assert got.aurocs[0.0] == (auroc(reader.base, data.wrong),) * 2
    assert got.shipped == (auroc(reader.shipped, data.wrong),) * 2
    assert len(got.kept[0.5]) == 2
    # Read beside recent requests of its kind, the probe's noise averages out.
    assert np.mean(got.aurocs[1.0]) > auroc(reader.probe_scores, data.wrong) + 0.05
    assert np.mean(got.aurocs[1.0]) > np.mean(got.aurocs[0.0]) + 0.2


def test_with_the_cascade_declining_answers_rank_first(mixing: ModuleType) -> None:
    data, reader = kinds(mixing, 3)
    # Without the answers nothing declines: the same ranking.
    plain = mixing.mixed(reader, data, orders=range(2))
    assert plain.cascaded == plain.aurocs[EVERY_WEIGHT]
    # Twenty wrong answers that decline rank above every other request.
    wrong = np.flatnonzero(data.wrong)[:20]
    answers = tuple(
        "I'm sorry, I can't answer this." if i in wrong else "Paris." for i in range(200)
    )
    told = mixing.Labelled(data.items, data.wrong, data.vectors, answers)

    got = mixing.mixed(reader, told, orders=range(2))

    assert all(c > a for c, a in zip(got.cascaded, got.aurocs[EVERY_WEIGHT], strict=True))


def test_the_thresholds_decide_as_the_runtime_does(mixing: ModuleType) -> None:
    data, reader = kinds(mixing, 2)
    strict = Reader(reader.base, reader.probe_scores, 3, every_threshold=0.0)

    got = mixing.mixed(strict, data, orders=range(2))

    # At the feature stage's threshold (0.5): the scores at or below it stay local.
    base = got.decided[mixing.BASE]
    kept = reader.base <= 0.5
    assert base.kept == (pytest.approx(kept.mean()),) * 2
    assert base.quality == (pytest.approx(1 - (data.wrong * kept).mean()),) * 2
    # At every_threshold 0, every request with a vector escalates (its score is above 0);
    # the one without a vector keeps the feature score and threshold.
    every = got.decided[mixing.EVERY]
    assert every.kept == (pytest.approx(float(reader.base[5] <= 0.5) / 200),) * 2
    assert every.quality[0] == pytest.approx(1 - data.wrong[5] * (reader.base[5] <= 0.5) / 200)


def test_the_weight_is_chosen_on_the_traffic_sets_and_every_weight_is_shown(
    mixing: ModuleType,
) -> None:
    data, reader = kinds(mixing, 1)
    useless = mixing.Labelled(data.items, data.wrong, data.vectors)
    blind = Reader(reader.shipped, np.full(200, 0.5), 3)
    collections = {
        "LOFO": mixing.mixed(blind, useless, orders=range(2)),
        "external": mixing.mixed(blind, useless, orders=range(2)),
        "traffic": mixing.mixed(reader, data, orders=range(2)),
    }

    chosen = mixing.chosen_weight(collections)
    section = mixing.probe_recent_section(collections)
    assert "bootstrap" not in section  # no resamples, no intervals
    with_intervals = {
        where: mixing.mixed(reader, data, orders=range(2), resamples=30) for where in collections
    }
    paragraph = " ".join(mixing.probe_recent_section(with_intervals).split())
    first = with_intervals["traffic"].first["AUROC"]
    assert f"traffic AUROC {first.text()}, kept local" in paragraph
    summary = " ".join(mixing.probe_recent_summary(collections).split())

    traffic = collections["traffic"].aurocs
    assert chosen == max(mixing.WEIGHTS, key=lambda weight: np.mean(traffic[weight]))
    assert chosen > 0
    table = section.split("| model stage weight |")[1].split("\n\n")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")]

    def marks(weight: float) -> str:
        on = [
            m
            for m, yes in (
                ("features+recent", weight == 0),
                ("runtime", weight == EVERY_WEIGHT),
                ("best on traffic", weight == chosen),
            )
            if yes
        ]
        return f" ({', '.join(on)})" if on else ""

    assert [row.split(" | ")[0] for row in rows] == [
        *(f"| {w:g}{marks(w)}" for w in mixing.WEIGHTS),
        "| two-stage+recent (the default)",
    ]
    assert all(row.count("|") == 8 for row in rows)
    assert f"In this run the best weight on the traffic sets is {chosen:g}." in " ".join(
        section.split()
    )
    assert f"at weight {EVERY_WEIGHT:g}" in summary
    before = np.mean(collections["traffic"].shipped)
    after = np.mean(traffic[EVERY_WEIGHT])
    assert f"traffic {before:.3f} to {after:.3f}" in summary
    cascade = np.mean(collections["traffic"].cascaded)
    assert "with the cascade as well: " in summary
    assert f"traffic {cascade:.3f}" in summary.split("as well:")[1]
    decided = section.split("| router, threshold |")[1]
    assert decided.count("| features+recent, at the feature stage's threshold") == 1
    assert decided.count('| model_stage = "every", at the probe\'s every_threshold') == 1
