"""The model stage's fitting: a probe on synthetic prompt vectors, its band and threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybrid.routing.calibration.fitting import calibrate
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.calibration.probe_fitting import (
    band_around,
    cross_fitted_two_stage,
    fit_blend,
    fold_ids,
    train_probe,
    two_stage_scores,
)
from hybrid.routing.difficulty.model import DifficultyModel, choose_threshold
from hybrid.routing.difficulty.probe import ProbeStage, every_scores

DIM = 24


def synthetic(n: int, seed: int, *, signal: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Vectors whose first dimension tells wrong answers apart; the rest is noise."""
    rng = np.random.default_rng(seed)
    wrong = (rng.random(n) < 0.5).astype(np.float64)
    vectors = rng.normal(size=(n, DIM)) * 3.0 + 10.0
    vectors[:, 0] += signal * (2 * wrong - 1)
    return vectors, wrong


def test_the_probe_finds_the_direction_that_separates_wrong_answers() -> None:
    vectors, wrong = synthetic(240, seed=1)
    groups = [f"family-{i % 4}" for i in range(240)]
    fitted = train_probe(
        vectors,
        wrong,
        feature_scores=np.full(240, 0.5),
        feature_threshold=0.5,
        groups=groups,
        seed=0,
    )
    test_vectors, test_wrong = synthetic(400, seed=2)
    scores = np.array([fitted.probe.score(v) for v in test_vectors])

    assert auroc(scores, test_wrong) > 0.8
    assert fitted.cv_probe_auroc > 0.8
    # The weight of the telling dimension dominates the noise dimensions'.
    weights = np.abs(fitted.probe.weights)
    assert weights[0] > 3 * np.median(weights[1:])


def test_a_useless_feature_stage_hands_the_whole_range_to_the_probe() -> None:
    vectors, wrong = synthetic(200, seed=3)
    constant = np.full(200, 0.4)
    fitted = train_probe(
        vectors, wrong, feature_scores=constant, feature_threshold=0.5, groups=None, seed=0
    )

    assert fitted.probe.in_band(0.4)
    assert fitted.cv_two_stage_auroc > fitted.cv_feature_auroc


def test_a_perfect_feature_stage_keeps_the_narrowest_band() -> None:
    vectors, wrong = synthetic(200, seed=4, signal=0.0)  # the probe sees only noise
    feature = 0.2 + 0.6 * wrong  # already separates every item
    fitted = train_probe(
        vectors, wrong, feature_scores=feature, feature_threshold=0.5, groups=None, seed=0
    )

    assert fitted.band_share == 0.0
    assert fitted.cv_two_stage_auroc == pytest.approx(1.0)


def test_the_two_stage_figure_is_not_flattered_by_the_choice_of_band() -> None:
    shares = (0.0, 0.1, 0.2, 0.3, 0.4)
    best, figure = [], []
    for seed in range(40):
        # Neither stage knows anything: every band ranks at 0.5 but for chance.
        rng = np.random.default_rng(seed)
        wrong = (rng.random(200) < 0.5).astype(np.float64)
        feature, settled = rng.random(200), rng.random(200)
        judged = np.ones(200, dtype=bool)
        best.append(
            max(
                auroc(two_stage_scores(feature, settled, band_around(feature, 0.5, s)), wrong)
                for s in shares
            )
        )
        figure.append(
            cross_fitted_two_stage(feature, settled, wrong, judged, 0.5, shares, seed=seed)
        )
    # The best band's own AUROC carries the luck that made it best; the figure ranks each half
    # with the band the other half chose, and stays at what the stages know.
    assert np.mean(best) > np.mean(figure) + 0.003
    assert abs(np.mean(figure) - 0.5) < 0.01


def test_the_two_stage_figure_of_one_band_is_its_auroc_on_the_judged_items() -> None:
    rng = np.random.default_rng(8)
    wrong = (rng.random(300) < 0.5).astype(np.float64)
    feature = np.clip(0.5 + 0.15 * (2 * wrong - 1) + rng.normal(0, 0.25, 300), 0.01, 0.99)
    settled = rng.random(300)
    judged = np.ones(300, dtype=bool)
    judged[::3] = False
    ranked = two_stage_scores(feature, settled, band_around(feature, 0.5, 0.2))
    figure = cross_fitted_two_stage(feature, settled, wrong, judged, 0.5, (0.2,), seed=0)
    assert figure == pytest.approx(auroc(ranked[judged], wrong[judged]))
    assert figure != pytest.approx(auroc(ranked, wrong))


