"""A prior difficulty model for a GGUF file nobody has calibrated yet.

A model without a calibration would leave the difficulty policy without an opinion.  Instead it
starts on a *prior*: the shipped feature weights (fitted on the embedded model, so they rank
prompts by what makes them hard for a small model), with the intercept moved so that the mean
score over the calibration set equals the error rate a model of this size and family is
expected to have there, and the threshold chosen for those scores.  A bigger model therefore
scores every prompt lower and keeps more requests local; the ranking is the same.

The expected accuracy on hybrid's calibration set (:func:`expected_accuracy`) comes from
:data:`ACCURACY_BY_SIZE`, interpolated in log(parameters), plus a family, an instruction-tuning
and a quantisation adjustment.  Only one point is measured on this project's hardware (the
embedded Gemma 3 270M, ``hybrid calibrate`` seed 0, 900 items); every other figure is an
assumption, flagged as such in the table, until a calibration of that model replaces it.
Background calibration (:mod:`hybrid.routing.calibration.background`) measures the model and
replaces the prior when its fit does better on held-out items.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np

from hybrid.models.stores.files import quant_label
from hybrid.routing.difficulty.model import DifficultyModel, choose_threshold

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable
    from pathlib import Path

    from hybrid.models.gguf import GgufInfo

PRIOR_SOURCE = "prior"
"""``meta["source"]`` of a prior model."""

BASE_MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
"""The shipped calibration whose feature weights every prior reuses: the embedded model's."""

PRIOR_SEED = 0
PRIOR_PER_CATEGORY = 60
"""The calibration set the intercept is matched on: ``hybrid calibrate``'s default one."""


@dataclass(frozen=True)
class AccuracyPoint:
    """Accuracy on hybrid's calibration set expected of a model of one size.

    Attributes:
        parameters: Parameter count.
        accuracy: Share of calibration items answered right (greedy, first line graded).
        basis: ``"measured"`` (run here with ``hybrid calibrate``) or ``"assumed"`` (an
            estimate from public benchmark trends of instruction-tuned models of that size,
            not measured on this set).
        note: Which model, or what the estimate rests on.
    """

    parameters: float
    accuracy: float
    basis: Literal["measured", "assumed"]
    note: str


ACCURACY_BY_SIZE: tuple[AccuracyPoint, ...] = (
    AccuracyPoint(
        268e6,
        0.226,
        "measured",
        "Gemma 3 270M base, Q4_K_M: the embedded model (seed 0, 900 items)",
    ),
    AccuracyPoint(0.5e9, 0.33, "assumed", "0.5B class (Qwen 2.5 0.5B)"),
    AccuracyPoint(1.0e9, 0.42, "assumed", "1B class (Gemma 3 1B, Llama 3.2 1B)"),
    AccuracyPoint(3.0e9, 0.56, "assumed", "3B class (Llama 3.2 3B, Qwen 2.5 3B)"),
    AccuracyPoint(8.0e9, 0.68, "assumed", "7-8B class (Llama 3.1 8B, Qwen 2.5 7B)"),
    AccuracyPoint(14e9, 0.75, "assumed", "12-14B class (Gemma 3 12B, Qwen 2.5 14B)"),
    AccuracyPoint(32e9, 0.82, "assumed", "27-32B class (Gemma 3 27B, Qwen 2.5 32B)"),
    AccuracyPoint(70e9, 0.86, "assumed", "70B class (Llama 3.3 70B)"),
)
"""Expected accuracy by parameter count; between points, linear in log(parameters); beyond
the ends, the end's value.  The points are for the measured point's kind of model: a
general-purpose family at 4-bit quantisation."""

FAMILY_ADJUSTMENT: Mapping[str, float] = {
    "qwen2": 0.04,
    "qwen3": 0.05,
    "phi3": 0.03,
}
"""Assumed: accuracy added for families that do better than their size on arithmetic, code
and reasoning items (keys are ``general.architecture``); other families get 0."""

