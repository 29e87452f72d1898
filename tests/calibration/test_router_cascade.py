"""scripts/router_cascade.py: the router read with the cascade on declining answers."""

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

    got = cascade.on_declines(reader, data, orders=range(3))

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
        "LOFO": cascade.on_declines(Reader(SCORES), declining, orders=range(2)),
        "traffic": cascade.on_declines(Reader(SCORES), plain, orders=range(2)),
    }

    section = cascade.cascade_section(collections)
    summary = cascade.cascade_summary(collections)

    rows = [line for line in section.splitlines() if line.startswith(("| LOFO", "| traffic"))]
    assert rows[0].startswith("| LOFO | 6 | 17% | 100% |")
    assert rows[1].startswith("| traffic | 6 | 0% | - |")
    assert "over 2 arrival orders" in " ".join(section.split())
    alone, both = collections["LOFO"].alone[0], collections["LOFO"].cascaded[0]
    assert f"LOFO {alone:.3f} to {both:.3f}" in summary
