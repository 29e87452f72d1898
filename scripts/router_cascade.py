"""The cascade: what reading the local answer adds to the router.

With ``routing.cascade`` on, an answer the router kept local is read before it is sent (a whole
answer to its end, a streamed one as far as its opening: eight words, or 64 characters), and
one that opens by declining ("I'm sorry, I can't answer this question.") is discarded for the
cloud's (:func:`hybrid.routing.cascade.declined`), as is one that opens with none of the
answers its prompt offered (:func:`hybrid.routing.choices.outside`: "Paris" to options A to D,
or to a question asking for yes or no); so is one the model was less sure of than
``min_confidence`` (:func:`hybrid.routing.cascade.confidence`, of what was read), unless it
answers yes or no to a question asking for one (a guess is right half the time).  The first
two are *no answer* here (:attr:`router_folds.Labelled.no_answer`), whatever the confidence.
Read as a ranking, that is the router's own score with every discarded answer moved above
every other: this module scores that ranking on the same items as the router alone (leave
one family out, the external sets, the traffic sets), over several arrival orders, at the
default ``min_confidence`` and over a grid of it, and counts how often answers were discarded
and how often those were wrong.  The check runs after the answer, so it is not a decision made
before it: its price is the local answer it discards (and the wait for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from router_folds import Folds, Labelled, Read, bullet, grid_head, kept_local, mean_range

from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.cascade import within_opening
from hybrid.settings.routing import CascadeSettings

ROUTER = "two-stage+recent"
"""The router the cascade completes: the one ``hybrid serve`` runs."""

MIN_CONFIDENCE = CascadeSettings().min_confidence
"""``routing.cascade.min_confidence`` at its default: what the whole cascade is read with."""

CONFIDENCE_GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
"""The ``min_confidence`` values the report reads the whole cascade at."""

CHOOSING = "traffic"
"""The collection ``min_confidence`` is chosen on (the best mean AUROC), as the words' weight is:
real prompts standing in for a user's, never fitted on; not the external check."""


HEAD = (
    f"| items | n | no answer | wrong among them | check alone | {ROUTER} AUROC "
    "| with the cascade on no answers | with the whole cascade | kept local @95% "
    "| on no answers | whole cascade | discarded by the whole cascade "
    "| wrong among them |\n"
    "|---|---:|---:|---:|---:|---|---|---|---|---|---|---:|---:|"
)


@dataclass(frozen=True)
class Collection:
    """The router alone and with the cascade, on one collection of items.

    Attributes:
        n: How many items.
        declined: The share of local answers that are no answer: they open by declining, or
            with none of the answers their prompt offered.
        declined_wrong: The share of those that were wrong (NaN: none).
        alone: AUROC of the router, one value per arrival order.
        cascaded: AUROC with every answer that is no answer ranked first, per arrival order.
        kept_alone: The share kept local at 95 % of all-cloud quality, per order.
        kept_cascaded: The same with the cascade on answers that are no answer.
        flag: AUROC of those checks alone (no answer or not).
        whole: AUROC with every answer the whole cascade discards (no answer, or less sure
            than :data:`MIN_CONFIDENCE`) ranked first, per order.
        kept_whole: The share kept local at 95 % quality with the whole cascade, per order.
        discarded: The share of answers the whole cascade discards.
        discarded_wrong: The share of those that were wrong (NaN: none discarded).
        grid: ``min_confidence`` to (mean AUROC, mean share kept local at 95 % quality, share
            discarded) of the whole cascade at it, over the same orders.
        within_opening: The share of answers no longer than a stream's opening
            (:func:`~hybrid.routing.cascade.within_opening`): for those, a stream's opening is
            the whole answer (NaN: answers not known).
    """

    n: int
    declined: float
    declined_wrong: float
    alone: tuple[float, ...]
    cascaded: tuple[float, ...]
    kept_alone: tuple[float, ...]
    kept_cascaded: tuple[float, ...]
    flag: float
    whole: tuple[float, ...] = ()
    kept_whole: tuple[float, ...] = ()
    discarded: float = float("nan")
    discarded_wrong: float = float("nan")
    grid: Mapping[float, tuple[float, float, float]] = field(default_factory=dict)
    within_opening: float = float("nan")


def cascaded(scores: np.ndarray, declined: np.ndarray) -> np.ndarray:
    """The router's scores with every discarded answer (``declined``: 1 where discarded)
    ranked above every other (scores lie in [0, 1]), keeping the router's order within each
    group."""
    return np.where(declined > 0, 1.0 + scores, scores)