INSTRUCT_ADJUSTMENT = 0.05
"""Assumed: accuracy added for an instruction-tuned model (its GGUF has a chat template); the
measured point is a base model, which answers less often on the first line."""

QUANT_ADJUSTMENT: Mapping[int, float] = {1: -0.12, 2: -0.08, 3: -0.03, 4: 0.0, 5: 0.005, 6: 0.01}
"""Assumed: accuracy added by bits per weight of the quantisation (``Q3_K_M`` is 3); 8 bits and
above (Q8_0, F16, FP16, BF16, F32) add 0.01.  The measured point is 4-bit."""

_ACCURACY_RANGE = (0.02, 0.98)
_QUANT_BITS = re.compile(r"^(?:UD-)?(?:I?Q|TQ|MXFP)(\d)", re.IGNORECASE)
_SIZE_LABEL = re.compile(r"^(?:(\d+)x)?(\d+(?:\.\d+)?)([KMBT])$", re.IGNORECASE)
_SIZE_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
# In a model's name: "32b", "8x7b", "270m", "1.5b" (after a separator or at the start).
_NAME_SIZE = re.compile(r"(?:^|[-_:/ .])(?:(\d+)x)?(\d+(?:\.\d+)?)([mbt])(?=$|[-_:/ .])")
_NAME_WORDS = re.compile(r"[-_:/ .]+")
# Name pieces that give the family (general.architecture) the adjustments are keyed by.
_NAME_FAMILIES: tuple[tuple[str, str], ...] = (
    ("qwen3", "qwen3"),
    ("qwen2", "qwen2"),
    ("qwen", "qwen2"),
    ("phi-3", "phi3"),
    ("phi3", "phi3"),
    ("gemma", "gemma3"),
    ("llama", "llama"),
    ("mistral", "llama"),
)


@dataclass(frozen=True)
class ModelTraits:
    """What a GGUF file says about the model in it, as far as the prior needs.

    Attributes:
        parameters: Parameter count (from the tensors, else ``general.size_label``), or None
            when the file says neither.
        family: ``general.architecture`` (``gemma3``, ``llama``, ``qwen2``, ...).
        quantization: The quantisation label (``Q4_K_M``).
        instruct: The file carries a chat template.
        name: ``general.name``, or None.
    """

    parameters: float | None
    family: str
    quantization: str
    instruct: bool
    name: str | None = None

    @classmethod
    def of(cls, info: GgufInfo) -> ModelTraits:
        """Read the traits from a parsed GGUF header."""
        counted = sum(math.prod(tensor.shape) for tensor in info.tensors)
        parameters: float | None = float(counted) if counted > 0 else None
        if parameters is None:
            parameters = parse_size_label(info.metadata.get("general.size_label"))
        return cls(
            parameters=parameters,
            family=info.architecture,
            quantization=info.file_type,
            instruct=info.chat_template is not None,
            name=info.name,
        )

    @classmethod
    def of_name(cls, name: str) -> ModelTraits:
        """Read the traits from a model's name, as servers and hubs spell it.

        ``qwen2.5-32b-instruct-q4_k_m`` is 32e9 parameters of family ``qwen2``, instruction
        tuned, Q4_K_M; ``llama3.1:8b`` (Ollama) 8e9 of ``llama``; ``mixtral-8x7b`` 5.6e10.  A
        name without a size gives None (the smallest size's accuracy: on the safe side).  A
        name is taken as instruction-tuned unless it says ``base``: servers serve chat models.
        The quantisation is read as discovery reads a file name's
        (:func:`~hybrid.models.stores.files.quant_label`), so ``llama3.2:1b-instruct-fp16`` is
        ``FP16`` and ``Qwen3-4B-UD-Q4_K_XL`` is ``UD-Q4_K_XL``.
        """
        lower = name.lower()
        size = _NAME_SIZE.search(lower)
        parameters = (
            parse_size_label(
                f"{size.group(1) + 'x' if size.group(1) else ''}{size.group(2)}{size.group(3)}"
            )
            if size
            else None
        )
        family = next((f for pattern, f in _NAME_FAMILIES if pattern in lower), "")
        return cls(
            parameters=parameters,
            family=family,
            quantization=quant_label(name) or "",
            instruct="base" not in _NAME_WORDS.split(lower),
            name=name,
        )

    @classmethod
    def of_file(cls, path: Path) -> ModelTraits:
        """Read the traits from a GGUF file's header.

        Raises:
            ModelFileError: The header cannot be read.
        """
        from hybrid.models.gguf import read_gguf

        return cls.of(read_gguf(path))


