"""The model stage asked for every request (``routing.difficulty.model_stage = "every"``).

By default ``hybrid serve`` reads each feature score beside the recent requests most like it
(in the feature stage's standardised space) and asks the model stage only for requests whose
feature score falls in its band, which is empty for the shipped calibration of the embedded
model.  Asked for every request, the runtime decides on
:meth:`~hybrid.routing.difficulty.probe.ProbeStage.every`: the feature score read beside
recent requests (``features+recent``) and the probe's score of the prompt vector, read beside
the recent requests most like it in the probe's own standardised vector space
(:meth:`~hybrid.routing.difficulty.probe.ProbeStage.units`, the same
:class:`~hybrid.routing.difficulty.recent.RecentScores` reading), averaged at a weight and
compared with the probe's ``every_threshold``.  This module measures that decision: the AUROC
and the share kept local at 95 % of all-cloud quality at each weight of :data:`WEIGHTS` (the
runtime's, :data:`~hybrid.routing.difficulty.probe.EVERY_WEIGHT`, was chosen on the traffic
sets: real prompts standing in for a user's, never fitted on), and what the fitted thresholds
decide.  Its price is what the tables do not show: every request pays its prefill before the
decision (kept for the answer of a request that stays local, lost for one that escalates; the
README's decision latency table gives the prefill).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from router_cascade import MIN_CONFIDENCE, cascaded
from router_folds import (
    Figure,
    Folds,
    Labelled,
    Read,
    beside_recent,
    bullet,
    figures,
    grid_head,
    kept_local,
    mean_range,
)

from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.difficulty.probe import EVERY_WEIGHT, every_scores

SHIPPED = "two-stage+recent"
"""The router ``hybrid serve`` runs by default."""

BASE = "features+recent"
"""The feature stage's score the model stage's is averaged with: read beside recent requests."""

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The model stage's weight in the average (0: the feature stage alone)."""

EVERY = "every"
"""The runtime's decision when the model stage is asked for every request."""

WHERE = ("LOFO", "traffic", "external")


@dataclass(frozen=True)
class Decided:
    """What a router's fitted threshold decides, in each arrival order.

    Attributes:
        kept: The share of requests kept local.
        quality: The share answered right, the cloud's answers counted right.
    """

    kept: tuple[float, ...]
    quality: tuple[float, ...]


@dataclass(frozen=True)
class Mixed:
    """One collection read at every weight of :data:`WEIGHTS`.

    Attributes:
        aurocs: Weight to the AUROC in each arrival order.
        kept: Weight to the share kept local at 95 % of all-cloud quality, per order.
        shipped: The default router's (:data:`SHIPPED`) AUROC, per order.
        decided: :data:`BASE` at the feature stage's threshold and :data:`EVERY` at the
            probe's ``every_threshold``.
        first: :data:`EVERY`'s figures (:func:`router_folds.figures`) in the first arrival
            order, the one the report's other tables read, with bootstrap intervals (empty
            without resamples).
        cascaded: :data:`EVERY`'s AUROC with the whole cascade (every local answer it
            discards at the default ``min_confidence`` ranked first:
            :func:`router_cascade.cascaded`), per order.
    """

    aurocs: Mapping[float, tuple[float, ...]]
    kept: Mapping[float, tuple[float, ...]]
    shipped: tuple[float, ...]
    decided: Mapping[str, Decided]
    first: Mapping[str, Figure]
    cascaded: tuple[float, ...]


def _parts(reader: Read | Folds, n: int) -> list[tuple[np.ndarray, Read]]:
    if isinstance(reader, Folds):
        return list(reader.parts)
    return [(np.arange(n), reader)]


def at_threshold(
    scores: np.ndarray, thresholds: np.ndarray, wrong: np.ndarray
) -> tuple[float, float]:
    """The share kept local (score at or below its threshold) and the quality then."""
    kept = scores <= thresholds
    return float(kept.mean()), 1.0 - float((wrong * kept).mean())


