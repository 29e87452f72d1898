"""scripts/router_cascade.py: the router read with the cascade on its local answers."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from scripts_import import script

from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc


@pytest.fixture(scope="module")
def cascade() -> Iterator[ModuleType]:
    with script("router_cascade") as module:
        yield module


class Reader:
    """Stands for a fitted read: the same router scores whatever the arrival order."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = np.array(scores)
        self.orders: list[int] = []

    def recent(self, seed: int) -> dict[str, np.ndarray]:
        self.orders.append(seed)
        return {"two-stage+recent": self.scores}


ANSWERS = ("I'm sorry, I can't answer this question.", "12", "Paris.", "Yes.", "No idea", "Blue.")
WRONG = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
SCORES = [0.1, 0.9, 0.2, 0.4, 0.3, 0.5]


def test_a_declining_answer_ranks_above_every_other_and_lifts_the_auroc(
    cascade: ModuleType,
) -> None:
    items = calibration_set(0, per_category=1)[:6]
    data = cascade.Labelled(items, WRONG, np.zeros((6, 2)), ANSWERS)
    reader = Reader(SCORES)

    got = cascade.on_cascade(reader, data, orders=range(3))

    assert reader.orders == [0, 1, 2]
    assert got.n == 6 and got.declined == pytest.approx(1 / 6) and got.declined_wrong == 1.0
    ranked = cascade.cascaded(np.array(SCORES), data.declined)
    assert int(np.argmax(ranked)) == 0
    assert np.argsort(ranked[1:]).tolist() == np.argsort(SCORES[1:]).tolist()
    assert got.alone == (auroc(np.array(SCORES), WRONG),) * 3
    assert got.cascaded == (auroc(ranked, WRONG),) * 3
    assert got.cascaded[0] > got.alone[0]
    assert got.flag == auroc(data.declined, WRONG)


def test_the_section_names_each_collection_and_says_when_none_declined(
    cascade: ModuleType,
) -> None:
    items = calibration_set(0, per_category=1)[:6]
    declining = cascade.Labelled(items, WRONG, np.zeros((6, 2)), ANSWERS)
    plain = cascade.Labelled(items, WRONG, np.zeros((6, 2)), ("Paris.",) * 6)
    collections = {
        "LOFO": cascade.on_cascade(Reader(SCORES), declining, orders=range(2)),
        "traffic": cascade.on_cascade(Reader(SCORES), plain, orders=range(2)),
    }

    section = cascade.cascade_section(collections)
    summary = cascade.cascade_summary(collections)

    rows = [line for line in section.splitlines() if line.startswith(("| LOFO", "| traffic"))]
    assert rows[0].startswith("| LOFO | 6 | 17% | 100% |")
    assert rows[1].startswith("| traffic | 6 | 0% | - |")
    assert "over 2 arrival orders" in " ".join(section.split())
    alone, both = collections["LOFO"].alone[0], collections["LOFO"].cascaded[0]
    assert f"LOFO {alone:.3f} to {both:.3f}" in summary


SURE = np.array([0.9, 0.2, 0.8, np.nan, 0.3, 0.55])
"""How sure the model was of each answer: the second and the fifth (both wrong) are unsure."""


def test_the_whole_cascade_also_ranks_first_the_answers_the_model_was_unsure_of(
    cascade: ModuleType,
) -> None:
    items = calibration_set(0, per_category=1)[:6]
    data = cascade.Labelled(items, WRONG, np.zeros((6, 2)), ANSWERS, SURE)

    assert data.discarded(0.35).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert data.discarded(0.1).tolist() == data.declined.tolist()
    assert data.subset([1, 3]).discarded(0.35).tolist() == [1.0, 0.0]  # NaN: not known
    without = cascade.Labelled(items, WRONG, np.zeros((6, 2)), ANSWERS)
    assert without.discarded(0.35).tolist() == without.declined.tolist()

    got = cascade.on_cascade(Reader(SCORES), data, orders=range(2))

    whole = cascade.cascaded(np.array(SCORES), data.discarded(cascade.MIN_CONFIDENCE))
    assert got.whole == (auroc(whole, WRONG),) * 2
    assert got.whole[0] == 1.0 > got.cascaded[0] > got.alone[0]  # every wrong answer first
    assert got.discarded == pytest.approx(0.5) and got.discarded_wrong == 1.0
    assert set(got.grid) == set(cascade.CONFIDENCE_GRID)
    assert got.grid[0.1][0] == pytest.approx(got.cascaded[0])  # only the declining one
    assert got.grid[0.1][2] == pytest.approx(1 / 6)
    assert got.grid[0.6][2] == pytest.approx(4 / 6)


