"""The difficulty model: logistic regression over prompt features, fitted per local model.

``score(messages)`` is the estimated probability that the local model's answer would be
unacceptable; a router escalates when it exceeds a threshold.  The model is tiny (one weight
per feature), so scoring costs a feature extraction and a dot product, and fitting is a few
Newton steps in numpy, deterministic for the same data.

A model may carry a second, *model* stage (:mod:`hybrid.routing.difficulty.probe`): a probe
on the local model's own prompt vector, which settles the prompts this stage scores inside the
probe's band.

The JSON form (:meth:`DifficultyModel.to_json`)::

    {"format": "hybrid.difficulty", "format_version": 2, "feature_version": 1,
     "feature_names": [...], "weights": [...], "bias": -0.4, "threshold": 0.55,
     "mean": [...], "scale": [...], "words": false, "meta": {"model_sha256": "...", ...},
     "probe": {...} or null}

Version 1 files (no ``"probe"``) still load, with no model stage; files without ``"words"``
(written before it) load as models that read the hashed words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybrid.errors import ConfigError
from hybrid.generation import Message
from hybrid.routing.difficulty.features import (
    FEATURE_VERSION,
    N_DENSE,
    N_FEATURES,
    extract,
    feature_names,
)
from hybrid.routing.difficulty.probe import ProbeStage

FORMAT = "hybrid.difficulty"
FORMAT_VERSION = 2
# Versions this hybrid reads: 1 has no probe section.
READABLE_VERSIONS = (1, 2)

# Logits beyond this are clipped: exp(40) is already far past float precision in a sigmoid.
_MAX_LOGIT = 40.0
_NEWTON_STEPS = 100
_NEWTON_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class DifficultyModel:
    """A fitted difficulty model.

    Attributes:
        weights: One weight per feature, for standardised features.
        bias: The intercept.
        threshold: Escalate when the score is above this; the default the calibration chose.
        feature_version: The :data:`~hybrid.routing.difficulty.features.FEATURE_VERSION` the
            weights were fitted on.
        mean: Per-feature mean of the training set, subtracted before weighting.
        scale: Per-feature divisor applied after centring: the training set's standard
            deviation for the hand-made features, 1 for constant features and for the hashed
            n-gram counts (which keep their own scale).
        meta: Where it came from: ``model_sha256``, ``items``, ``seed``, ``local_accuracy``,
            ``held_out_auroc``, ``created``, ... (JSON values only).
        probe: The model stage, which settles scores inside its band (None: this stage
            alone decides).
        words: Whether the hashed word n-grams count.  False: the model reads only the
            hand-made features; their weights must be 0, and recent requests are compared
            without them too (:func:`~hybrid.routing.difficulty.recent.standardised_unit`).

    Raises:
        ValueError: The arrays do not all have :data:`N_FEATURES` entries, a value is not
            finite, a scale is not positive, or the threshold is outside [0, 1].
    """

    weights: np.ndarray
    bias: float
    threshold: float
    feature_version: int
    mean: np.ndarray
    scale: np.ndarray
    meta: Mapping[str, object] = field(default_factory=dict)
    probe: ProbeStage | None = None
    words: bool = True
    # Standardisation folded into the weights once, so that scoring is one dot product.
    _effective: np.ndarray = field(init=False, repr=False)
    _offset: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("weights", "mean", "scale"):
            array = np.array(getattr(self, name), dtype=np.float64)
            if array.shape != (N_FEATURES,):
                raise ValueError(f"{name} has shape {array.shape}, expected ({N_FEATURES},)")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name} holds a value that is not finite")
            array.setflags(write=False)
            arrays[name] = array
            object.__setattr__(self, name, array)
        if np.any(arrays["scale"] <= 0):
            raise ValueError("every scale must be positive")
        if not math.isfinite(self.bias):
            raise ValueError("bias is not finite")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold} is outside [0, 1]")
        if not self.words and np.any(arrays["weights"][N_DENSE:]):
            raise ValueError("a model that does not read the hashed words has weights for them")
        effective = arrays["weights"] / arrays["scale"]
        effective.setflags(write=False)
        object.__setattr__(self, "_effective", effective)
        object.__setattr__(self, "_offset", float(self.bias - effective @ arrays["mean"]))

    def score(self, messages: Sequence[Message]) -> float:
        """The probability that the local model answers this conversation unacceptably.

        Args:
            messages: The conversation, oldest first.

        Returns:
            A probability in [0, 1]; higher means harder for the local model.
        """
        return self.score_features(extract(messages))

    def score_features(self, features: np.ndarray) -> float:
        """The score of a feature vector already computed by ``features.extract``."""
        return float(_sigmoid(np.asarray(float(features @ self._effective) + self._offset)))

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Scores of many feature vectors at once.

        Args:
            features: An ``(n, N_FEATURES)`` matrix, one row per conversation.

        Returns:
            ``n`` probabilities.
        """
        return _sigmoid(features.astype(np.float64) @ self._effective + self._offset)

    def escalates(self, score: float, threshold: float | None = None) -> bool:
        """Whether a score calls for the cloud.

        Args:
            score: A :meth:`score` result.
            threshold: The user's threshold; None for the calibrated default.

        Returns:
            True when ``score`` is above the threshold.
        """
        return score > (self.threshold if threshold is None else threshold)

    def to_json(self) -> dict[str, Any]:
        """The model as a JSON-ready dict (see the module docstring)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "feature_version": self.feature_version,
            "feature_names": feature_names(),
            "weights": [float(w) for w in self.weights],
            "bias": float(self.bias),
            "threshold": float(self.threshold),
            "mean": [float(m) for m in self.mean],
            "scale": [float(s) for s in self.scale],
            "words": self.words,
            "meta": dict(self.meta),
            "probe": None if self.probe is None else self.probe.to_json(),
        }

    @classmethod
    def from_json(cls, data: object) -> DifficultyModel:
        """Rebuild a model from :meth:`to_json` output.

        Args:
            data: The parsed JSON.

        Returns:
            The model.

        Raises:
            ConfigError: The data is not a difficulty model, or was fitted on another
                version of the features (the message says to run ``hybrid calibrate``).
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError("this is not a hybrid difficulty model file")
        format_version = data.get("format_version")
        if format_version not in READABLE_VERSIONS or isinstance(format_version, bool):
            raise ConfigError(
                f"the difficulty model file has format version {format_version!r}; "
                f"this hybrid reads versions {READABLE_VERSIONS[0]} to {FORMAT_VERSION}. Run "
                "`hybrid calibrate` to refit it."
            )
        version = data.get("feature_version")
        if version != FEATURE_VERSION or data.get("feature_names") != feature_names():
            raise ConfigError(
                f"the difficulty model was fitted on prompt features version {version!r}; this "
                f"hybrid computes version {FEATURE_VERSION}. Run `hybrid calibrate` to refit it "
                "for this version."
            )
        meta = data.get("meta", {})
        section = data.get("probe") if format_version >= 2 else None
        probe = None if section is None else ProbeStage.from_json(section)
        words = data.get("words", True)
        try:
            if not isinstance(meta, Mapping):
                raise TypeError("meta is not an object")
            if not isinstance(words, bool):
                raise TypeError(f"words is {words!r}, not true or false")
            return cls(
                weights=_float_array(data["weights"]),
                bias=_float(data["bias"]),
                threshold=_float(data["threshold"]),
                feature_version=FEATURE_VERSION,
                mean=_float_array(data["mean"]),
                scale=_float_array(data["scale"]),
                meta=dict(meta),
                probe=probe,
                words=words,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"the difficulty model file is damaged ({type(exc).__name__}: {exc}). "
                "Run `hybrid calibrate` to write it again."
            ) from exc


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _float_array(value: object) -> np.ndarray:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of numbers, got {type(value).__name__}")
    return np.array([_float(v) for v in value], dtype=np.float64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -_MAX_LOGIT, _MAX_LOGIT)))
    return result