def test_fitting_is_deterministic_and_whitened_components_fold_into_plain_weights() -> None:
    # Low-rank vectors (as hidden states are): three latent factors, one of them telling.
    rng = np.random.default_rng(5)
    wrong = (rng.random(150) < 0.5).astype(np.float64)
    latent = rng.normal(size=(150, 3))
    latent[:, 0] += 2.0 * (2 * wrong - 1)
    vectors = latent @ rng.normal(size=(3, DIM)) + 0.05 * rng.normal(size=(150, DIM))
    kwargs = {
        "feature_scores": np.full(150, 0.5),
        "feature_threshold": 0.5,
        "groups": None,
        "seed": 7,
        "components": 8,
    }
    first = train_probe(vectors, wrong, **kwargs)  # type: ignore[arg-type]
    again = train_probe(vectors, wrong, **kwargs)  # type: ignore[arg-type]

    assert first.probe.to_json() == again.probe.to_json()
    assert first.probe.dim == DIM  # one weight per dimension of the vector, not per component
    scores = np.array([first.probe.score(v) for v in vectors])
    assert auroc(scores, wrong) > 0.8


def test_the_blend_weighs_both_stages_on_the_training_items_scale() -> None:
    # The probe's training scores spread widely and the feature stage's narrowly, so a step
    # in the feature score counts for more than the same step in the probe's.
    blend = fit_blend(np.array([0.45, 0.5, 0.55]), np.array([0.1, 0.5, 0.9]))
    scores = blend.combine(np.array([0.55, 0.5, 0.5]), np.array([0.5, 0.55, 0.5]))

    assert scores[2] == pytest.approx(0.5, abs=1e-9)  # both at their training mean
    assert scores[0] > scores[1] > scores[2]
    # Each stage counts alone too.
    assert blend.combine(np.array([0.2, 0.8]), np.array([0.5, 0.5])).argmax() == 1
    assert blend.combine(np.array([0.5, 0.5]), np.array([0.8, 0.2])).argmax() == 0


def test_the_runtime_settles_the_band_as_the_fit_scored_it() -> None:
    vectors, wrong = synthetic(200, seed=8)
    rng = np.random.default_rng(8)
    feature = np.clip(0.5 + 0.15 * (2 * wrong - 1) + 0.2 * rng.normal(size=200), 0.01, 0.99)
    fitted = train_probe(
        vectors, wrong, feature_scores=feature, feature_threshold=0.5, groups=None, seed=0
    )
    probe = fitted.probe
    assert probe.blend is not None and fitted.cv_probe_scores is not None
    probe_scores = np.array([probe.score(v) for v in vectors])

    settled = [probe.settle(f, p) for f, p in zip(feature, probe_scores, strict=True)]

    assert settled == pytest.approx(list(probe.blend.combine(feature, probe_scores)))
    # Both stages carry signal, so together they rank better than either alone.
    assert auroc(np.array(settled), wrong) > max(auroc(feature, wrong), auroc(probe_scores, wrong))
    # A probe written before the blend existed settles on its own score.
    legacy = ProbeStage.from_json({k: v for k, v in probe.to_json().items() if k != "blend"})
    assert legacy.blend is None and legacy.settle(0.9, 0.2) == 0.2
    assert ProbeStage.from_json(probe.to_json()).blend == probe.blend
    # Asked for every request, the threshold is the fewest-mistakes one on the average of the
    # two stages' out-of-fold scores of every item.
    every = every_scores(feature, fitted.cv_probe_scores)
    assert probe.every_threshold == choose_threshold(every, wrong)


def test_one_class_of_answers_still_gives_a_usable_probe() -> None:
    vectors, _ = synthetic(30, seed=6)
    fitted = train_probe(
        vectors,
        np.ones(30),
        feature_scores=np.full(30, 0.9),
        feature_threshold=0.5,
        groups=None,
        seed=0,
    )

    assert np.isnan(fitted.cv_probe_auroc)
    assert fitted.probe.score(vectors[0]) > 0.5
    assert fitted.probe.every_threshold is None  # nothing to choose it on


def test_mismatched_inputs_are_refused() -> None:
    vectors, wrong = synthetic(20, seed=7)
    with pytest.raises(ValueError, match="same items"):
        train_probe(
            vectors[:10],
            wrong,
            feature_scores=np.zeros(20),
            feature_threshold=0.5,
            groups=None,
            seed=0,
        )


def test_folds_leave_whole_families_out_when_there_are_enough() -> None:
    wrong = np.array([0, 1] * 30, dtype=np.float64)
    groups = [f"f{i % 6}" for i in range(60)]
    folds = fold_ids(wrong, groups, seed=0)

    assert folds is not None
    for family in set(groups):
        assert len({int(folds[i]) for i in range(60) if groups[i] == family}) == 1
    assert len(set(folds.tolist())) == 5
    assert fold_ids(np.ones(10), None, seed=0) is None


def test_the_two_stage_score_ranks_above_band_then_band_by_probe_then_below() -> None:
    feature = np.array([0.9, 0.5, 0.5, 0.1])
    probe = np.array([0.0, 0.2, 0.8, 1.0])
    combined = two_stage_scores(feature, probe, (0.3, 0.7))

    assert list(np.argsort(-combined)) == [0, 2, 1, 3]


