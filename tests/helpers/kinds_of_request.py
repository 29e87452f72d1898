"""A difficulty model that scores one feature, and requests of kinds it cannot tell apart: for
the tests of reading a score beside other requests (recent ones, labelled ones)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel


def model(
    weights: np.ndarray | None = None,
    *,
    words: bool = True,
    meta: Mapping[str, object] | None = None,
) -> DifficultyModel:
    """Scores sigmoid(features[0]) unless told otherwise; standardises nothing away."""
    if weights is None:
        weights = np.zeros(N_FEATURES)
        weights[0] = 1.0
    return DifficultyModel(
        weights=weights,
        bias=0.0,
        threshold=0.5,
        feature_version=FEATURE_VERSION,
        mean=np.zeros(N_FEATURES),
        scale=np.ones(N_FEATURES),
        meta=dict(meta or {}),
        words=words,
    )


def request(kind: int, difficulty: float = 0.0) -> np.ndarray:
    """A feature vector of one kind (a direction of its own) whose own score is
    sigmoid(difficulty)."""
    features = np.zeros(N_FEATURES)
    features[1 + kind] = 10.0
    features[0] = difficulty
    return features