def parse_size_label(label: object) -> float | None:
    """``general.size_label`` as a parameter count: ``"270M"`` is 2.7e8, ``"8x7B"`` 5.6e10.

    Returns:
        The count, or None when the label is missing or not of that form.
    """
    if not isinstance(label, str):
        return None
    match = _SIZE_LABEL.match(label.strip())
    if match is None:
        return None
    experts = int(match.group(1)) if match.group(1) else 1
    return experts * float(match.group(2)) * _SIZE_UNITS[match.group(3).upper()]


def quantization_bits(label: str) -> int | None:
    """Bits per weight of a quantisation label: ``Q4_K_M`` 4, ``IQ2_XS`` 2, ``UD-Q4_K_XL`` 4,
    ``MXFP4`` 4, ``F16`` 16."""
    upper = label.upper()
    if upper in ("F16", "FP16", "BF16"):
        return 16
    if upper == "F32":
        return 32
    match = _QUANT_BITS.match(upper)
    return int(match.group(1)) if match else None


def expected_accuracy(traits: ModelTraits) -> float:
    """The share of hybrid's calibration set a model like this is expected to answer right.

    Args:
        traits: The model's size, family, quantisation and tuning.

    Returns:
        An accuracy in [0.02, 0.98]: the size table's value (the smallest point's when the
        size is unknown) plus the adjustments of the module docstring.
    """
    accuracy = _by_size(traits.parameters)
    accuracy += FAMILY_ADJUSTMENT.get(traits.family.lower(), 0.0)
    if traits.instruct:
        accuracy += INSTRUCT_ADJUSTMENT
    bits = quantization_bits(traits.quantization)
    if bits is not None:
        accuracy += QUANT_ADJUSTMENT.get(bits, 0.01 if bits >= 8 else 0.0)
    low, high = _ACCURACY_RANGE
    return min(max(accuracy, low), high)


def _by_size(parameters: float | None) -> float:
    points = ACCURACY_BY_SIZE
    if parameters is None or parameters <= points[0].parameters:
        return points[0].accuracy
    if parameters >= points[-1].parameters:
        return points[-1].accuracy
    for lower, upper in itertools.pairwise(points):
        if parameters <= upper.parameters:
            span = math.log(upper.parameters) - math.log(lower.parameters)
            t = (math.log(parameters) - math.log(lower.parameters)) / span
            return lower.accuracy + t * (upper.accuracy - lower.accuracy)
    return points[-1].accuracy  # unreachable: the last point bounds the loop


