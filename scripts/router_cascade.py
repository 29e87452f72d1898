"""The cascade on declining answers: what reading the local answer adds to the router.

With ``routing.cascade`` on, an answer the router kept local is read before it is sent (a whole
answer to its end, a streamed one as far as its first eight words), and one that opens by
declining ("I'm sorry, I can't answer this question.") is discarded for the cloud's
(:func:`hybrid.routing.cascade.declined`).  Read as a ranking, that is the router's own
score with every declining answer moved above every other: this module scores that ranking on
the same items as the router alone (leave one family out, the external sets, the traffic sets),
over several arrival orders, and counts how often the model declined and how often a declining
answer was wrong.  The check runs after the answer, so it is not a decision made before it: its
price is the local answer it discards (and the wait for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from router_folds import Folds, Labelled, Read, bullet, kept_local, mean_range

from hybrid.routing.calibration.metrics import auroc

ROUTER = "two-stage+recent"
"""The router the cascade completes: the one ``hybrid serve`` runs."""


HEAD = (
    f"| items | n | declined | wrong among declined | check alone | {ROUTER} AUROC "
    "| with the cascade | kept local @95% | with the cascade |\n"
    "|---|---:|---:|---:|---:|---|---|---|---|"
)


@dataclass(frozen=True)
class Collection:
    """The router alone and with the cascade on declining answers, on one collection of items.

    Attributes:
        n: How many items.
        declined: The share of local answers that open by declining.
        declined_wrong: The share of declining answers that were wrong (NaN: none declined).
        alone: AUROC of the router, one value per arrival order.
        cascaded: AUROC with every declining answer ranked first, per arrival order.
        kept_alone: The share kept local at 95 % of all-cloud quality, per order.
        kept_cascaded: The same with the cascade, per order.
        flag: AUROC of the declining check alone (declined or not).
    """

    n: int
    declined: float
    declined_wrong: float
    alone: tuple[float, ...]
    cascaded: tuple[float, ...]
    kept_alone: tuple[float, ...]
    kept_cascaded: tuple[float, ...]
    flag: float


def cascaded(scores: np.ndarray, declined: np.ndarray) -> np.ndarray:
    """The router's scores with every declining answer ranked above every other (scores lie in
    [0, 1]), keeping the router's order within each group."""
    return np.where(declined > 0, 1.0 + scores, scores)


def on_declines(reader: Read | Folds, data: Labelled, *, orders: Sequence[int]) -> Collection:
    """The router (:data:`ROUTER`) read by ``reader`` on ``data``, alone and cascaded."""
    declined = data.declined
    alone, both, kept_alone, kept_both = [], [], [], []
    for seed in orders:
        scores = reader.recent(seed)[ROUTER]
        with_cascade = cascaded(scores, declined)
        alone.append(auroc(scores, data.wrong))
        both.append(auroc(with_cascade, data.wrong))
        kept_alone.append(kept_local(scores, data.wrong))
        kept_both.append(kept_local(with_cascade, data.wrong))
    wrong_among = float(data.wrong[declined > 0].mean()) if declined.any() else float("nan")
    return Collection(
        len(data.items),
        float(declined.mean()),
        wrong_among,
        tuple(alone),
        tuple(both),
        tuple(kept_alone),
        tuple(kept_both),
        auroc(declined, data.wrong),
    )


def cascade_summary(collections: Mapping[str, Collection]) -> str:
    """The report summary's bullet: AUROC alone and with the cascade, per collection."""
    parts = ", ".join(
        f"{where} {mean_range(c.alone).split(' ')[0]} to {mean_range(c.cascaded).split(' ')[0]}"
        for where, c in collections.items()
    )
    return bullet(
        f"With the cascade on declining answers (`routing.cascade`, a check of the local "
        f"answer, not of the prompt), two-stage+recent's mean AUROC goes from: {parts} (see "
        "[The cascade on declining answers](#the-cascade-on-declining-answers)).",
    )


def cascade_section(collections: Mapping[str, Collection]) -> str:
    """The report's section: the router alone and cascaded on each collection."""
    rows = "\n".join(
        f"| {where} | {c.n} | {c.declined:.0%} | "
        + ("-" if np.isnan(c.declined_wrong) else f"{c.declined_wrong:.0%}")
        + f" | {c.flag:.3f} | {mean_range(c.alone)} | {mean_range(c.cascaded)} | "
        f"{mean_range(c.kept_alone, '{:.0%}')} | {mean_range(c.kept_cascaded, '{:.0%}')} |"
        for where, c in collections.items()
    )
    n_orders = len(next(iter(collections.values())).alone)
    return f"""
## The cascade on declining answers

With `routing.cascade` on, an answer the router kept local is read before it is sent (a whole
answer to its end, a streamed one as far as its first eight words), and one that opens by
declining ("I'm sorry, I can't answer this question.", "I don't know.") is discarded for the
cloud's (`cascade:declined`; `hybrid.routing.cascade.declined`, phrases in
six languages, a fixed rule that nothing here fits). As a ranking, that is {ROUTER}'s score with
every declining answer above every other. The same items as above, the routers fitted as
above (LOFO; fitted on every generated item for the external and the traffic sets); the mean
over {n_orders} arrival orders, and in brackets the lowest and the highest. *Check alone*: the
AUROC of declined-or-not by itself. The check needs the answer, so it is no decision made
before it: each declining answer costs the local answer it discards and the wait for it.

{HEAD}
{rows}

The rule's phrases were written from the declining answers to the generated items and from
common refusal wording; "don't have" ("I'm sorry, I don't have that information") was added
after reading answers to both the generated and the external items, so the external figure
with the cascade is not fully blind to those answers. The traffic sets' answers played no part
(the model declined none of them). A declining answer is always wrong here, so moving it above
the rest lifts the AUROC, but hardly the share kept local at 95 % quality: that share is set by
the answers ranked lowest, the ones most likely right, which the check does not touch.
"""
