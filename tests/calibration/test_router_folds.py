"""The pure parts of scripts/eval_router.py: bootstrap intervals, LOFO splits, fold fitting."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from scripts_import import script

from hybrid.generation import Message
from hybrid.routing.calibration.fitting import WORD_WEIGHT, WORD_WEIGHTS
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc, bootstrap_ci
from hybrid.routing.choices import offered
from hybrid.routing.difficulty.features import N_DENSE


@pytest.fixture(scope="module")
def folds() -> Iterator[ModuleType]:
    with script("router_folds") as module:
        yield module


def test_a_bootstrap_interval_is_seeded_and_brackets_the_figure() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(loc=3.0, size=400)

    def mean(idx: np.ndarray) -> float:
        return float(values[idx].mean())

    low, high = bootstrap_ci(mean, len(values), resamples=500, seed=1)

    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 / math.sqrt(400), rel=0.25)
    assert bootstrap_ci(mean, len(values), resamples=500, seed=1) == (low, high)
    assert bootstrap_ci(mean, len(values), resamples=500, seed=2) != (low, high)


def test_a_bootstrap_of_a_mostly_undefined_figure_has_no_interval() -> None:
    assert all(math.isnan(x) for x in bootstrap_ci(lambda idx: math.nan, 10, resamples=20))
    with pytest.raises(ValueError):
        bootstrap_ci(lambda idx: 0.0, 0)


def test_lofo_leaves_each_family_out_exactly_once(folds: ModuleType) -> None:
    families = ["a", "b", "a", "c", "b", "a"]
    splits = folds.lofo_splits(families)

    assert [name for name, _, _ in splits] == ["a", "b", "c"]
    for name, train, test in splits:
        assert {families[i] for i in test} == {name}
        assert name not in {families[i] for i in train}
        assert sorted([*train, *test]) == list(range(len(families)))
    with pytest.raises(ValueError, match="two families"):
        folds.lofo_splits(["a", "a"])


def test_figures_carry_intervals_and_the_oracle_keeps_every_right_answer_local(
    folds: ModuleType,
) -> None:
    wrong = np.array([1, 0] * 50, dtype=np.float64)
    oracle = folds.figures(wrong, wrong, seed=0, resamples=200)
    flat = folds.figures(np.zeros(100), wrong, seed=0, resamples=200)

    assert oracle["AUROC"].value == 1.0
    # 95 % quality with half the answers wrong: the oracle escalates 45 of the 50 wrong ones.
    assert oracle["kept local @95%"].value == pytest.approx(0.55)
    assert flat["AUROC"].value == 0.5
    assert flat["kept local @95%"].value == pytest.approx(0.1)
    assert flat["APGR"].low <= 0.5 <= flat["APGR"].high
    assert oracle["AUROC"].text() == "1.000 (1.000-1.000)"


def vectors_that_tell(folds: ModuleType, *, seed: int) -> Any:
    """Generated items with random grades, whose vectors' first value carries the grade."""
    items = calibration_set(0, per_category=10)
    rng = np.random.default_rng(seed)
    wrong = (rng.random(len(items)) < 0.5).astype(np.float64)
    vectors = rng.normal(size=(len(items), 16))
    vectors[:, 0] += 3.0 * (2 * wrong - 1)
    return folds.Labelled(items, wrong, vectors)


def test_routers_fitted_out_of_family_read_a_signal_the_vectors_carry(
    folds: ModuleType,
) -> None:
    data = vectors_that_tell(folds, seed=3)
    items, wrong = data.items, data.wrong
    data.vectors[5] = np.nan  # a prompt the model could not take

    scores, order = folds.lofo_scores(data, seed=0)

    assert order == list(dict.fromkeys(item.category for item in items))
    for name in folds.FITTED:
        assert not np.isnan(scores[name]).any()
    assert auroc(scores["probe"], wrong) > 0.85
    assert auroc(scores["two-stage"], wrong) > auroc(scores["features"], wrong)
    baselines = folds.baseline_scores(data)
    assert set(baselines) == set(folds.BASELINES)
    assert folds.digit_count(items[0]) == sum(ch.isdigit() for ch in items[0].messages[-1].content)