def build_prior(
    base: DifficultyModel,
    traits: ModelTraits,
    features: np.ndarray,
    *,
    sha256: str | None = None,
) -> DifficultyModel:
    """The prior for a model: ``base``'s weights, intercept and threshold moved to its size.

    The intercept is shifted (by bisection) until the mean score over ``features`` equals the
    expected error rate, ``1 - expected_accuracy(traits)``.  The threshold is the one that
    makes the fewest expected routing mistakes when the prior's scores are taken as the
    probabilities they claim to be (:func:`~hybrid.routing.difficulty.model.choose_threshold`
    with each item's score as its expected label).

    Args:
        base: The model whose feature weights are reused (the shipped calibration).
        traits: The model the prior is for.
        features: The calibration set's feature rows, ``(n, N_FEATURES)``.
        sha256: The GGUF file's SHA-256, recorded in ``meta``.

    Returns:
        A model whose ``meta["source"]`` is ``"prior"``, with the ``expected_accuracy``,
        ``parameters``, ``family``, ``quantization``, ``instruct`` and ``base_model_sha256``
        it was built from, and no probe stage (a probe reads one model's own vectors).

    Raises:
        ValueError: ``features`` is empty.
    """
    if len(features) == 0:
        raise ValueError("the prior needs the calibration set's features")
    accuracy = expected_accuracy(traits)
    target = 1.0 - accuracy
    logits = features.astype(np.float64) @ (base.weights / base.scale)
    logits += base.bias - float((base.weights / base.scale) @ base.mean)
    low, high = -60.0, 60.0
    for _ in range(100):  # mean sigmoid is increasing in the shift
        middle = (low + high) / 2
        if float(np.mean(_sigmoid(logits + middle))) < target:
            low = middle
        else:
            high = middle
    shift = (low + high) / 2
    scores = _sigmoid(logits + shift)
    threshold = choose_threshold(scores, scores)
    meta: dict[str, object] = {
        "source": PRIOR_SOURCE,
        "model": traits.name,
        "model_sha256": sha256,
        "expected_accuracy": round(accuracy, 4),
        "parameters": traits.parameters,
        "family": traits.family,
        "quantization": traits.quantization,
        "instruct": traits.instruct,
        "base_model_sha256": base.meta.get("model_sha256", BASE_MODEL_SHA256),
    }
    return DifficultyModel(
        weights=base.weights,
        bias=float(base.bias + shift),
        threshold=threshold,
        feature_version=base.feature_version,
        mean=base.mean,
        scale=base.scale,
        meta=meta,
        words=base.words,
    )


def is_prior(model: DifficultyModel) -> bool:
    """Whether a difficulty model is a prior rather than a calibration."""
    return model.meta.get("source") == PRIOR_SOURCE


@cache
def calibration_features() -> np.ndarray:
    """The feature rows of ``hybrid calibrate``'s default calibration set (computed once)."""
    from hybrid.routing.calibration.fitting import feature_matrix
    from hybrid.routing.calibration.items import calibration_set

    items = calibration_set(PRIOR_SEED, per_category=PRIOR_PER_CATEGORY)
    matrix = feature_matrix(items)
    matrix.setflags(write=False)
    return matrix


def prior_for_file(
    path: Path, sha256: str, *, shipped: Traversable | Path | None = None
) -> DifficultyModel:
    """The prior for a GGUF file, from its header.

    Args:
        path: The GGUF file.
        sha256: Its SHA-256.
        shipped: Folder of shipped calibrations (default: the package's).

    Returns:
        The prior.

    Raises:
        ModelFileError: The header cannot be read.
        ConfigError: The shipped base calibration is missing or damaged.
    """
    base = _base_model(shipped)
    traits = ModelTraits.of_file(path)
    return build_prior(base, traits, calibration_features(), sha256=sha256)


def prior_for_name(name: str, *, shipped: Traversable | Path | None = None) -> DifficultyModel:
    """The prior for a model known only by the name a server gives it (a LAN server's
    ``qwen2.5-32b-instruct``): its traits as :meth:`ModelTraits.of_name` reads them.

    Raises:
        ConfigError: The shipped base calibration is missing or damaged.
    """
    return build_prior(_base_model(shipped), ModelTraits.of_name(name), calibration_features())


def _base_model(shipped: Traversable | Path | None) -> DifficultyModel:
    from hybrid.errors import ConfigError
    from hybrid.routing.difficulty.store import shipped_models

    folder = shipped_models() if shipped is None else shipped
    name = f"the shipped difficulty model {BASE_MODEL_SHA256}.json"
    try:
        data = json.loads(folder.joinpath(f"{BASE_MODEL_SHA256}.json").read_text("utf-8"))
        return DifficultyModel.from_json(data)
    except (OSError, ValueError, ConfigError) as exc:
        raise ConfigError(
            f"{name} cannot be read ({exc}), so no prior can be built for an uncalibrated "
            "model; reinstall hybrid, or run `hybrid calibrate`"
        ) from exc


def _sigmoid(z: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
    return result
