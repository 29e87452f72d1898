"""scripts/router_probe_recent.py: the model stage read beside recent requests, averaged with
the shipped router, at several weights."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
from scripts_import import script

from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc


@pytest.fixture(scope="module")
def mixing() -> Iterator[ModuleType]:
    with script("router_probe_recent") as module:
        yield module


class Reader:
    """Stands for a fitted read: the shipped router's scores, the probe's, and its
    standardisation."""

    def __init__(self, shipped: np.ndarray, probe: np.ndarray, dim: int) -> None:
        self.shipped = shipped
        self.probe_scores = probe
        self.probe = SimpleNamespace(mean=np.zeros(dim), scale=np.ones(dim))

    def recent(self, seed: int) -> dict[str, np.ndarray]:
        return {"two-stage+recent": self.shipped}


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

    got = mixing.mixed(reader, data, orders=range(2))

    assert set(got.aurocs) == set(mixing.WEIGHTS)
    assert got.aurocs[0.0] == (auroc(reader.shipped, data.wrong),) * 2
    assert len(got.kept[0.5]) == 2
    # Read beside recent requests of its kind, the probe's noise averages out.
    assert np.mean(got.aurocs[1.0]) > auroc(reader.probe_scores, data.wrong) + 0.05
    assert np.mean(got.aurocs[1.0]) > np.mean(got.aurocs[0.0]) + 0.2


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
    summary = " ".join(mixing.probe_recent_summary(collections).split())

    traffic = collections["traffic"].aurocs
    assert chosen == max(mixing.WEIGHTS, key=lambda weight: np.mean(traffic[weight]))
    assert chosen > 0
    rows = [line for line in section.splitlines() if line.startswith("| ") and "AUROC" not in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| 0 (shipped)",
        *(f"| {w:g}" + (" (chosen)" if w == chosen else "") for w in mixing.WEIGHTS[1:]),
    ]
    assert f"weight {chosen:g} (chosen on the traffic sets)" in summary
    before, after = np.mean(traffic[0.0]), np.mean(traffic[chosen])
    assert f"traffic {before:.3f} to {after:.3f}" in summary
