"""The model stage of the difficulty model: a linear probe on the local model's prompt vector.

The feature stage (:class:`~hybrid.routing.difficulty.model.DifficultyModel`) scores a prompt
from its text alone, in microseconds.  Where that score is unsure (inside :attr:`ProbeStage.
band`), the router asks the local model itself: its hidden state at the last prompt token
(:meth:`hybrid.local.backend.LocalBackend.prompt_embedding`) goes through a logistic regression
fitted on calibration answers, and the two stages together decide instead.  The vector costs
the prompt's prefill, which the answer then reuses when the request stays local.

How the band is settled (:meth:`ProbeStage.settle`): with a :class:`Blend`, each stage's
log-odds is standardised by its mean and spread on the training items, the two are averaged,
and the result, as a probability, is compared with the threshold.  Neither stage alone ranks
kinds of prompt it was not fitted on as well as both together.  Without one (files written
before it existed), the probe's score alone settles the band.

Asked for every request instead (``routing.difficulty.model_stage = "every"``), the model
stage decides on :meth:`ProbeStage.every`: the feature score and the probe's score, each read
beside the recent requests most like it (:mod:`hybrid.routing.difficulty.recent`), averaged at
:data:`EVERY_WEIGHT`, and compared with :attr:`ProbeStage.every_threshold`, fitted on that
average of the training items' out-of-fold scores.

The JSON form, the ``"probe"`` section of a difficulty model file (format version 2)::

    {"vector": "last_token", "weights": [...], "bias": -0.3, "mean": [...], "scale": [...],
     "band": [0.3, 0.7], "threshold": 0.5,
     "blend": {"feature": [-0.2, 1.1], "probe": [0.4, 0.9]}, "every_threshold": 0.31}

``weights``, ``mean`` and ``scale`` have one entry per dimension of the model's hidden state
(640 for Gemma 3 270M); ``blend`` (optional) holds each stage's log-odds mean and spread;
``every_threshold`` (optional: files written before it existed cannot be asked for every
request) the threshold of :meth:`ProbeStage.every`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hybrid.errors import ConfigError

EVERY_WEIGHT = 0.75
"""The probe's share of the score when the model stage is asked for every request (chosen on the
public traffic sets, against 0, 0.25, 0.5 and 1: ``docs/router-eval.md``)."""

VECTOR_KIND = "last_token"
"""What the probe's vectors are: the final hidden state at the last prompt token."""

# Logits beyond this are clipped: exp(40) is already far past float precision in a sigmoid.
_MAX_LOGIT = 40.0
# Scores are clipped to this distance from 0 and 1 before their log-odds are taken.
_EDGE = 1e-4


def log_odds(scores: np.ndarray) -> np.ndarray:
    """The log-odds of probabilities, each clipped to [1e-4, 1 - 1e-4] first."""
    p = np.clip(np.asarray(scores, dtype=np.float64), _EDGE, 1.0 - _EDGE)
    result: np.ndarray = np.log(p / (1.0 - p))
    return result


def probability(logits: np.ndarray) -> np.ndarray:
    """The logistic function, on logits clipped to +-40."""
    z = np.clip(np.asarray(logits, dtype=np.float64), -_MAX_LOGIT, _MAX_LOGIT)
    result: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return result


def every_scores(feature_scores: np.ndarray, probe_scores: np.ndarray) -> np.ndarray:
    """:meth:`ProbeStage.every` of arrays of requests' scores."""
    feature = np.asarray(feature_scores, dtype=np.float64)
    probe = np.asarray(probe_scores, dtype=np.float64)
    result: np.ndarray = (1.0 - EVERY_WEIGHT) * feature + EVERY_WEIGHT * probe
    return result


def _probability(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-min(max(logit, -_MAX_LOGIT), _MAX_LOGIT)))


@dataclass(frozen=True)
class Blend:
    """How the two stages' scores combine inside the band.

    Attributes:
        feature: The mean and spread of the feature stage's log-odds on the training items.
        probe: The mean and spread of the probe's log-odds on the same items.

    Raises:
        ValueError: A value is not finite or a spread is negative.
    """

    feature: tuple[float, float]
    probe: tuple[float, float]

    def __post_init__(self) -> None:
        for name in ("feature", "probe"):
            pair = tuple(float(x) for x in getattr(self, name))
            if len(pair) != 2 or not all(math.isfinite(x) for x in pair) or pair[1] < 0:
                raise ValueError(f"blend {name} {pair!r} is not [mean, spread >= 0]")
            object.__setattr__(self, name, pair)

    def combine(self, feature_scores: np.ndarray, probe_scores: np.ndarray) -> np.ndarray:
        """The mean of the two stages' standardised log-odds, as probabilities in [0, 1]
        (higher means harder); one per request, for arrays of requests' scores."""
        parts = [
            (log_odds(scores) - mean) / (spread + 1e-9)
            for scores, (mean, spread) in (
                (feature_scores, self.feature),
                (probe_scores, self.probe),
            )
        ]
        return probability((parts[0] + parts[1]) / 2)


