"""A difficulty model that scores one feature, and requests of kinds it cannot tell apart: for
the tests of reading a score beside other requests (recent ones, labelled ones)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hybrid.generation import Message
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.policy import LocalStatus, RouteContext


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


def asked(text: str, options: frozenset[str] | None = None) -> RouteContext:
    """One user turn as the policies see it, the local model ready: a short prompt and answer,
    offering ``options`` (:func:`~hybrid.routing.choices.options_of`) or none."""
    return RouteContext(
        messages=(Message("user", text),),
        text=text,
        prompt_tokens=10,
        max_tokens=10,
        local=LocalStatus("ready", 8192),
        options=options,
    )