def test_min_confidence_is_chosen_on_the_traffic_sets_and_the_section_says_so(
    cascade: ModuleType,
) -> None:
    items = calibration_set(0, per_category=1)[:6]
    data = cascade.Labelled(items, WRONG, np.zeros((6, 2)), ANSWERS, SURE)
    # Here 0.6 discards a right answer too (the last), and ranks worse than 0.35 to 0.55.
    collections = {
        "LOFO": cascade.on_cascade(Reader(SCORES), data, orders=range(2)),
        "traffic": cascade.on_cascade(Reader(SCORES), data, orders=range(2)),
    }
    assert collections["traffic"].grid[0.6][0] < 1.0
    chosen = cascade.chosen_confidence(collections)
    assert chosen is not None and collections["traffic"].grid[chosen][0] == 1.0
    assert chosen == min(v for v, row in collections["traffic"].grid.items() if row[0] == 1.0)
    assert cascade.chosen_confidence({"LOFO": collections["LOFO"]}) is None

    section = " ".join(cascade.cascade_section(collections).split())
    default = f"{cascade.MIN_CONFIDENCE:g}"
    if chosen == cascade.MIN_CONFIDENCE:
        assert f"is the default, {default}." in section
    else:
        assert f"is {chosen:g}, **not** the default ({default})" in section
    assert f"| {default} (default) | 1.000 | " in cascade.cascade_section(collections)
    summary = " ".join(cascade.cascade_summary(collections).split())
    assert (
        "with the whole cascade (those, and answers the model was less sure of than "
        f"`min_confidence` = {default}): LOFO 1.000, traffic 1.000"
    ) in summary


def test_the_section_says_how_many_answers_a_stream_s_opening_reads_whole(
    cascade: ModuleType,
) -> None:
    items = calibration_set(0, per_category=1)[:6]
    long = "Paris is the capital of France and its largest city."  # nine words
    data = cascade.Labelled(items, WRONG, np.zeros((6, 2)), (long, *ANSWERS[1:]))
    got = cascade.on_cascade(Reader(SCORES), data, orders=range(1))
    assert got.within_opening == pytest.approx(5 / 6)
    unknown = cascade.on_cascade(
        Reader(SCORES), cascade.Labelled(items, WRONG, np.zeros((6, 2))), orders=range(1)
    )
    assert np.isnan(unknown.within_opening)

    section = " ".join(cascade.cascade_section({"LOFO": got, "traffic": unknown}).split())
    assert "of these items' answers, 83% (LOFO) are no longer than it" in section


def test_an_answer_outside_the_offered_options_is_ranked_first_as_a_declining_one(
    cascade: ModuleType,
) -> None:
    items = calibration_set(0, per_category=1)
    choice = next(item for item in items if item.kind == "choice")
    picked = [*items[:5], choice]
    # The last answer (wrong) names the planet, not one of the letters offered.
    answers = (*ANSWERS[:5], "Venus.")
    wrong = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    data = cascade.Labelled(picked, wrong, np.zeros((6, 2)), answers)

    got = cascade.on_cascade(Reader(SCORES), data, orders=range(1))

    assert got.declined == pytest.approx(2 / 6) and got.declined_wrong == 1.0
    ranked = cascade.cascaded(np.array(SCORES), np.array([1.0, 0, 0, 0, 0, 1.0]))
    assert got.cascaded == (auroc(ranked, wrong),)
    assert got.discarded == pytest.approx(2 / 6)