def test_the_two_stages_read_the_vectors_signal_on_a_family_left_out(
    folds: ModuleType,
) -> None:
    data = vectors_that_tell(folds, seed=5)
    family, train_idx, test_idx = folds.lofo_splits(data.families)[0]
    test = data.subset(test_idx)
    test.vectors[0] = np.nan  # a prompt the model could not take keeps its feature score

    scores = folds.fit_and_score(data.subset(train_idx), test, seed=0)

    both = scores["two-stage"]
    assert both.shape == (len(test_idx),) and np.isfinite(both).all()
    assert both[0] == scores["features"][0]
    assert auroc(both[1:], test.wrong[1:]) > 0.85, family


def test_scores_read_beside_recent_ones_rank_kinds_by_their_mean(folds: ModuleType) -> None:
    # Two kinds of request (two directions of the features); one is mostly answered wrong.
    # Each own score is its kind's rate plus much noise, as on prompts of kinds not seen.
    rng = np.random.default_rng(0)
    kind = np.repeat([0, 1], 100)
    wrong = (rng.random(200) < np.where(kind == 1, 0.8, 0.2)).astype(np.float64)
    own = np.clip(np.where(kind == 1, 0.6, 0.4) + rng.normal(scale=0.3, size=200), 0, 1)
    units = np.zeros((200, 4))
    units[np.arange(200), kind] = 1.0

    read = folds.beside_recent(own, units, seed=0)

    first = np.random.default_rng(0).permutation(200)[0]
    assert read[first] == own[first]  # nothing before it
    assert auroc(read, wrong) > auroc(own, wrong) + 0.05
    assert np.array_equal(read, folds.beside_recent(own, units, seed=0))  # seeded


def test_only_the_items_asked_for_are_read_beside_recent_ones_and_remembered(
    folds: ModuleType,
) -> None:
    own = np.array([0.9, 0.1, 0.1, 0.1])
    units = np.tile([1.0, 0.0], (4, 1))  # all alike
    reading = np.array([False, True, True, True])

    read = folds.beside_recent(own, units, seed=0, reading=reading)

    assert read[0] == own[0]  # not read
    # Nor remembered: the others, all 0.1, are read beside 0.1s only.
    assert np.allclose(read[1:], 0.1)
    assert not np.allclose(folds.beside_recent(own, units, seed=0)[1:], 0.1)


def test_the_recent_routers_are_read_in_several_arrival_orders(folds: ModuleType) -> None:
    data = vectors_that_tell(folds, seed=7)
    _, train_idx, test_idx = folds.lofo_splits(data.families)[0]
    test = data.subset(test_idx)
    read = folds.fit_and_read(data.subset(train_idx), test, seed=0)

    spread = folds.over_orders(read, test.wrong, seeds=range(3))

    assert set(spread) == {"features+recent", "two-stage+recent"}
    first = read.recent(0)
    for name, statistics in spread.items():
        assert statistics["AUROC"][0] == auroc(first[name], test.wrong)
        assert len(set(statistics["AUROC"])) > 1  # the order moves the figure
        assert all(0 <= kept <= 1 for kept in statistics["kept local @95%"])
    assert np.array_equal(read.scores(0)["two-stage+recent"], first["two-stage+recent"])


def test_a_subset_keeps_its_answers_and_what_they_open_with(folds: ModuleType) -> None:
    items = calibration_set(0, per_category=1)[:3]
    answers = ("Yes, it is.", "I'm sorry, I don't know.", "4")
    data = folds.Labelled(items, np.array([1.0, 0.0, 1.0]), np.zeros((3, 2)), answers)

    part = data.subset([2, 0, 1])

    assert part.answers == ("4", "Yes, it is.", "I'm sorry, I don't know.")
    assert part.openings == ("4", "yes", "i'm")
    assert part.declined.tolist() == [0.0, 0.0, 1.0]
    assert [item.id for item in part.items] == [items[2].id, items[0].id, items[1].id]
    unknown = folds.Labelled(items, data.wrong, data.vectors).subset([1])
    assert unknown.openings == () and unknown.declined.tolist() == [0.0]