def test_a_band_holds_the_share_asked_for_around_the_threshold() -> None:
    scores = np.linspace(0.0, 1.0, 101)
    low, high = band_around(scores, 0.5, 0.2)

    assert low == pytest.approx(0.4, abs=0.01)
    assert high == pytest.approx(0.6, abs=0.01)
    assert band_around(scores, 0.5, 1.0) == (0.0, 1.0)
    assert band_around(scores, 0.5, 0.0) == (0.5, 0.5)
    # Near an end the band slides inward rather than shrinking.
    low, high = band_around(scores, 0.02, 0.4)
    assert low == pytest.approx(0.0)
    assert high == pytest.approx(0.4, abs=0.01)


def test_calibrate_with_prompt_vectors_ships_a_probe_that_round_trips() -> None:
    items = calibration_set(0, per_category=12)
    rng = np.random.default_rng(0)
    correct = [bool(rng.random() < 0.5) for _ in items]
    vectors = [np.concatenate([[0.0 if ok else 3.0], rng.normal(size=DIM - 1)]) for ok in correct]
    vectors[0] = None  # a prompt the model could not take: no vector, still fitted around

    calibration = calibrate(items, correct, seed=0, vectors=vectors)
    model = calibration.model

    assert model.probe is not None
    assert model.probe.dim == DIM
    assert calibration.held_out_two_stage_scores is not None
    assert model.meta["held_out_two_stage_auroc"] is not None
    assert "probe_l2" in model.meta
    loaded = DifficultyModel.from_json(json.loads(json.dumps(model.to_json())))
    assert loaded.probe is not None
    assert loaded.probe.to_json() == model.probe.to_json()


def test_calibrate_without_vectors_keeps_the_feature_stage_alone() -> None:
    items = calibration_set(0, per_category=6)
    correct = [i % 2 == 0 for i in range(len(items))]
    calibration = calibrate(items, correct, seed=0)

    assert calibration.model.probe is None
    assert calibration.held_out_two_stage_scores is None
    with pytest.raises(ValueError, match="prompt vectors"):
        calibrate(items, correct, seed=0, vectors=[None])


def test_weights_of_one_change_nothing_and_heavier_items_pull_the_fit() -> None:
    vectors, wrong = synthetic(200, seed=5)
    # Half the items say the opposite on a second dimension; weighing them up turns its sign.
    vectors[:, 1] = np.where(np.arange(200) < 100, 1.0, -1.0) * (2 * wrong - 1) * 2.0 + 10.0
    kwargs = {"feature_scores": np.full(200, 0.5), "feature_threshold": 0.5, "groups": None}
    plain = train_probe(vectors, wrong, seed=0, **kwargs)  # type: ignore[arg-type]
    ones = train_probe(vectors, wrong, seed=0, sample_weight=np.ones(200), **kwargs)  # type: ignore[arg-type]
    assert ones.probe.weights.tolist() == plain.probe.weights.tolist()
    heavy = np.where(np.arange(200) < 100, 8.0, 1.0)
    pulled = train_probe(vectors, wrong, seed=0, sample_weight=heavy, **kwargs)  # type: ignore[arg-type]
    # Unweighted, the two halves cancel on that dimension; weighted, the first half wins.
    assert abs(plain.probe.weights[1]) < 0.05
    assert pulled.probe.weights[1] > 0.1


def test_the_judged_items_alone_choose_the_band_and_give_the_figures() -> None:
    vectors, wrong = synthetic(300, seed=6)
    rng = np.random.default_rng(7)
    # The feature stage ranks the first 200 items perfectly and the last 100 by chance.
    feature = np.where(wrong == 1, 0.8, 0.2)
    feature[200:] = rng.uniform(0.3, 0.7, size=100)
    judged = np.arange(300) >= 200
    kwargs = {"feature_scores": feature, "feature_threshold": 0.5, "groups": None, "seed": 0}
    on_all = train_probe(vectors, wrong, **kwargs)  # type: ignore[arg-type]
    on_judged = train_probe(vectors, wrong, judged=judged, **kwargs)  # type: ignore[arg-type]
    assert on_judged.cv_feature_auroc == pytest.approx(auroc(feature[judged], wrong[judged]))
    assert on_judged.cv_feature_auroc < 0.7 < on_all.cv_feature_auroc
    # The judged items' feature scores sit around the threshold: a band lets the probe order
    # them, and it does better there than the feature stage.
    assert on_judged.band_share > 0
    assert on_judged.cv_two_stage_auroc > on_judged.cv_feature_auroc + 0.1


@pytest.mark.parametrize(
    ("weights", "judged", "message"),
    [
        (np.zeros(40), None, "sample_weight"),
        (np.ones(39), None, "sample_weight"),
        (None, np.ones(39, dtype=bool), "judged"),
    ],
)
def test_weights_and_judged_items_must_describe_every_item(
    weights: np.ndarray | None, judged: np.ndarray | None, message: str
) -> None:
    vectors, wrong = synthetic(40, seed=8)
    with pytest.raises(ValueError, match=message):
        train_probe(
            vectors,
            wrong,
            feature_scores=np.full(40, 0.5),
            feature_threshold=0.5,
            groups=None,
            seed=0,
            sample_weight=weights,
            judged=judged,
        )
