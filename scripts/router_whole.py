"""Fitted on a part or on every item: what ``hybrid calibrate`` saves, read on real prompts.

``hybrid calibrate`` measures its recipe on a held-out split (a fit on 70 % of the items, scored
on the other 30 %) and saves a model fitted again, by the same steps, on every item
(:func:`hybrid.routing.calibration.fitting.calibrate`).  This module reads both fits of several
split seeds on prompts none of them saw: the external sets and the traffic sets, as
``hybrid serve`` decides (both stages, each feature score beside the recent requests most like
it, over several arrival orders): how much the items a fit holds move what it does on real
prompts, and whether the fit on every item does better.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from router_folds import Labelled, Read, beside_recent, guess_factors

from hybrid.routing.calibration.fitting import calibrate, feature_matrix
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.recent import standardised_unit

SEEDS = range(6)
"""Split seeds compared (``hybrid calibrate --seed``; 0 is the default)."""

FITS = ("part", "every item")
HEAD = (
    "| split seed | held-out AUROC (part) | part: external | part: traffic | part: band "
    "| every item: external | every item: traffic | every item: band |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)
"""The two fits of each seed: on the training split alone, and on every item (saved)."""


@dataclass(frozen=True)
class Fitted:
    """One split seed's two fits, read on real prompts.

    Attributes:
        seed: The split seed.
        shipped: Whether its fit on every item is the shipped calibration (the same weights,
            :func:`same_fit`).
        held_out: The held-out AUROC ``hybrid calibrate`` reports (the part's fit).
        band_share: Each fit's model-stage band share, by :data:`FITS` name.
        external: Each fit's AUROC on the external sets (mean over the arrival orders).
        traffic: Each fit's AUROC on the traffic sets (mean over the arrival orders).
    """

    seed: int
    shipped: bool
    held_out: float
    band_share: dict[str, float]
    external: dict[str, float]
    traffic: dict[str, float]


def decided(model: DifficultyModel, data: Labelled, *, orders: int) -> float:
    """Pooled AUROC of ``model`` as ``hybrid serve`` decides on ``data`` (both stages, each
    feature score read beside the recent requests), the mean over ``orders`` arrival orders."""
    X = feature_matrix(data.items)
    feature = model.scores(X)
    units = np.array([standardised_unit(model, row) for row in X])
    probe = model.probe
    guess = guess_factors(data.items)
    if probe is None:
        return statistics.mean(
            auroc(beside_recent(feature, units, seed=seed) * guess, data.wrong)
            for seed in range(orders)
        )
    has = ~np.isnan(data.vectors).any(axis=1)
    probe_scores = np.array(
        [
            probe.score(vector) if ok else score
            for vector, ok, score in zip(data.vectors, has, feature, strict=True)
        ]
    )
    read = Read(feature, probe_scores, has, units, probe, model.threshold, model, guess)
    return statistics.mean(
        auroc(read.recent(seed)["two-stage+recent"], data.wrong) for seed in range(orders)
    )


def part_or_whole(
    generated: Labelled,
    external: Labelled,
    traffic: Labelled,
    *,
    seeds: Sequence[int] = SEEDS,
    orders: int,
    shipped: DifficultyModel | None,
) -> list[Fitted]:
    """Calibrate on the generated items with each split seed, as ``hybrid calibrate`` does,
    and read the part's fit and the saved fit on the external and traffic sets.

    ``shipped``: the package's calibration of the model, to say which fit it is (None: none).
    """
    vectors = [None if np.isnan(row).any() else row for row in generated.vectors]
    correct = [not wrong for wrong in generated.wrong]
    out = []
    for seed in seeds:
        fitted = calibrate(generated.items, correct, seed=seed, vectors=vectors)
        assert fitted.measured is not None  # something is held out
        models = dict(zip(FITS, (fitted.measured, fitted.model), strict=True))
        out.append(
            Fitted(
                seed=seed,
                shipped=shipped is not None and same_fit(shipped, fitted.model),
                held_out=fitted.held_out_auroc,
                band_share={name: _band_share(m, generated) for name, m in models.items()},
                external={name: decided(m, external, orders=orders) for name, m in models.items()},
                traffic={name: decided(m, traffic, orders=orders) for name, m in models.items()},
            )
        )
    return out


def same_fit(one: DifficultyModel, other: DifficultyModel) -> bool:
    """Whether two fits are the same up to floating-point rounding: the same steps run with
    another number of BLAS threads (``OPENBLAS_NUM_THREADS=1`` beside the model) differ in
    the last bits of their weights."""
    return (
        one.weights.shape == other.weights.shape
        and bool(np.allclose(one.weights, other.weights, rtol=1e-9, atol=1e-12))
        and math.isclose(one.threshold, other.threshold, rel_tol=1e-9, abs_tol=1e-12)
    )


def _band_share(model: DifficultyModel, data: Labelled) -> float:
    """The share of ``data``'s items whose feature score falls in the model stage's band."""
    if model.probe is None:
        return 0.0
    low, high = model.probe.band
    if low >= high:
        return 0.0
    scores = model.scores(feature_matrix(data.items))
    return float(np.mean([model.probe.in_band(score) for score in scores]))


def part_or_whole_section(fitted: Sequence[Fitted], *, orders: int) -> str:
    """The report's section: each seed's two fits on the real prompts, and their spread."""
    rows = []
    for fit in fitted:
        shipped = " (shipped)" if fit.shipped else ""
        rows.append(
            f"| {fit.seed}{shipped} | {fit.held_out:.3f} | "
            + " | ".join(
                f"{fit.external[name]:.3f} | {fit.traffic[name]:.3f} | {fit.band_share[name]:.0%}"
                for name in FITS
            )
            + " |"
        )
    spread = []
    for name in FITS:
        for where in ("external", "traffic"):
            values = _values(fitted, where, name)
            spread.append(f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})")
    part_ext, part_traffic, whole_ext, whole_traffic = spread
    table = "\n".join(rows)
    places = ("external", "traffic")
    steadier = all(_width(fitted, w, "every item") < _width(fitted, w, "part") for w in places)
    better = all(_mean(fitted, w, "every item") >= _mean(fitted, w, "part") for w in places)
    verdict = (
        "The fit on every item moves "
        + ("less" if steadier else "not less, on at least one,")
        + " with the seed than a fit on a part, on the two collections of real prompts, and "
        + ("ranks them at least as well on average." if better else "ranks one worse on average.")
    )
    which = [fit.seed for fit in fitted if fit.shipped]
    shipped_line = (
        f"The shipped calibration is seed {which[0]}'s fit on every item."
        if which
        else "None of these fits is the shipped calibration (refit it with `hybrid calibrate`)."
    )
    closing = textwrap.fill(
        f"Mean (lowest-highest) over the seeds: a fit on the part, external {part_ext}, traffic "
        f"{part_traffic}; the fit on every item, external {whole_ext}, traffic "
        f"{whole_traffic}. {verdict} {shipped_line}",
        width=95,
    )
    return f"""
## Fitted on a part or on every item

`hybrid calibrate` measures its recipe on a split: a fit on 70 % of the generated items (by
category), scored on the other 30 % (the held-out AUROC it prints). The model it saves is
fitted again, by the same steps, on every item. Both fits of each split seed (`hybrid calibrate
--seed`), read on real prompts none of them saw, as `hybrid serve` decides (both stages, each
feature score beside the recent requests most like it; the mean over {orders} arrival orders):
the external sets and the traffic sets of
[Learning from traffic](#learning-from-traffic-refitted-on-labelled-requests-of-real-prompts)
(no labels). *Band*: the share of the generated items whose feature score falls in the model
stage's band (0: cross-validation found no band where both stages rank better than the feature
stage, so the model is never asked).

{HEAD}
{table}

{closing}
"""


def _values(fitted: Sequence[Fitted], where: str, name: str) -> list[float]:
    return [getattr(fit, where)[name] for fit in fitted]


def _width(fitted: Sequence[Fitted], where: str, name: str) -> float:
    values = _values(fitted, where, name)
    return max(values) - min(values)


def _mean(fitted: Sequence[Fitted], where: str, name: str) -> float:
    return statistics.mean(_values(fitted, where, name))