def test_the_word_weight_reaches_the_feature_stage_and_its_recent_requests(
    folds: ModuleType,
) -> None:
    data = vectors_that_tell(folds, seed=9)
    _, train_idx, test_idx = folds.lofo_splits(data.families)[0]
    train, test = data.subset(train_idx), data.subset(test_idx)

    plain = folds.fit_and_read(train, test, seed=0, options=folds.FitOptions(word_weight=0.0))
    worded = folds.fit_and_read(train, test, seed=0, options=folds.FitOptions(word_weight=1.0))

    assert folds.FitOptions().word_weight == WORD_WEIGHT
    assert not plain.units[:, N_DENSE:].any() and worded.units[:, N_DENSE:].any()
    assert not np.allclose(plain.feature, worded.feature)


@pytest.fixture(scope="module")
def report() -> Iterator[ModuleType]:
    with script("router_report") as module:
        yield module


def test_the_word_weight_is_chosen_on_the_traffic_sets_alone(report: ModuleType) -> None:
    def place(*aurocs: float) -> dict[str, dict[str, list[float]]]:
        return {report.SHIPPED: {"AUROC": list(aurocs), "kept local @95%": [0.1] * len(aurocs)}}

    # The words help under LOFO and on the external sets, and hurt on the traffic sets.
    by_weight = {
        0.0: {"LOFO": place(0.70, 0.72), "traffic": place(0.66, 0.64), "external": place(0.6)},
        1.0: {"LOFO": place(0.80, 0.82), "traffic": place(0.60, 0.61), "external": place(0.7)},
    }
    assert report.chosen_word_weight(by_weight) == 0.0
    by_weight[1.0]["traffic"] = place(0.70, 0.71)
    assert report.chosen_word_weight(by_weight) == 1.0
    by_weight[1.0]["traffic"] = place(0.64, 0.66)  # a tie: the smaller weight
    assert report.chosen_word_weight(by_weight) == 0.0

    table = report.word_weight_table(by_weight)
    rows = table.splitlines()[2:]
    assert rows[0].startswith(f"| 0 (chosen{', shipped' if WORD_WEIGHT == 0 else ''}) |")
    assert "0.650 (0.640-0.660)" in rows[0] and "0.710 (0.700-0.720)" in rows[0]
    assert rows[1].startswith("| 1 |" if WORD_WEIGHT != 1 else "| 1 (shipped) |")


def test_the_report_reads_the_shipped_router_at_every_word_weight(folds: ModuleType) -> None:
    data = vectors_that_tell(folds, seed=11)
    kinds = list(dict.fromkeys(data.families))[:4]  # four families keep the folds quick
    data = data.subset([i for i, family in enumerate(data.families) if family in kinds])
    half = np.arange(len(data.items)) % 2 == 0
    external, traffic = data.subset(np.flatnonzero(half)), data.subset(np.flatnonzero(~half))
    shipped = (
        folds.lofo_folds(data, seed=0)[0],
        folds.fit_and_read(data, external, seed=0),
        folds.fit_and_read(data, traffic, seed=0),
    )

    with script("eval_router") as evaluation:
        fitted = {WORD_WEIGHT: shipped} | {
            weight: evaluation.fit_all(data, external, traffic, seed=0, word_weight=weight)
            for weight in WORD_WEIGHTS
            if weight != WORD_WEIGHT
        }
        by_weight = evaluation.word_weight_orders(data, external, traffic, fitted=fitted)

    assert set(by_weight) == set(WORD_WEIGHTS)
    for places in by_weight.values():
        assert set(places) == {"LOFO", "traffic", "external"}
        for figures in places.values():
            assert len(figures["two-stage+recent"]["AUROC"]) == folds.ORDERS
    assert by_weight[WORD_WEIGHT]["LOFO"] == folds.over_orders(
        shipped[0], data.wrong, seeds=range(folds.ORDERS)
    )
    assert by_weight[WORD_WEIGHT]["traffic"] == folds.over_orders(
        shipped[2], traffic.wrong, seeds=range(folds.ORDERS)
    )
    assert by_weight[0.0]["traffic"] != by_weight[1.0]["traffic"]


def test_the_report_names_the_set_the_served_router_scores_easiest(report: ModuleType) -> None:
    from types import SimpleNamespace

    families = ["trivia"] * 4 + ["yes_no"] * 4
    wrong = np.array([1, 1, 1, 1, 1, 0, 0, 1], dtype=np.float64)
    scores = np.array([0.2, 0.3, 0.2, 0.3, 0.8, 0.7, 0.9, 0.8])

    def evaluation(served: np.ndarray) -> Any:
        return SimpleNamespace(
            external=SimpleNamespace(families=families, wrong=wrong),
            external_scores={report.NOW: served},
            per_set={"trivia": {}, "yes_no": {}},
        )

    line = report.lowest_set(evaluation(scores))
    assert line.startswith(
        f"{report.NOW} scores trivia lowest on average (0.25; the other set 0.80)"
    )
    assert "100% of trivia wrong and 50% of the other sets" in line
    assert "ranked below easier ones" in line
    line = report.lowest_set(evaluation(1 - scores))
    assert "scores yes_no lowest" in line and "ranked where it belongs" in line


