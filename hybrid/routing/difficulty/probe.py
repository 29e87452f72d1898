"""The model stage of the difficulty model: a linear probe on the local model's prompt vector.

The feature stage (:class:`~hybrid.routing.difficulty.model.DifficultyModel`) scores a prompt
from its text alone, in microseconds.  Where that score is unsure (inside :attr:`ProbeStage.
band`), the router asks the local model itself: its hidden state at the last prompt token
(:meth:`hybrid.local.backend.LocalBackend.prompt_embedding`) goes through a logistic regression
fitted on calibration answers, and that score decides instead.  The vector costs the prompt's
prefill, which the answer then reuses when the request stays local.

The JSON form, the ``"probe"`` section of a difficulty model file (format version 2)::

    {"vector": "last_token", "weights": [...], "bias": -0.3, "mean": [...], "scale": [...],
     "band": [0.3, 0.7], "threshold": 0.5}

``weights``, ``mean`` and ``scale`` have one entry per dimension of the model's hidden state
(640 for Gemma 3 270M).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybrid.errors import ConfigError

VECTOR_KIND = "last_token"
"""What the probe's vectors are: the final hidden state at the last prompt token."""

# Logits beyond this are clipped: exp(40) is already far past float precision in a sigmoid.
_MAX_LOGIT = 40.0


@dataclass(frozen=True, eq=False)
class ProbeStage:
    """The model stage: logistic regression on the local model's prompt vector.

    Attributes:
        weights: One weight per dimension, for standardised vectors.
        bias: The intercept.
        mean: Per-dimension mean of the training vectors, subtracted first.
        scale: Per-dimension divisor applied after centring (positive).
        band: Feature-stage scores in ``[low, high]`` are settled by the probe.
        threshold: The probe escalates when its score is above this.

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
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold} is outside [0, 1]")
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
        logit = float(values @ self._effective) + self._offset
        return 1.0 / (1.0 + math.exp(-min(max(logit, -_MAX_LOGIT), _MAX_LOGIT)))

    def in_band(self, feature_score: float) -> bool:
        """Whether the probe settles a request the feature stage scored this way."""
        low, high = self.band
        return low <= feature_score <= high

    def escalates(self, score: float) -> bool:
        """Whether a :meth:`score` calls for the cloud (above :attr:`threshold`)."""
        return score > self.threshold

    def to_json(self) -> dict[str, Any]:
        """The probe as a JSON-ready dict (see the module docstring)."""
        return {
            "vector": VECTOR_KIND,
            "weights": [float(w) for w in self.weights],
            "bias": float(self.bias),
            "mean": [float(m) for m in self.mean],
            "scale": [float(s) for s in self.scale],
            "band": [float(self.band[0]), float(self.band[1])],
            "threshold": float(self.threshold),
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
            )
        except (TypeError, ValueError) as exc:
            raise _damaged(str(exc)) from exc


def _damaged(problem: str) -> ConfigError:
    return ConfigError(
        f"the difficulty model file's probe section is malformed: {problem}. Run "
        '`hybrid calibrate` to write it again, or remove the "probe" key to route on the '
        "feature stage alone."
    )


def _float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f'"{name}" must be a number, got {value!r}')
    return float(value)


def _float_list(value: object, name: str) -> list[float]:
    if not isinstance(value, list):
        raise TypeError(f'"{name}" must be a list of numbers, got {type(value).__name__}')
    return [_float(v, name) for v in value]
