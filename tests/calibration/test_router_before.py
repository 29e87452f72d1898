"""scripts/router_before.py: the router shipped before, beside the router shipped now."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from scripts_import import script

from hybrid.routing.calibration.fitting import feature_matrix
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.difficulty.features import feature_names

EMBEDDED = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@pytest.fixture(scope="module")
def before() -> Iterator[ModuleType]:
    with script("router_before") as module:
        yield module


def test_the_router_shipped_before_loads_for_the_embedded_model_only(before: ModuleType) -> None:
    model = before.load_before(EMBEDDED)

    assert model is not None and model.probe is None
    assert len(model.weights) == len(feature_names())
    meta = json.loads(before.BEFORE_FILE.read_text(encoding="utf-8"))["meta"]
    assert tuple(meta["category_accuracy"]) == before.FITTED_ON
    assert before.load_before("0" * 64) is None


def test_each_row_reads_the_weights_as_shipped_their_recipe_and_the_router_now(
    before: ModuleType,
) -> None:
    items = calibration_set(0, per_category=4)
    n = len(items)
    wrong = np.array([float(i % 3 != 0) for i in range(n)])
    data = before.Labelled(items, wrong, np.zeros((n, 2)))
    recipe = np.linspace(0.0, 1.0, n)
    now = wrong * 0.5 + 0.25
    added = before.added_families(data.families)
    model = before.load_before(EMBEDDED)

    rows = before.against_before(
        model,
        [
            before.Collection("every family", data, recipe, now, np.ones(n, dtype=bool), False),
            before.Collection("added since", data, recipe, now, added, True),
        ],
        seed=0,
        resamples=50,
    )

    assert set(np.array(data.families)[added]) == {
        family for family in data.families if family not in before.FITTED_ON
    }
    assert added.any() and not added.all()
    assert rows[0].n == n and rows[0].figures["as shipped"] is None
    assert rows[1].n == int(added.sum())
    shipped = model.scores(feature_matrix([items[i] for i in np.flatnonzero(added)]))
    figures = rows[1].figures
    assert figures["as shipped"]["AUROC"].value == pytest.approx(auroc(shipped, wrong[added]))
    assert figures["its recipe"]["AUROC"].value == pytest.approx(auroc(recipe[added], wrong[added]))
    assert figures["now"]["AUROC"].value == 1.0

    section = before.before_section(rows)
    lines = [line for line in section.splitlines() if line.startswith("| every family")]
    assert lines and lines[0].split(" | ")[2] == "-"
    summary = before.before_summary(rows)
    assert "every family" not in summary
    as_shipped = figures["as shipped"]["AUROC"].value
    assert f"added since {as_shipped:.3f} to 1.000" in " ".join(summary.split())