def test_an_answer_outside_the_options_its_prompt_offered_is_no_answer(
    folds: ModuleType,
) -> None:
    items = calibration_set(0, per_category=1)
    choice = next(item for item in items if item.kind == "choice")
    facts = next(item for item in items if item.category == "facts")
    answers = ("Venus is the second planet.", "D) Venus", "Madrid.", "I don't know.")
    picked = [choice, choice, facts, facts]
    data = folds.Labelled(picked, np.ones(4), np.zeros((4, 2)), answers, np.full(4, 0.9))

    assert data.outside.tolist() == [1.0, 0.0, 0.0, 0.0]  # "Madrid." was offered no set
    assert data.declined.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert data.no_answer.tolist() == [1.0, 0.0, 0.0, 1.0]
    # Discarded by the cascade whatever the model's confidence, as a declining answer is.
    assert data.discarded(0.35).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert data.subset([1, 0]).outside.tolist() == [0.0, 1.0]
    assert folds.Labelled(picked, data.wrong, data.vectors).outside.tolist() == [0.0] * 4


def test_every_router_halves_the_scores_of_yes_or_no_prompts_as_the_runtime_does(
    folds: ModuleType,
) -> None:
    data = vectors_that_tell(folds, seed=3)
    # The multiple-choice family left out, with one fact asked as yes or no among the rest.
    _, train_idx, test_idx = next(
        split for split in folds.lofo_splits(data.families) if split[0] == "choice"
    )
    fact, plain_fact = [i for i, item in enumerate(data.items) if item.category == "facts"][:2]
    data.items[fact] = dataclasses.replace(
        data.items[fact], messages=(Message("user", "Is Paris in France? Answer yes or no."),)
    )
    test = data.subset([*test_idx, fact, plain_fact])
    read = folds.fit_and_read(data.subset(train_idx), test, seed=0)
    factors = folds.guess_factors(test.items)
    # Lettered options are offered but left as they are; yes or no is halved.
    assert [offered(item.messages) is not None for item in test.items] == [True] * (
        len(test_idx) + 1
    ) + [False]
    assert factors.tolist() == [1.0] * len(test_idx) + [0.5, 1.0]

    plain = dataclasses.replace(read, guess=None)
    moved, alone = read.scores(0), plain.scores(0)
    for name in ("features", "probe", "features+recent"):
        assert np.allclose(moved[name], alone[name] * factors)
    # The two stages are each moved before they are settled: the same where nothing is.
    same = factors == 1.0
    assert np.allclose(moved["two-stage+recent"][same], alone["two-stage+recent"][same])
    assert moved["two-stage+recent"][-2] < alone["two-stage+recent"][-2]


def test_the_cascade_keeps_an_unsure_answer_of_yes_or_no_to_a_question_asking_for_one(
    folds: ModuleType,
) -> None:
    items = calibration_set(0, per_category=1)
    facts = next(item for item in items if item.category == "facts")
    asked = dataclasses.replace(
        facts, messages=(Message("user", "Is Paris in France? Answer yes or no."),)
    )
    picked = [asked, asked, asked, facts]
    answers = ("Yes.", "Paris.", "I don't know.", "Yes.")
    data = folds.Labelled(picked, np.ones(4), np.zeros((4, 2)), answers, np.full(4, 0.2))

    # Kept whatever its confidence; neither yes nor no, or declining: discarded; the same
    # unsure "Yes." to a question asking for nothing in particular: discarded.
    assert data.discarded(0.35).tolist() == [0.0, 1.0, 1.0, 1.0]
    # As the cascade read it before it kept such answers: the unsure "Yes." goes too.
    assert data.discarded(0.35, keep_yes_no=False).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert data.discarded(0.1, keep_yes_no=False).tolist() == [0.0, 1.0, 1.0, 0.0]
