"""The model stage read beside recent requests, asked for every request: measured, not shipped.

``hybrid serve`` reads each feature score beside the recent requests most like it (in the
feature stage's standardised space) and asks the model stage only for requests whose feature
score falls in its band, which is empty for the shipped calibration of the embedded model.
This module measures the other way round: the model stage asked for *every* request, its score
(the probe on the prompt vector) read beside the recent requests most like it in the probe's
own standardised vector space (:class:`~hybrid.routing.difficulty.recent.RecentScores`, the
same reading), and averaged with the shipped router's score at a weight.  The weight is chosen
on the traffic sets (real prompts standing in for a user's, never fitted on), as the hashed
words' weight is, not on the external check.  Its price is what the table does not show: every
request pays its prefill before the decision (kept for the answer of a request that stays
local, lost for one that escalates; the README's decision latency table gives the prefill).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from router_folds import Folds, Labelled, Read, beside_recent, bullet, kept_local, mean_range

from hybrid.routing.calibration.metrics import auroc

SHIPPED = "two-stage+recent"
"""The router the model stage's reading is averaged with: the one ``hybrid serve`` runs."""

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The model stage's weight in the average (0: the shipped router alone)."""

WHERE = ("LOFO", "traffic", "external")


@dataclass(frozen=True)
class Mixed:
    """One collection read at every weight of :data:`WEIGHTS`.

    Attributes:
        aurocs: Weight to the AUROC in each arrival order.
        kept: Weight to the share kept local at 95 % of all-cloud quality, per order.
    """

    aurocs: Mapping[float, tuple[float, ...]]
    kept: Mapping[float, tuple[float, ...]]


def probe_units(probe_mean: np.ndarray, probe_scale: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The prompt vectors standardised as the probe standardises them, then of norm 1 (rows of
    NaN, prompts without a vector, come out as zeros)."""
    z = (np.nan_to_num(vectors) - probe_mean) / probe_scale
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def _parts(reader: Read | Folds, n: int) -> list[tuple[np.ndarray, Read]]:
    if isinstance(reader, Folds):
        return list(reader.parts)
    return [(np.arange(n), reader)]


def mixed(reader: Read | Folds, data: Labelled, *, orders: Sequence[int]) -> Mixed:
    """The shipped router averaged with the model stage read beside recent requests, at each
    weight, in each arrival order (items without a prompt vector keep the shipped score)."""
    n = len(data.items)
    probe = np.full(n, np.nan)
    units = np.zeros((n, data.vectors.shape[1]))
    for index, read in _parts(reader, n):
        probe[index] = read.probe_scores
        units[index] = probe_units(read.probe.mean, read.probe.scale, data.vectors[index])
    has = ~np.isnan(data.vectors).any(axis=1)
    aurocs: dict[float, list[float]] = {weight: [] for weight in WEIGHTS}
    kept: dict[float, list[float]] = {weight: [] for weight in WEIGHTS}
    for seed in orders:
        shipped = reader.recent(seed)[SHIPPED]
        read_probe = beside_recent(probe, units, seed=seed, reading=has)
        for weight in WEIGHTS:
            scores = np.where(has, (1 - weight) * shipped + weight * read_probe, shipped)
            aurocs[weight].append(auroc(scores, data.wrong))
            kept[weight].append(kept_local(scores, data.wrong))
    return Mixed({w: tuple(v) for w, v in aurocs.items()}, {w: tuple(v) for w, v in kept.items()})


def chosen_weight(collections: Mapping[str, Mixed]) -> float:
    """The weight whose mean AUROC on the traffic sets is highest."""
    traffic = collections["traffic"].aurocs
    return max(WEIGHTS, key=lambda weight: float(np.mean(traffic[weight])))


def probe_recent_summary(collections: Mapping[str, Mixed]) -> str:
    """The report summary's bullet: the shipped router and the chosen weight's, per collection."""
    chosen = chosen_weight(collections)
    parts = ", ".join(
        f"{where} {mean_range(c.aurocs[0.0]).split(' ')[0]} to "
        f"{mean_range(c.aurocs[chosen]).split(' ')[0]}"
        for where, c in collections.items()
    )
    return bullet(
        "Not shipped: the model stage asked for every request, its score read beside the "
        "recent requests most like it in the model's own vector space and averaged with "
        f"{SHIPPED}'s at weight {chosen:g} (chosen on the traffic sets), moves the mean AUROC "
        f"from: {parts}; each request then pays its prefill before the decision (see [The model "
        "stage beside recent requests](#the-model-stage-beside-recent-requests-not-shipped)).",
    )


def probe_recent_section(collections: Mapping[str, Mixed]) -> str:
    """The report's section: AUROC and kept local at each weight, on each collection."""
    chosen = chosen_weight(collections)
    head = (
        "| model stage weight | "
        + " | ".join(f"{where} AUROC | {where} kept local" for where in WHERE)
        + " |\n|---|"
        + "---|" * (2 * len(WHERE))
    )
    rows = []
    for weight in WEIGHTS:
        cells = []
        for where in WHERE:
            cells.append(mean_range(collections[where].aurocs[weight]))
            cells.append(mean_range(collections[where].kept[weight], "{:.0%}"))
        marks = [m for m, on in (("shipped", weight == 0), ("chosen", weight == chosen)) if on]
        label = f"{weight:g}" + (f" ({', '.join(marks)})" if marks else "")
        rows.append(f"| {label} | {' | '.join(cells)} |")
    n_orders = len(collections["LOFO"].aurocs[0.0])
    table = "\n".join(rows)
    return f"""
## The model stage beside recent requests (not shipped)

`hybrid serve` reads each feature score beside the recent requests most like it, and asks the
model stage only for requests in its band (empty for the shipped calibration of the embedded
model). Here the model stage is asked for every request: the probe's score of the prompt
vector, read beside the recent requests most like it in the probe's own standardised vector
space (the same reading as the feature scores', with the same neighbours), then averaged with
{SHIPPED}'s score at a weight
(0: {SHIPPED} alone; 1: the model stage alone).
The routers are fitted as above (LOFO; on every generated item for the traffic and the
external sets); prompts without a vector keep the shipped score. The mean over {n_orders}
arrival orders and, in brackets, the lowest and the highest. The weight is chosen on the
traffic sets, as the words' weight is: {chosen:g}.

{head}
{table}

Not shipped, because of its price: every request would pay its prefill before the decision.
A request kept local reuses it (no prompt token is evaluated again), but one that escalates
has lost it and waited for it: 33-1,720 ms on the embedded model for prompts of 15 to 1,507
tokens (the README's decision latency table), more on a larger model.
"""
