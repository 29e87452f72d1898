"""Scores read beside the recent requests most like this one.

The feature stage scores each prompt alone, and on kinds of prompt it was not fitted on, its
scores vary within a kind far more than what the local model gets right does: ranked by each
kind's *mean* score, prompts it never saw rank better than by their own scores (leave one
family out: 0.713 against 0.707 on the generated items; 0.694 against 0.587 on the external
sets, see ``docs/router-eval.md``).  An app's requests come in kinds (one template, one task),
so the router reads each score beside those of the recent requests most like it:

    score = (1 - WEIGHT) * own score + WEIGHT * mean own score of its ``neighbours`` nearest

where *nearest* is by the cosine of the standardised feature vectors (the model's own
standardisation, of the features it reads), among the last :data:`SIZE` requests scored,
and only those at a cosine of at least :data:`MIN_SIMILARITY` count: the first request, and
one unlike every recent one, is scored alone.  Only feature vectors and scores are kept, in
memory, never text; labels play no part.  The memory is the model's: a new or refitted
difficulty model starts it afresh, since its scores are on another scale.

The model stage, when it is asked for every request, reads its probe's scores the same way in
a memory of its own, by the cosine of the prompt vectors standardised as the probe standardises
them (:meth:`~hybrid.routing.difficulty.probe.ProbeStage.units`).
"""

from __future__ import annotations

import threading

import numpy as np

from hybrid.routing.difficulty.features import N_DENSE
from hybrid.routing.difficulty.model import DifficultyModel

SIZE = 256
"""Recent requests remembered."""

WEIGHT = 0.8
"""The neighbours' share of the score (chosen on the leave-one-family-out figures)."""

MIN_SIMILARITY = 0.3
"""The lowest cosine at which a recent request counts as like this one (chosen on the
leave-one-family-out figures, against none, 0.5 and 0.7)."""


class RecentScores:
    """The recent requests' vectors and scores, for one scorer (a difficulty model, a probe) at
    a time.

    Args:
        neighbours: How many of the nearest recent requests a score is read beside (at
            least 1).
        size: Recent requests remembered.
        weight: The neighbours' share of the score.
    """

    def __init__(self, neighbours: int, *, size: int = SIZE, weight: float = WEIGHT) -> None:
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1 (got {neighbours})")
        self.neighbours = neighbours
        self._size = size
        self._weight = weight
        self._lock = threading.Lock()
        self._owner: object = None
        self._vectors = np.zeros((0, 0), dtype=np.float64)
        self._scores = np.zeros(size, dtype=np.float64)
        self._count = 0

    def score(self, model: DifficultyModel, features: np.ndarray) -> tuple[float, float]:
        """Score a request beside its nearest recent ones, then remember it.

        Args:
            model: The difficulty model in use (a different one starts the memory afresh).
            features: The request's raw feature vector (``features.extract``).

        Returns:
            The score read beside the neighbours, and the request's own score.
        """
        own = model.score_features(features)
        return self.beside(model, standardised_unit(model, features), own), own

    def beside(self, owner: object, unit: np.ndarray, own: float) -> float:
        """:meth:`read` for a request scored by ``owner``: a different scorer from the last
        one starts the memory afresh, since its scores are on another scale.

        Args:
            owner: What scored it (a difficulty model, a probe), compared by identity.
            unit: The vector of norm 1 it is compared by.
            own: Its own score.

        Returns:
            The score read beside the neighbours.
        """
        with self._lock:
            if owner is not self._owner:
                self._owner = owner
                self._count = 0
            return self._read(unit, own)

    def read(self, unit: np.ndarray, own: float) -> float:
        """:meth:`score` for a request already scored, whatever model scored it (the
        evaluation's folds each have their own).

        Args:
            unit: Its standardised feature vector, of norm 1 (:func:`standardised_unit`).
            own: Its own score.

        Returns:
            The score read beside the neighbours.
        """
        with self._lock:
            return self._read(unit, own)

    def _read(self, unit: np.ndarray, own: float) -> float:
        if self._vectors.shape[1] != unit.shape[0]:
            self._vectors = np.zeros((self._size, unit.shape[0]), dtype=np.float64)
            self._count = 0
        held = min(self._count, self._size)
        score = own
        if held:
            nearest = most_alike(self._vectors[:held], unit, self.neighbours)
            if nearest.size:
                mean = float(self._scores[nearest].mean())
                score = (1 - self._weight) * own + self._weight * mean
        slot = self._count % self._size
        self._vectors[slot] = unit
        self._scores[slot] = own
        self._count += 1
        return score


def most_alike(units: np.ndarray, unit: np.ndarray, neighbours: int) -> np.ndarray:
    """The rows of ``units`` most like ``unit``: at most ``neighbours`` of them, by cosine (the
    vectors are of norm 1), each at :data:`MIN_SIMILARITY` or more.

    Args:
        units: One vector of norm 1 per row (at least one row).
        unit: The vector of norm 1 they are compared with.
        neighbours: How many at most (at least 1).

    Returns:
        Their row indices, in no order; empty when none is alike enough.
    """
    similarity = units @ unit
    k = min(neighbours, similarity.size)
    nearest = np.argpartition(-similarity, k - 1)[:k]
    alike: np.ndarray = nearest[similarity[nearest] >= MIN_SIMILARITY]
    return alike


def standardised_unit(model: DifficultyModel, features: np.ndarray) -> np.ndarray:
    """A feature vector standardised as the model standardises it, scaled to norm 1; the
    hashed words are left out (0) when the model does not read them."""
    unit: np.ndarray = (np.asarray(features, dtype=np.float64) - model.mean) / model.scale
    if not model.words:
        unit[N_DENSE:] = 0.0
    unit /= float(np.linalg.norm(unit)) or 1.0
    return unit