def fit(
    X: np.ndarray,
    y: np.ndarray,
    *,
    l2: float,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Fit an L2-regularised logistic regression by Newton's method (IRLS).

    Minimises ``sum(weight * log loss) + l2 / 2 * |w|^2``; the intercept is not penalised.  Newton's
    method from zero weights is deterministic, so equal inputs give bit-equal outputs; each
    step is checked to lower the objective (halved until it does), which keeps it stable on
    separable data.

    Args:
        X: ``(n, d)`` features, best standardised (the penalty treats all weights alike).
        y: ``n`` labels, 1 for "the local answer was wrong", 0 for right.
        l2: Penalty strength; must be positive (it keeps separable data bounded).
        seed: Accepted so every calibration step takes the same seed; the solver itself has
            no randomness, so the result does not depend on it.
        sample_weight: ``n`` positive weights, one per example (None: all 1); an example of
            weight 2 counts as two copies of it.

    Returns:
        ``(weights, bias)``; when ``y`` holds one class only, zero weights and the log-odds of
        the smoothed base rate ``(k + 0.5) / (n + 1)``.

    Raises:
        ValueError: ``l2`` is not positive, ``X`` and ``y`` disagree in length, or a weight is
            not positive.
    """
    del seed  # deterministic solver; see the docstring
    if l2 <= 0:
        raise ValueError(f"l2 must be positive (got {l2})")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    if y.shape != (n,):
        raise ValueError(f"X has {n} rows but y has shape {y.shape}")
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,) or not bool(np.all(w > 0)):
        raise ValueError(f"sample_weight needs {n} positive weights")
    positives = float(y.sum())
    if positives in (0.0, float(n)):
        # One class only: the unpenalised intercept would run off to infinity.  The smoothed
        # base rate is the honest answer: no feature can tell anything apart here.
        return np.zeros(d), math.log((positives + 0.5) / (n - positives + 0.5))
    design = np.hstack([X, np.ones((n, 1))])
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0  # the intercept is free
    theta = np.zeros(d + 1)

    def objective(t: np.ndarray) -> float:
        z = np.clip(design @ t, -_MAX_LOGIT, _MAX_LOGIT)
        # log(1 + e^z) - y z, computed without overflow
        loss = np.logaddexp(0.0, z) - y * z
        return float((w * loss).sum() + 0.5 * (penalty * t * t).sum())

    current = objective(theta)
    for _ in range(_NEWTON_STEPS):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (w * (p - y)) + penalty * theta
        weights = w * p * (1.0 - p)
        hessian = (design * weights[:, None]).T @ design + np.diag(penalty)
        # A tiny ridge keeps the solve defined when the intercept column is degenerate.
        hessian[np.diag_indices_from(hessian)] += 1e-10
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-6:
            candidate = theta - size * step
            value = objective(candidate)
            if value <= current:
                break
            size /= 2
        else:
            break
        converged = float(np.max(np.abs(candidate - theta))) < _NEWTON_TOLERANCE
        theta, current = candidate, value
        if converged:
            break
    return theta[:-1].copy(), float(theta[-1])


def choose_threshold(scores: np.ndarray, y: np.ndarray, *, miss_cost: float = 1.0) -> float:
    """The default threshold: the one that makes the fewest costly routing mistakes.

    A routing mistake is either keeping a wrong answer local (a *miss*, weighted
    ``miss_cost``) or escalating a request the local model would have answered right (an
    unneeded escalation, weight 1).  With the default ``miss_cost=1`` this is the threshold
    that maximises the accuracy of "escalate exactly the wrong ones".  Calibration applies it
    to out-of-fold scores, so the threshold is not fitted to the model's own training fit.

    Args:
        scores: Scores of the examples (higher is harder).
        y: 1 where the local answer was wrong.
        miss_cost: How many unneeded escalations one wrong local answer is worth.

    Returns:
        A threshold in [0, 1], halfway between two neighbouring distinct scores (or at an end:
        0 escalates everything, 1 nothing).  Among equally good thresholds the lowest wins:
        on a tie, escalating protects quality.

    Raises:
        ValueError: ``scores`` and ``y`` differ in length or are empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if scores.shape != y.shape or scores.size == 0:
        raise ValueError("scores and y must be non-empty and of equal length")
    distinct = np.unique(scores)
    candidates = np.concatenate([[0.0], (distinct[:-1] + distinct[1:]) / 2, [1.0]])
    best, best_cost = 1.0, math.inf
    for threshold in candidates:
        escalated = scores > threshold
        misses = float(np.sum(y[~escalated]))
        unneeded = float(np.sum(1.0 - y[escalated]))
        cost = miss_cost * misses + unneeded
        if cost < best_cost - 1e-12:
            best, best_cost = float(threshold), cost
    return best