@dataclass(frozen=True, eq=False)
class ProbeStage:
    """The model stage: logistic regression on the local model's prompt vector.

    Attributes:
        weights: One weight per dimension, for standardised vectors.
        bias: The intercept.
        mean: Per-dimension mean of the training vectors, subtracted first.
        scale: Per-dimension divisor applied after centring (positive).
        band: Feature-stage scores in ``[low, high]`` are settled by the probe.
        threshold: A request in the band escalates when its :meth:`settle` score is above this.
        blend: How the two stages combine in the band (None: the probe's score alone).
        every_threshold: A request escalates when its :meth:`every` score is above this, when
            the model stage is asked for every request (None: fitted before it existed).

    Raises:
        ValueError: The arrays are not one-dimensional of one length, a value is not finite,
            a scale is not positive, or the band or threshold is outside [0, 1].
    """

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    band: tuple[float, float]
    threshold: float
    blend: Blend | None = None
    every_threshold: float | None = None
    # Standardisation folded into the weights once, so that scoring is one dot product.
    _effective: np.ndarray = field(init=False, repr=False)
    _offset: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arrays: dict[str, np.ndarray] = {}
        for name in ("weights", "mean", "scale"):
            array = np.array(getattr(self, name), dtype=np.float64)
            if array.ndim != 1 or array.size == 0:
                raise ValueError(f"{name} has shape {array.shape}, expected one non-empty row")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name} holds a value that is not finite")
            array.setflags(write=False)
            arrays[name] = array
            object.__setattr__(self, name, array)
        sizes = {name: array.size for name, array in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"weights, mean and scale differ in length: {sizes}")
        if np.any(arrays["scale"] <= 0):
            raise ValueError("every scale must be positive")
        if not math.isfinite(self.bias):
            raise ValueError("bias is not finite")
        low, high = (float(x) for x in self.band)
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"band {self.band!r} is not [low, high] with 0 <= low <= high <= 1")
        object.__setattr__(self, "band", (low, high))
        for name in ("threshold", "every_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value} is outside [0, 1]")
        effective = arrays["weights"] / arrays["scale"]
        effective.setflags(write=False)
        object.__setattr__(self, "_effective", effective)
        object.__setattr__(self, "_offset", float(self.bias - effective @ arrays["mean"]))

    @property
    def dim(self) -> int:
        """The length of the vectors the probe reads."""
        return int(self.weights.size)

    def score(self, vector: np.ndarray) -> float:
        """The probability that the local model answers this prompt wrong.

        Args:
            vector: The local model's prompt vector (:attr:`dim` values).

        Returns:
            A probability in [0, 1]; higher means harder for the local model.

        Raises:
            ValueError: The vector has another length (a probe fitted for another model) or
                holds a value that is not finite.
        """
        values = np.asarray(vector, dtype=np.float64)
        if values.shape != (self.dim,):
            raise ValueError(
                f"the prompt vector has shape {values.shape}, the probe reads ({self.dim},): "
                "it was fitted for another model"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError("the prompt vector holds a value that is not finite")
        return _probability(float(values @ self._effective) + self._offset)

    def settle(self, feature_score: float, probe_score: float) -> float:
        """The score that decides a request in the band: the two stages blended.

        Args:
            feature_score: The feature stage's score of the request.
            probe_score: :meth:`score` of its prompt vector.

        Returns:
            A probability in [0, 1], compared with :attr:`threshold` by :meth:`escalates`;
            the probe's score itself when the probe has no :attr:`blend`.
        """
        if self.blend is None:
            return float(probe_score)
        return float(self.blend.combine(np.array(feature_score), np.array(probe_score)))

    def moved(self, fitted: float, chosen: float) -> ProbeStage:
        """This probe with its thresholds moved as a user moved the feature stage's.

        The step is the same in log-odds: a user who lowers the feature threshold from the
        fitted 0.53 to 0.30 escalates more of the band too.  A threshold of 0 or 1 carries over
        as it is (everything escalates, or nothing does).

        Args:
            fitted: The feature stage's calibrated threshold.
            chosen: The threshold the user set instead.

        Returns:
            The probe with the moved thresholds (itself when the two are equal).
        """
        if chosen == fitted:
            return self
        every = self.every_threshold
        if chosen <= 0.0 or chosen >= 1.0:
            edge = min(max(chosen, 0.0), 1.0)
            return replace(self, threshold=edge, every_threshold=None if every is None else edge)
        step = float(np.diff(log_odds(np.array([fitted, chosen])))[0])
        return replace(
            self,
            threshold=_moved_by(self.threshold, step),
            every_threshold=None if every is None else _moved_by(every, step),
        )

    def units(self, vectors: np.ndarray) -> np.ndarray:
        """Prompt vectors standardised as the probe standardises them, each then of norm 1:
        what recent requests are compared by (:mod:`hybrid.routing.difficulty.recent`).

        Args:
            vectors: One vector (``(dim,)``) or a row per prompt (``(n, dim)``).

        Returns:
            The same shape; a vector equal to the mean comes out as zeros.
        """
        z = (np.asarray(vectors, dtype=np.float64) - self.mean) / self.scale
        norm = np.linalg.norm(z, axis=-1, keepdims=True)
        result: np.ndarray = z / np.maximum(norm, 1e-12)
        return result

    def every(self, feature_score: float, probe_score: float) -> float:
        """The score that decides a request when the model stage is asked for every request:
        ``(1 - EVERY_WEIGHT) * feature_score + EVERY_WEIGHT * probe_score`` (both read beside
        the recent requests by the caller), compared with :attr:`every_threshold`."""
        return float(every_scores(np.array(feature_score), np.array(probe_score)))

    def in_band(self, feature_score: float) -> bool:
        """Whether the probe settles a request the feature stage scored this way."""
        low, high = self.band
        return low <= feature_score <= high

    def escalates(self, score: float, *, every: bool = False) -> bool:
        """Whether a :meth:`settle` score calls for the cloud (above :attr:`threshold`), or
        with ``every`` an :meth:`every` score (above :attr:`every_threshold`)."""
        if every:
            if self.every_threshold is None:
                raise ValueError("this probe has no every_threshold: run `hybrid calibrate`")
            return score > self.every_threshold
        return score > self.threshold

    def to_json(self) -> dict[str, Any]:
        """The probe as a JSON-ready dict (see the module docstring)."""
        blend = (
            {}
            if self.blend is None
            else {"blend": {"feature": list(self.blend.feature), "probe": list(self.blend.probe)}}
        )
        return {
            "vector": VECTOR_KIND,
            "weights": [float(w) for w in self.weights],
            "bias": float(self.bias),
            "mean": [float(m) for m in self.mean],
            "scale": [float(s) for s in self.scale],
            "band": [float(self.band[0]), float(self.band[1])],
            "threshold": float(self.threshold),
            **blend,
            **({} if self.every_threshold is None else {"every_threshold": self.every_threshold}),
        }

    @classmethod
    def from_json(cls, data: object) -> ProbeStage:
        """Rebuild a probe from :meth:`to_json` output.

        Args:
            data: The parsed ``"probe"`` section.

        Returns:
            The probe.

        Raises:
            ConfigError: The section is not a probe, or a field is missing or malformed (the
                message names it and says to run ``hybrid calibrate``).
        """
        if not isinstance(data, Mapping):
            raise _damaged(f"it is {type(data).__name__}, not an object")
        kind = data.get("vector", VECTOR_KIND)
        if kind != VECTOR_KIND:
            raise _damaged(f'it reads "{kind}" vectors; this hybrid computes "{VECTOR_KIND}"')
        for key in ("weights", "bias", "mean", "scale", "band", "threshold"):
            if key not in data:
                raise _damaged(f'"{key}" is missing')
        try:
            band = _float_list(data["band"], "band")
            if len(band) != 2:
                raise ValueError(f'"band" has {len(band)} numbers, expected [low, high]')
            return cls(
                weights=np.array(_float_list(data["weights"], "weights")),
                bias=_float(data["bias"], "bias"),
                mean=np.array(_float_list(data["mean"], "mean")),
                scale=np.array(_float_list(data["scale"], "scale")),
                band=(band[0], band[1]),
                threshold=_float(data["threshold"], "threshold"),
                blend=_blend(data.get("blend")),
                every_threshold=(
                    None
                    if data.get("every_threshold") is None
                    else _float(data["every_threshold"], "every_threshold")
                ),
            )
        except (TypeError, ValueError) as exc:
            raise _damaged(str(exc)) from exc


def _moved_by(threshold: float, step: float) -> float:
    """A threshold moved by ``step`` in log-odds."""
    return float(probability(log_odds(np.array(threshold)) + step))


def _damaged(problem: str) -> ConfigError:
    return ConfigError(
        f"the difficulty model file's probe section is malformed: {problem}. Run "
        '`hybrid calibrate` to write it again, or remove the "probe" key to route on the '
        "feature stage alone."
    )


def _blend(data: object) -> Blend | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise TypeError(f'"blend" must be an object, got {type(data).__name__}')
    pairs = {}
    for key in ("feature", "probe"):
        if key not in data:
            raise ValueError(f'"blend" has no "{key}"')
        pair = _float_list(data[key], f"blend.{key}")
        if len(pair) != 2:
            raise ValueError(f'"blend.{key}" has {len(pair)} numbers, expected [mean, spread]')
        pairs[key] = (pair[0], pair[1])
    return Blend(feature=pairs["feature"], probe=pairs["probe"])


def _float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f'"{name}" must be a number, got {value!r}')
    return float(value)


def _float_list(value: object, name: str) -> list[float]:
    if not isinstance(value, list):
        raise TypeError(f'"{name}" must be a list of numbers, got {type(value).__name__}')
    return [_float(v, name) for v in value]
