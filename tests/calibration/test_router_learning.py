"""scripts/router_learning.py: the router refitted on labelled traffic, as the server refits.

The generated items are wrong when they hold a digit; the "traffic" is wrong when it mentions
a zebra, which the calibrated model never learned.  Labels of some requests teach it, the
refit is adopted, and the held-out requests rank better.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from random import Random
from types import ModuleType

import numpy as np
import pytest
from scripts_import import script

from hybrid.generation import Message
from hybrid.routing.calibration.item import CalibrationItem, Words
from hybrid.routing.calibration.items import calibration_set

WORDS = "please tell me about the garden river music table window story colour".split()


@pytest.fixture(scope="module")
def learning() -> Iterator[ModuleType]:
    with script("router_learning") as module:
        yield module


def generated(module: ModuleType) -> object:
    items = calibration_set(0, per_category=20)
    wrong = np.array([any(ch.isdigit() for ch in i.prompt) for i in items], dtype=np.float64)
    vectors = np.random.default_rng(0).normal(size=(len(items), 8))
    return module.Labelled(items, wrong, vectors)


def traffic(module: ModuleType, per_set: int) -> object:
    rng = Random(1)
    items, wrong = [], []
    for name in ("notes", "questions"):
        for number in range(per_set):
            zebra = rng.random() < 0.5
            words = [rng.choice(WORDS) for _ in range(rng.randint(5, 12))]
            if zebra:
                words.insert(rng.randrange(len(words) + 1), "zebra")
            text = " ".join(words)
            answer = Words(("ok",))
            items.append(
                CalibrationItem(f"{name}-{number}", name, (Message("user", text),), answer, "word")
            )
            wrong.append(zebra)
    vectors = np.random.default_rng(2).normal(size=(len(items), 8))
    return module.Labelled(items, np.array(wrong, dtype=np.float64), vectors)


def test_labelled_traffic_is_learned_and_the_held_out_requests_rank_better(
    learning: ModuleType,
) -> None:
    results, reference = learning.learn_from_traffic(
        generated(learning), traffic(learning, 120), seed=0, repeats=2, labels=(0, 60)
    )

    before, after, local = results
    assert (before.labels, after.labels, local.labels) == (0, 60, 60)
    assert (before.pool, after.pool, local.pool) == (learning.EVERY,) * 2 + (learning.KEPT_LOCAL,)
    # Any request: 60 labelled in each of the two sets; kept local only: at most that many.
    assert after.available == (120, 120)
    assert len(local.available) == 2 and all(n <= 120 for n in local.available)
    assert len(local.features) == 2 and local.adopted <= 2
    assert before.adopted == 0 and max(before.features) < 0.65
    assert after.adopted == 2 and min(after.features) > 0.85
    assert min(after.two_stage) > 0.85
    # As `hybrid serve` decides, beside recent requests: one figure per draw.
    assert len(before.recent) == len(after.recent) == 2
    assert all(0 <= figure <= 1 for figure in after.recent)
    assert 0.4 < reference < 0.6  # both sets are half zebras: the set says nothing
    # Each refit chose a weight; the model stage (random vectors here) is carried over, so
    # alone it scores each draw's requests as before the refit.
    assert len(after.weights) == 2 and before.weights == ()
    assert len(before.model_stage) == 2 and after.model_stage == before.model_stage
    # With the model stage asked for every request: one figure per draw; the feature stage's
    # share of it learned the zebras too.
    assert len(before.every) == len(after.every) == 2
    assert min(after.every) > max(before.every)
    # Read beside the labelled requests as well: with none (k = 0), and after refits that
    # learned from every label (each adopted), the same as beside recent requests alone.
    assert before.labelled == before.recent and after.labelled == after.recent
    # With no refit, the model as calibrated reads beside every label instead.
    assert before.unrefitted == before.recent and len(after.unrefitted) == 2


def test_asked_for_every_request_the_runtime_averages_both_stages_read_beside_recent(
    learning: ModuleType,
) -> None:
    from hybrid.routing.calibration.fitting import calibrate
    from hybrid.routing.difficulty.probe import every_scores

    items = generated(learning)
    model = calibrate(
        items.items, [not w for w in items.wrong], seed=0, vectors=list(items.vectors)
    ).model
    assert model.probe is not None
    test = traffic(learning, 20)
    test.vectors[3] = np.nan  # a prompt the model could not take

    feature, _, recent, every = learning.runtime_scores(model, test, seed=1)

    own = np.array([model.probe.score(v) for v in np.nan_to_num(test.vectors)])
    read = learning.beside_recent(
        own,
        model.probe.units(np.nan_to_num(test.vectors)),
        seed=1,
        reading=np.isfinite(test.vectors).all(axis=1),
    )
    assert every[3] == recent[3]  # no vector: the feature score read beside recent
    others = np.arange(len(feature)) != 3
    assert every[others] == pytest.approx(every_scores(recent, read)[others])


def test_every_k_of_a_draw_is_scored_on_the_same_requests(learning: ModuleType) -> None:
    data = traffic(learning, 30)
    few, held = learning.draw(data, labels=5, held=10, seed=3)
    more, same = learning.draw(data, labels=20, held=10, seed=3)
    assert held == same and len(held) == 20
    assert set(few) <= set(more) and not set(more) & set(held)
    _, other = learning.draw(data, labels=5, held=10, seed=4)
    assert other != held
    # Only the requests marked can be labelled, and fewer than asked when fewer are marked.
    allowed = np.arange(len(data.items)) % 3 == 0
    marked, same = learning.draw(data, labels=20, held=10, seed=3, allowed=allowed)
    assert same == held and all(allowed[i] for i in marked)
    assert len(marked) == sum(allowed[i] for i in range(len(allowed)) if i not in held)
    with pytest.raises(ValueError, match="too few"):
        learning.learn_from_traffic(generated(learning), data, seed=0, labels=(0, 30))


def test_served_scores_are_read_beside_the_labels_the_model_has_not_learned_from(
    learning: ModuleType,
) -> None:
    from labelled_traffic import kinds

    from hybrid.routing.calibration.fitting import calibrate
    from hybrid.routing.calibration.metrics import auroc

    items = generated(learning)
    model = calibrate(
        items.items,
        [not w for w in items.wrong],
        seed=0,
        meta={"model_sha256": learning.REPLAY_SHA256},
    ).model
    # Two kinds the model misjudges: code questions without a digit (mostly wrong), chat
    # (half with a number, mostly right).
    requests = kinds(4, 240)
    data = learning.Labelled(
        [
            CalibrationItem(f"r-{i}", "traffic", (Message("user", text),), Words(("ok",)), "word")
            for i, (text, _) in enumerate(requests)
        ],
        np.array([wrong for _, wrong in requests], dtype=np.float64),
        np.zeros((len(requests), 8)),
    )
    labelled, test = data.subset(np.arange(60)), data.subset(np.arange(60, 240))
    # Every other labelled request was escalated (its local answer given in the background).
    escalated = np.arange(60) % 2 == 0
    memory = learning.labelled_memory(learning.examples_of(labelled, "feedback", escalated))
    assert memory.usable(model) == 60

    _, _, served, _ = learning.runtime_scores(model, test, seed=1)
    _, _, read, _ = learning.runtime_scores(model, test, seed=1, labelled=memory)
    assert auroc(served, test.wrong) < 0.6 < 0.7 < auroc(read, test.wrong)
    # A refit that learned from those labels is not read beside them.
    refitted = dataclasses.replace(model, meta={**model.meta, "refit": {"labels_until": 59.0}})
    assert memory.usable(refitted) == 0


def test_labels_that_say_otherwise_than_the_grades_are_learned_instead(
    learning: ModuleType,
) -> None:
    # Every label says the opposite of the grade: the router learns the opposite, and the
    # held-out requests, scored by their grades, rank worse than before.
    data = traffic(learning, 120)
    results, _ = learning.learn_from_traffic(
        generated(learning),
        data,
        seed=0,
        repeats=2,
        labels=(0, 60),
        pools=(learning.EVERY,),
        told=1.0 - data.wrong,
    )
    before, after = results
    assert after.adopted == 2 and max(after.features) < 0.2 < min(before.features)