def mixed(
    reader: Read | Folds, data: Labelled, *, orders: Sequence[int], resamples: int = 0
) -> Mixed:
    """The feature stage averaged with the model stage read beside recent requests, at each
    weight, and both routers' thresholds' decisions, in each arrival order (items without a
    prompt vector keep the feature stage's score and threshold, as the runtime does); with
    ``resamples``, :data:`EVERY`'s figures in the first order with bootstrap intervals."""
    n = len(data.items)
    probe = np.full(n, np.nan)
    units = np.zeros((n, data.vectors.shape[1]))
    feature_threshold = np.full(n, np.nan)
    every_threshold = np.full(n, np.nan)
    guess = np.ones(n)
    for index, read in _parts(reader, n):
        probe[index] = read.probe_scores
        guess[index] = read.factors
        units[index] = read.probe.units(np.nan_to_num(data.vectors[index]))
        feature_threshold[index] = read.threshold
        fitted = read.probe.every_threshold
        every_threshold[index] = np.nan if fitted is None else fitted
    has = ~np.isnan(data.vectors).any(axis=1)
    every_limit = np.where(has & ~np.isnan(every_threshold), every_threshold, feature_threshold)
    aurocs: dict[float, list[float]] = {weight: [] for weight in WEIGHTS}
    kept: dict[float, list[float]] = {weight: [] for weight in WEIGHTS}
    shipped: list[float] = []
    decided: dict[str, list[tuple[float, float]]] = {BASE: [], EVERY: []}
    first: dict[str, Figure] = {}
    with_cascade: list[float] = []
    discarded = data.discarded(MIN_CONFIDENCE)
    for seed in orders:
        recent = reader.recent(seed)
        base = recent[BASE]
        shipped.append(auroc(recent[SHIPPED], data.wrong))
        read_probe = beside_recent(probe, units, seed=seed, reading=has) * guess
        for weight in WEIGHTS:
            scores = np.where(has, (1 - weight) * base + weight * read_probe, base)
            aurocs[weight].append(auroc(scores, data.wrong))
            kept[weight].append(kept_local(scores, data.wrong))
        every = np.where(has, every_scores(base, read_probe), base)
        if resamples and not first:
            first = figures(every, data.wrong, seed=seed, resamples=resamples)
        with_cascade.append(auroc(cascaded(every, discarded), data.wrong))
        decided[BASE].append(at_threshold(base, feature_threshold, data.wrong))
        decided[EVERY].append(at_threshold(every, every_limit, data.wrong))
    return Mixed(
        {w: tuple(v) for w, v in aurocs.items()},
        {w: tuple(v) for w, v in kept.items()},
        tuple(shipped),
        {
            name: Decided(tuple(k for k, _ in pairs), tuple(q for _, q in pairs))
            for name, pairs in decided.items()
        },
        first,
        tuple(with_cascade),
    )


def chosen_weight(collections: Mapping[str, Mixed]) -> float:
    """The weight whose mean AUROC on the traffic sets is highest."""
    traffic = collections["traffic"].aurocs
    return max(WEIGHTS, key=lambda weight: float(np.mean(traffic[weight])))


def _mean(values: Sequence[float]) -> str:
    return mean_range(values).split(" ")[0]


def probe_recent_summary(collections: Mapping[str, Mixed]) -> str:
    """The report summary's bullet: the default router against the model stage asked for
    every request, per collection."""
    parts = ", ".join(
        f"{where} {_mean(c.shipped)} to {_mean(c.aurocs[EVERY_WEIGHT])}"
        for where, c in collections.items()
    )
    cascade = ", ".join(f"{where} {_mean(c.cascaded)}" for where, c in collections.items())
    return bullet(
        'Opt-in, `routing.difficulty.model_stage = "every"`: the model stage asked for every '
        "request, its score read beside the recent requests most like it in the model's own "
        f"vector space and averaged with the feature stage's at weight {EVERY_WEIGHT:g}, moves "
        f"the mean AUROC from the default router's: {parts}; with the cascade as well: "
        f"{cascade}; each request then pays its prefill before the decision "
        "(see [The model stage asked for every request]"
        "(#the-model-stage-asked-for-every-request-opt-in)).",
    )


def _decided_rows(collections: Mapping[str, Mixed]) -> str:
    rows = []
    for name, label in (
        (BASE, f"{BASE}, at the feature stage's threshold (the default's decision)"),
        (EVERY, f'model_stage = "every", at the probe\'s every_threshold ({EVERY_WEIGHT:g})'),
    ):
        cells = []
        for where in WHERE:
            decided = collections[where].decided[name]
            cells.append(mean_range(decided.kept, "{:.0%}"))
            cells.append(mean_range(decided.quality, "{:.0%}"))
        rows.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(rows)


