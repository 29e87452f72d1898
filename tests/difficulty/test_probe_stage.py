"""The model stage: the probe on the local model's prompt vector, and difficulty files v1/v2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybrid.errors import ConfigError
from hybrid.generation import Message
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import FORMAT_VERSION, DifficultyModel
from hybrid.routing.difficulty.probe import ProbeStage

DIM = 16


def probe(
    band: tuple[float, float] = (0.3, 0.7),
    threshold: float = 0.5,
    every_threshold: float | None = None,
) -> ProbeStage:
    rng = np.random.default_rng(7)
    return ProbeStage(
        weights=rng.normal(size=DIM),
        bias=0.25,
        mean=rng.normal(size=DIM),
        scale=rng.uniform(0.5, 2.0, size=DIM),
        band=band,
        threshold=threshold,
        every_threshold=every_threshold,
    )


def difficulty(stage: ProbeStage | None = None) -> DifficultyModel:
    rng = np.random.default_rng(4)
    return DifficultyModel(
        weights=rng.normal(size=N_FEATURES) / 10,
        bias=-0.2,
        threshold=0.5,
        feature_version=FEATURE_VERSION,
        mean=rng.normal(size=N_FEATURES),
        scale=rng.uniform(0.5, 2.0, size=N_FEATURES),
        meta={"model_sha256": "ab" * 32},
        probe=stage,
    )


def test_the_score_is_the_standardised_logistic_regression() -> None:
    stage = probe()
    vector = np.random.default_rng(1).normal(size=DIM).astype(np.float32)
    z = ((vector - stage.mean) / stage.scale) @ stage.weights + stage.bias
    assert stage.score(vector) == pytest.approx(1 / (1 + np.exp(-z)))
    assert stage.dim == DIM
    # Far out vectors stay probabilities.
    assert 0.0 <= stage.score(vector * 1e6) <= 1.0


def test_the_band_is_closed_and_the_threshold_is_strict() -> None:
    stage = probe(band=(0.3, 0.7), threshold=0.5)
    assert stage.in_band(0.3) and stage.in_band(0.5) and stage.in_band(0.7)
    assert not stage.in_band(0.29) and not stage.in_band(0.71)
    assert stage.escalates(0.51) and not stage.escalates(0.5)


def test_a_vector_of_another_model_is_refused_with_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(640,\).*\(16,\).*another model"):
        probe().score(np.zeros(640, dtype=np.float32))
    with pytest.raises(ValueError, match="not finite"):
        probe().score(np.full(DIM, np.nan))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"weights": np.zeros(3)}, "differ in length"),
        ({"scale": np.zeros(DIM)}, "scale must be positive"),
        ({"mean": np.full(DIM, np.inf)}, "not finite"),
        ({"band": (0.7, 0.3)}, "band"),
        ({"band": (-0.1, 0.3)}, "band"),
        ({"threshold": 1.5}, "threshold"),
        ({"bias": float("nan")}, "bias"),
        ({"weights": np.zeros((2, 8))}, "shape"),
    ],
)
def test_a_malformed_probe_cannot_be_built(change: dict[str, object], problem: str) -> None:
    fields = {
        "weights": np.ones(DIM),
        "bias": 0.0,
        "mean": np.zeros(DIM),
        "scale": np.ones(DIM),
        "band": (0.2, 0.8),
        "threshold": 0.5,
    } | change
    with pytest.raises(ValueError, match=problem):
        ProbeStage(**fields)  # type: ignore[arg-type]


def test_the_probe_survives_json_and_scores_the_same() -> None:
    stage = probe(band=(0.25, 0.75), threshold=0.6)
    loaded = ProbeStage.from_json(json.loads(json.dumps(stage.to_json())))
    vector = np.random.default_rng(2).normal(size=DIM)
    assert loaded.score(vector) == stage.score(vector)
    assert loaded.band == (0.25, 0.75) and loaded.threshold == 0.6
    assert loaded.every_threshold is None and "every_threshold" not in stage.to_json()
    every = probe(every_threshold=0.42)
    again = ProbeStage.from_json(json.loads(json.dumps(every.to_json())))
    assert again.every_threshold == 0.42 and again.to_json() == every.to_json()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"weights": "nope"}, '"weights" must be a list'),
        ({"bias": None}, '"bias" must be a number'),
        ({"band": [0.2]}, '"band" has 1 numbers'),
        ({"band": [0.8, 0.2]}, "band"),
        ({"scale": [1.0] * (DIM - 1)}, "differ in length"),
        ({"threshold": True}, '"threshold" must be a number'),
        ({"every_threshold": "high"}, '"every_threshold" must be a number'),
        ({"every_threshold": 1.5}, "every_threshold 1.5 is outside"),
        ({"vector": "mean"}, '"mean" vectors'),
    ],
)
def test_a_malformed_probe_section_is_a_config_error_naming_the_problem(
    change: dict[str, object], problem: str
) -> None:
    data = probe().to_json() | change
    with pytest.raises(ConfigError, match=problem) as caught:
        ProbeStage.from_json(data)
    assert "probe section is malformed" in str(caught.value)
    assert "hybrid calibrate" in str(caught.value)


def test_a_missing_key_or_a_non_object_is_named() -> None:
    data = probe().to_json()
    del data["threshold"]
    with pytest.raises(ConfigError, match='"threshold" is missing'):
        ProbeStage.from_json(data)
    with pytest.raises(ConfigError, match="list, not an object"):
        ProbeStage.from_json([1, 2])


def test_a_version_2_file_carries_the_probe() -> None:
    original = difficulty(probe())
    data = json.loads(json.dumps(original.to_json()))
    assert data["format_version"] == FORMAT_VERSION == 2
    loaded = DifficultyModel.from_json(data)
    assert loaded.probe is not None
    vector = np.random.default_rng(3).normal(size=DIM)
    assert original.probe is not None
    assert loaded.probe.score(vector) == original.probe.score(vector)
    messages = [Message("user", "Prove that the square root of 2 is irrational.")]
    assert loaded.score(messages) == original.score(messages)


def test_a_version_2_file_without_a_probe_loads_with_none() -> None:
    data = difficulty().to_json()
    assert data["probe"] is None
    assert DifficultyModel.from_json(data).probe is None
    del data["probe"]
    assert DifficultyModel.from_json(data).probe is None


def test_a_version_1_file_still_loads_without_a_probe() -> None:
    data = difficulty().to_json()
    del data["probe"]
    data["format_version"] = 1
    loaded = DifficultyModel.from_json(data)
    assert loaded.probe is None
    messages = [Message("user", "Name three primes.")]
    assert loaded.score(messages) == difficulty().score(messages)


def test_the_shipped_version_1_file_still_loads() -> None:
    from hybrid.routing.difficulty.store import shipped_models

    files = [f for f in shipped_models().iterdir() if f.name.endswith(".json")]
    assert files
    for file in files:
        data = json.loads(file.read_text())
        loaded = DifficultyModel.from_json(data)
        assert loaded.probe is None or data.get("format_version") == 2


def test_a_malformed_probe_section_in_a_file_is_a_config_error() -> None:
    data = difficulty(probe()).to_json()
    data["probe"]["mean"] = "zeros"
    with pytest.raises(ConfigError, match='probe section is malformed: "mean" must be a list'):
        DifficultyModel.from_json(data)
    data["probe"] = 3
    with pytest.raises(ConfigError, match="int, not an object"):
        DifficultyModel.from_json(data)


def test_a_moved_threshold_takes_the_feature_thresholds_step_in_log_odds() -> None:
    stage = probe(threshold=0.5)

    assert stage.moved(0.5, 0.5) is stage
    # Feature threshold 0.5 -> 0.731 is one unit of log-odds up; so is the probe's.
    assert stage.moved(0.5, 1 / (1 + np.exp(-1.0))).threshold == pytest.approx(0.731, abs=1e-3)
    assert stage.moved(0.6, 0.3).threshold < 0.5
    assert (stage.moved(0.5, 0.0).threshold, stage.moved(0.5, 1.0).threshold) == (0.0, 1.0)
    moved = stage.moved(0.5, 0.2)
    assert moved.to_json() == stage.to_json() | {"threshold": moved.threshold}
    # The threshold for every request moves by the same step.
    every = probe(threshold=0.5, every_threshold=0.6).moved(0.5, 1 / (1 + np.exp(-1.0)))
    expected = 1 / (1 + np.exp(-(np.log(0.6 / 0.4) + 1.0)))
    assert every.every_threshold == pytest.approx(expected)
    edge = probe(every_threshold=0.6).moved(0.5, 0.0)
    assert (edge.threshold, edge.every_threshold) == (0.0, 0.0)


def test_asked_for_every_request_the_score_averages_both_and_compares_its_own_threshold() -> None:
    stage = probe(threshold=0.9, every_threshold=0.3)
    assert stage.every(0.2, 0.6) == pytest.approx(0.25 * 0.2 + 0.75 * 0.6)
    assert stage.escalates(0.5, every=True) and not stage.escalates(0.5)
    with pytest.raises(ValueError, match="hybrid calibrate"):
        probe().escalates(0.5, every=True)


def test_the_units_are_the_standardised_vectors_of_norm_1() -> None:
    stage = probe()
    rows = np.random.default_rng(3).normal(size=(5, DIM))
    units = stage.units(rows)
    z = (rows - stage.mean) / stage.scale
    assert np.linalg.norm(units, axis=1) == pytest.approx(np.ones(5))
    assert units[0] @ z[0] == pytest.approx(np.linalg.norm(z[0]))
    assert stage.units(rows[1]) == pytest.approx(units[1])
    assert not stage.units(stage.mean).any()  # the mean itself: zeros, not NaN


def test_a_malformed_blend_is_refused_with_what_to_do() -> None:
    data = probe().to_json() | {"blend": {"feature": [0.0, 1.0]}}

    with pytest.raises(ConfigError, match=r'"blend" has no "probe".*hybrid calibrate'):
        ProbeStage.from_json(data)