def _wrong_among(flags: np.ndarray, wrong: np.ndarray) -> float:
    return float(wrong[flags > 0].mean()) if flags.any() else float("nan")


def on_cascade(reader: Read | Folds, data: Labelled, *, orders: Sequence[int]) -> Collection:
    """The router (:data:`ROUTER`) read by ``reader`` on ``data``, alone, with the cascade on
    answers that are no answer (declining, or outside the options offered), and with the whole
    cascade (those, or less sure than :data:`MIN_CONFIDENCE`; and at every value of
    :data:`CONFIDENCE_GRID`)."""
    declined = data.no_answer
    whole = data.discarded(MIN_CONFIDENCE)
    flags = {value: data.discarded(value) for value in CONFIDENCE_GRID}
    read = [reader.recent(seed)[ROUTER] for seed in orders]

    def aurocs(flag: np.ndarray) -> tuple[float, ...]:
        return tuple(auroc(cascaded(scores, flag), data.wrong) for scores in read)

    def kept(flag: np.ndarray) -> tuple[float, ...]:
        return tuple(kept_local(cascaded(scores, flag), data.wrong) for scores in read)

    no_flag = np.zeros(len(data.items))
    grid = {
        value: (float(np.mean(aurocs(flag))), float(np.mean(kept(flag))), float(flag.mean()))
        for value, flag in flags.items()
    }
    return Collection(
        len(data.items),
        float(declined.mean()),
        _wrong_among(declined, data.wrong),
        aurocs(no_flag),
        aurocs(declined),
        kept(no_flag),
        kept(declined),
        auroc(declined, data.wrong),
        aurocs(whole),
        kept(whole),
        float(whole.mean()),
        _wrong_among(whole, data.wrong),
        grid,
        _within_opening(data.answers),
    )


def _within_opening(answers: Sequence[str]) -> float:
    if not answers:
        return float("nan")
    return float(np.mean([within_opening(answer) for answer in answers]))


def chosen_confidence(collections: Mapping[str, Collection]) -> float | None:
    """The ``min_confidence`` of :data:`CONFIDENCE_GRID` whose whole cascade ranks the
    :data:`CHOOSING` collection best (the smallest of equals; None without that collection)."""
    choosing = collections.get(CHOOSING)
    if choosing is None or not choosing.grid:
        return None
    return max(sorted(choosing.grid), key=lambda value: choosing.grid[value][0])


def _mean(values: Sequence[float]) -> str:
    return mean_range(values).split(" ")[0]


def cascade_summary(collections: Mapping[str, Collection]) -> str:
    """The report summary's bullet: AUROC alone and with the cascade, per collection."""
    declining = ", ".join(
        f"{where} {_mean(c.alone)} to {_mean(c.cascaded)}" for where, c in collections.items()
    )
    whole = ", ".join(f"{where} {_mean(c.whole)}" for where, c in collections.items())
    return bullet(
        f"With the cascade on declining answers and answers outside the options offered "
        f"(`routing.cascade`, on by default; a check of the local answer, not of the prompt), "
        f"two-stage+recent's mean AUROC goes from: {declining}; with the whole cascade "
        f"(those, and answers the model was less sure of than `min_confidence` = "
        f"{MIN_CONFIDENCE:g}): {whole} (see [The cascade on local "
        "answers](#the-cascade-on-local-answers)).",
    )


def _grid_rows(collections: Mapping[str, Collection]) -> str:
    rows = []
    for value in CONFIDENCE_GRID:
        cells = []
        for c in collections.values():
            mean_auroc, kept, share = c.grid[value]
            cells.append(f"{mean_auroc:.3f} | {kept:.0%} | {share:.0%}")
        label = f"{value:g} (default)" if value == MIN_CONFIDENCE else f"{value:g}"
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _choice(collections: Mapping[str, Collection]) -> str:
    chosen = chosen_confidence(collections)
    if chosen is None:
        return ""
    if chosen == MIN_CONFIDENCE:
        return (
            f"On the {CHOOSING} sets the best `min_confidence` of the grid is the default, "
            f"{MIN_CONFIDENCE:g}."
        )
    return (
        f"On the {CHOOSING} sets the best `min_confidence` of the grid is {chosen:g}, **not** "
        f"the default ({MIN_CONFIDENCE:g}): set `routing.cascade.min_confidence` to it, or "
        "change the default."
    )


