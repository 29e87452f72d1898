"""Scores read beside the labelled requests most like this one.

People's feedback, shadow comparisons and the cascade label requests: the local answer was
good, or it was not (:mod:`hybrid.ledger.learning`).  A refit learns from them once enough
have arrived (``routing.learn.refit_after``); until then, and for the kinds of prompt a refit
still misjudges, the router reads each feature score beside the labelled requests most like
it, and moves it by how far the model in use was off on them:

    score = own score + n / (n + PRIOR) * (share of them answered wrong - their mean score)

over the ``n`` (at most :data:`NEIGHBOURS`) labelled requests nearest by the cosine of the
standardised feature vectors (as :mod:`hybrid.routing.difficulty.recent` compares them), with
a cosine of at least :data:`~hybrid.routing.difficulty.recent.MIN_SIMILARITY`; a request
unlike every labelled one keeps its score.  Their scores are the model in use's own, so the
step is what the model gets wrong about that kind of prompt, shrunk towards none while few
labels say so.

A refit's own scores of the requests it was fitted on are too close to their labels to say how
far off it is elsewhere.  So a refit records when the newest label it learned from was written
(``meta.refit.labels_until``, Unix seconds) and, for each labelled request it learned from, its
out-of-fold score: the score a fit made without it gave it (``meta.refit.out_of_fold``, as
``[time of the label, score]``).  A request labelled no later than ``labels_until`` is read
with that score, or left out when the refit recorded none for it and it is older than every
request the refit recorded one for (a refit records the last 1,000); one labelled later (even
an older request, labelled again), or stamped by a clock behind and so without a score though
no older than those, with the refit's own.  Read with its own scores, a refit ranked
held-out traffic worse in an earlier run of ``docs/router-eval.md``; leaving the labels it
learned from out threw away what they say about the requests most like them.

Labels of both sides of the router's decision are needed: only once at least
:data:`MIN_ESCALATED` of the labelled requests read beside were ones the router escalated
(shadow comparisons of escalated requests, ``routing.learn.local_shadow_rate``) are scores
read beside them.  Labels of local answers alone (people's feedback, shadow comparisons of
local answers) measure the model's errors on the requests it found easiest, and carried to
every request like them that tail's errors lowered the ranking (on the traffic sets, from
0.669 to 0.591 AUROC with 9 to 14 such labels, ``docs/router-eval.md``).

The rule and its constants were chosen leaving one generated family out (10 and 25 labelled
items of the family left out, among a share of the nearest labels' wrong answers mixed in at
0.5, the step without shrinking, and the shrunk step, each in the feature and the probe's
vector space), then checked on the traffic sets (``docs/router-eval.md``).

The memory holds the :data:`SIZE` most recent labelled requests' feature vectors and labels,
never text, loaded from the ledger (:meth:`LabelledScores.load`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.recent import most_alike, standardised_unit

SIZE = 1000
"""Labelled requests remembered (the most recent)."""

NEIGHBOURS = 10
"""The most labelled requests a score is read beside."""

MIN_ESCALATED = 5
"""Labelled requests the router escalated, among those read beside, before any score is read
beside them."""

PRIOR = 5.0
"""How many labelled neighbours weigh as much as the model's own score: with ``n`` of them
the step is ``n / (n + PRIOR)`` of how far the model was off on them."""


@dataclass(frozen=True)
class LabelledRequest:
    """One labelled request, as the memory keeps it.

    Attributes:
        features: Its feature vector (:func:`~hybrid.routing.difficulty.features.extract`).
        wrong: Its local answer was wrong (or not good enough).
        time: When its newest label was written, Unix seconds.
        escalated: The router sent it elsewhere than the local model (its label then comes
            from a local answer given in the background and compared with the cloud's).
    """

    features: np.ndarray
    wrong: bool
    time: float
    escalated: bool = False


def learned_scores(model: DifficultyModel) -> dict[float, float]:
    """The out-of-fold scores a refit recorded of the labelled requests it learned from, by the
    time of their label (empty for a model fitted on calibration answers alone)."""
    refit = model.meta.get("refit")
    rows = refit.get("out_of_fold") if isinstance(refit, dict) else None
    scores: dict[float, float] = {}
    for row in rows if isinstance(rows, list) else ():
        if (
            isinstance(row, list)
            and len(row) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
        ):
            scores[float(row[0])] = float(row[1])
    return scores


def learned_until(model: DifficultyModel) -> float:
    """When the newest label the model was refitted on was written (Unix seconds; minus
    infinity for a model fitted on calibration answers alone)."""
    refit = model.meta.get("refit")
    until = refit.get("labels_until") if isinstance(refit, dict) else None
    if isinstance(until, int | float) and not isinstance(until, bool):
        return float(until)
    return float("-inf")


class LabelledScores:
    """The labelled requests of the served model, and scores read beside them.

    Args:
        size: Labelled requests remembered (the most recent).
        neighbours: The most labelled requests a score is read beside (at least 1).
        min_escalated: Labelled requests the router escalated, among those read beside,
            before any score is read beside them.
    """

    def __init__(
        self, *, size: int = SIZE, neighbours: int = NEIGHBOURS, min_escalated: int = MIN_ESCALATED
    ) -> None:
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1 (got {neighbours})")
        self._size = size
        self.neighbours = neighbours
        self._min_escalated = min_escalated
        self._lock = threading.Lock()
        self._sha256: str | None = None
        self._requests: tuple[LabelledRequest, ...] = ()
        # For the model last read with: it, and the units, scores (out-of-fold for those it
        # learned from) and labels of the requests it reads beside.
        self._owner: DifficultyModel | None = None
        self._units = np.zeros((0, 0), dtype=np.float64)
        self._scores = np.zeros(0, dtype=np.float64)
        self._wrong = np.zeros(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._requests)

    def load(self, sha256: str, requests: Sequence[LabelledRequest]) -> None:
        """Replace the labelled requests (the :data:`SIZE` most recent are kept).

        Args:
            sha256: The local model they were answered by (its GGUF file's SHA-256): only a
                difficulty model for it reads beside them (its ``meta.model_sha256``).
            requests: Its labelled requests.
        """
        kept = sorted(requests, key=lambda request: request.time)[-self._size :]
        with self._lock:
            self._sha256 = sha256
            self._requests = tuple(kept)
            self._owner = None

    @property
    def requests(self) -> tuple[LabelledRequest, ...]:
        """The labelled requests held, oldest label first."""
        return self._requests

    @property
    def sha256(self) -> str | None:
        """The local model whose labelled requests are held (None before the first load)."""
        return self._sha256

    def usable(self, model: DifficultyModel) -> int:
        """How many of the labelled requests a score by ``model`` is read beside: those of its
        local model with features of its shape, labelled after the labels it learned from or
        with an out-of-fold score it recorded; none while fewer than ``min_escalated`` of
        those were escalated."""
        with self._lock:
            self._prepare(model)
            return int(self._scores.size)

    def read(self, model: DifficultyModel, features: np.ndarray, score: float) -> float:
        """A request's score read beside the labelled requests most like it.

        Args:
            model: The difficulty model in use (its scores of the labelled requests are
                computed again when it changes).
            features: The request's raw feature vector.
            score: Its score so far (its own, or read beside recent requests).

        Returns:
            The score moved by how far the model was off on its nearest labelled requests, in
            [0, 1]; ``score`` itself when none is near.
        """
        with self._lock:
            self._prepare(model)
            if not self._scores.size:
                return score
            unit = standardised_unit(model, features)
            nearest = most_alike(self._units, unit, self.neighbours)
            if not nearest.size:
                return score
            off = float(self._wrong[nearest].mean() - self._scores[nearest].mean())
            moved = score + int(nearest.size) / (int(nearest.size) + PRIOR) * off
            return min(max(moved, 0.0), 1.0)

    def _prepare(self, model: DifficultyModel) -> None:
        if model is self._owner:
            return
        until = learned_until(model)
        learned = learned_scores(model)
        # The refit recorded a score for each of the last requests it learned from: a label
        # as late as the oldest of them but without one was not learned from (written after
        # the refit, stamped by a clock behind: a shared ledger's other daemon, a clock set
        # back), and is read as a new one.
        recorded_since = min(learned, default=math.inf)
        width = model.mean.shape[0]
        ours = model.meta.get("model_sha256") == self._sha256
        read = [
            request
            for request in self._requests
            if ours
            and request.features.shape == (width,)
            and (request.time > until or request.time >= recorded_since)
        ]
        if sum(request.escalated for request in read) < self._min_escalated:
            read = []
        if read:
            features = np.array([request.features for request in read], dtype=np.float64)
            self._units = np.array([standardised_unit(model, row) for row in features])
            own = model.scores(features)
            self._scores = np.array(
                [learned.get(request.time, score) for request, score in zip(read, own, strict=True)]
            )
            self._wrong = np.array([request.wrong for request in read], dtype=np.float64)
        else:
            self._units = np.zeros((0, width), dtype=np.float64)
            self._scores = np.zeros(0, dtype=np.float64)
            self._wrong = np.zeros(0, dtype=np.float64)
        self._owner = model