def _first(collections: Mapping[str, Mixed]) -> str:
    """The runtime's figures in the first arrival order, with their intervals (a paragraph)."""
    if not all(c.first for c in collections.values()):
        return ""
    parts = "; ".join(
        f"{where} AUROC {collections[where].first['AUROC'].text()}, kept local "
        f"{collections[where].first['kept local @95%'].text('{:.0%}')}"
        for where in WHERE
    )
    return (
        f"In arrival order 0, the one the tables above read at the default seed, with 95 % "
        f'bootstrap intervals, `model_stage = "every"` ({EVERY_WEIGHT:g}): {parts}.\n\n'
    )


def _cascade(collections: Mapping[str, Mixed]) -> str:
    """The runtime with the whole cascade too (a paragraph)."""
    parts = "; ".join(f"{where} {mean_range(collections[where].cascaded)}" for where in WHERE)
    return (
        "With the cascade as well (`routing.cascade` at its default `min_confidence`, "
        f"{MIN_CONFIDENCE:g}: every local answer that opens by declining or with none of the "
        "options its prompt offered, or that the model was less sure of, ranked first, as in "
        "[The cascade on local answers](#the-cascade-on-local-answers)), "
        f'`model_stage = "every"`\'s mean AUROC: {parts}. '
        "The cascade checks the answer, after it: each discarded answer costs the local answer "
        "it throws away, and its declining phrases were partly written after reading the "
        "generated and external answers, so those two figures are not blind to it.\n\n"
    )


def probe_recent_section(collections: Mapping[str, Mixed]) -> str:
    """The report's section: AUROC and kept local at each weight, on each collection, and
    what the fitted thresholds decide."""
    chosen = chosen_weight(collections)
    head = grid_head("model stage weight", WHERE, ("AUROC", "kept local"))
    rows = []
    for weight in WEIGHTS:
        cells = []
        for where in WHERE:
            cells.append(mean_range(collections[where].aurocs[weight]))
            cells.append(mean_range(collections[where].kept[weight], "{:.0%}"))
        marks = [
            m
            for m, on in (
                (BASE, weight == 0),
                ("runtime", weight == EVERY_WEIGHT),
                ("best on traffic", weight == chosen),
            )
            if on
        ]
        label = f"{weight:g}" + (f" ({', '.join(marks)})" if marks else "")
        rows.append(f"| {label} | {' | '.join(cells)} |")
    shipped = " | ".join(f"{mean_range(collections[where].shipped)} | -" for where in WHERE)
    n_orders = len(collections["LOFO"].aurocs[0.0])
    table = "\n".join(rows)
    decided_head = (
        "| router, threshold | "
        + " | ".join(f"{where} kept local | {where} quality" for where in WHERE)
        + " |\n|---|"
        + "---|" * (2 * len(WHERE))
    )
    return f"""
## The model stage asked for every request (opt-in)

`hybrid serve` reads each feature score beside the recent requests most like it, and by
default asks the model stage only for requests in its band (empty for the shipped calibration
of the embedded model). With `routing.difficulty.model_stage = "every"` it asks it for every
request: the probe's score of the prompt vector, read beside the recent requests most like it
in the probe's own standardised vector space (the same reading as the feature scores', with
the same neighbours), is averaged with {BASE}'s score at a weight (0: {BASE} alone; 1: the
model stage alone), and compared with a threshold fitted on the same average of the
calibration items' out-of-fold scores (`every_threshold`). The routers are fitted as above
(LOFO; on every generated item for the traffic and the external sets); prompts without a
vector keep the feature score. The mean over {n_orders} arrival orders and, in brackets, the
lowest and the highest. The runtime's weight, {EVERY_WEIGHT:g}, was chosen on the traffic sets
(as the words' weight is), so the traffic figures at it are partly fitted; the LOFO and
external ones are not. In this run the best weight on the traffic sets is {chosen:g}.

{head}
{table}
| {SHIPPED} (the default) | {shipped} |

{_first(collections)}{_cascade(collections)}What the fitted thresholds decide (share kept
local; quality: the share answered right, the cloud's answers counted right; 95 % is the target
the "kept local" columns above read at):

{decided_head}
{_decided_rows(collections)}

Not the default, because of its price: every request pays its prefill before the decision.
A request kept local reuses it (no prompt token is evaluated again), but one that escalates
has lost it and waited for it: 33-1,720 ms on the embedded model for prompts of 15 to 1,507
tokens (the README's decision latency table), more on a larger model. It is asked only while
a slot of the local model is free; when none is, the feature stage decides.
"""