def _opening_shares(collections: Mapping[str, Collection]) -> str:
    known = {where: c.within_opening for where, c in collections.items()}
    shares = ", ".join(
        f"{share:.0%} ({where})" for where, share in known.items() if not np.isnan(share)
    )
    return f"of these items' answers, {shares}" if shares else "most short answers"


def cascade_section(collections: Mapping[str, Collection]) -> str:
    """The report's section: the router alone and cascaded on each collection."""
    rows = "\n".join(
        f"| {where} | {c.n} | {c.declined:.0%} | "
        + ("-" if np.isnan(c.declined_wrong) else f"{c.declined_wrong:.0%}")
        + f" | {c.flag:.3f} | {mean_range(c.alone)} | {mean_range(c.cascaded)} | "
        f"{mean_range(c.whole)} | "
        f"{mean_range(c.kept_alone, '{:.0%}')} | {mean_range(c.kept_cascaded, '{:.0%}')} | "
        f"{mean_range(c.kept_whole, '{:.0%}')} | {c.discarded:.0%} | "
        + ("-" if np.isnan(c.discarded_wrong) else f"{c.discarded_wrong:.0%}")
        + " |"
        for where, c in collections.items()
    )
    head = grid_head(
        "min_confidence", list(collections), ("AUROC", "kept local", "discarded"), "---:"
    )
    n_orders = len(next(iter(collections.values())).alone)
    return f"""
## The cascade on local answers

With `routing.cascade` on (the default, with a cloud configured), an answer the router kept
local is read before it is sent (a whole answer to its end, a streamed one as far as its
opening: eight words, or 64 characters), and
one that opens by declining ("I'm sorry, I can't answer this question.", "I don't know.") is
discarded for the cloud's (`cascade:declined`; `hybrid.routing.cascade.declined`, phrases in
six languages, a fixed rule that nothing here fits), as is one that opens with none of the
answers its prompt offers, lettered options or "yes or no", "true or false"
(`cascade:outside_options`; `hybrid.routing.choices.outside`, "Paris" to options A to D); both
are *no answer* below. An answer is also discarded when the
model was less sure of it than `routing.cascade.min_confidence` (default
{MIN_CONFIDENCE:g}): the geometric mean of the probabilities of the tokens it chose
(`hybrid.routing.cascade.confidence`, here of the answer to each item's first presentation,
recorded with it), unless it answers yes or no (true or false) to a question asking for one:
a guess is right half the time, and there the model's confidence did not tell right answers
from wrong ones (adopted on the development sets: see [Yes or
no](#yes-or-no-a-guess-is-right-half-the-time)). As a ranking, the cascade is {ROUTER}'s
score with every discarded answer above every other. The same items as above, the routers fitted as
above (LOFO; fitted on every generated item for the external and the traffic sets); the mean
over {n_orders} arrival orders, and in brackets the lowest and the highest. *Check alone*: the
AUROC of no-answer-or-not by itself. *Whole cascade*: no answer or less sure than
{MIN_CONFIDENCE:g}. The check needs the answer, so it is no decision made
before it: each discarded answer costs the local answer and the wait for it. A streamed answer
is read only as far as its opening, and each rule reads that; {_opening_shares(collections)}
are no longer than it: those a stream has read whole by then, as the columns assume.

{HEAD}
{rows}

The rule's phrases were written from the declining answers to the generated items and from
common refusal wording; "don't have" ("I'm sorry, I don't have that information") was added
after reading answers to both the generated and the external items, so the external figure
with the cascade is not fully blind to those answers. The traffic sets' answers played no part
(the model declined none of them). A declining answer is always wrong here, so moving it above
the rest lifts the AUROC, but hardly the share kept local at 95 % quality: that share is set by
the answers ranked lowest, the ones most likely right, which the check does not touch.

The whole cascade at each `min_confidence` (mean over the same orders; *discarded*: the share
of answers it discards):

{head}
{_grid_rows(collections)}

{_choice(collections)} The value is chosen on the {CHOOSING} sets' AUROC, as the words' weight
is; the LOFO and external figures at it are not fitted on. A lower value discards fewer answers
and ranks the rest by the router; a higher one discards more, most of them wrong, and can keep
more local at 95 % quality while ranking worse, since the discarded answers are ranked first
whatever the router says of them.
"""
