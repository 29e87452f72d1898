"""Learning from traffic, measured: the router refitted on labelled requests of real prompts.

``scripts/eval_router.py``'s external check fits on generated items only, as a fresh install
would.  A running server also learns from its own traffic: people's feedback and shadow
comparisons label requests, and ``hybrid calibrate --from-ledger`` (or the background
calibration) refits on them (:func:`hybrid.routing.calibration.learning.refit`).  This module
measures that, on sets of public prompts standing in for a user's traffic
(:data:`external_sets.TRAFFIC_SETS`, none of them one of the external check's sets):

1. the model in use is what ``hybrid calibrate`` fits on every generated item;
2. of each traffic set, ``k`` requests drawn at random are labelled (their grade, as a person's
   ``good``/``bad`` would say) and go to :func:`~hybrid.routing.calibration.learning.refit`
   with the generated answers, exactly as the ledger's labels do;
3. the refit replaces the model only when ``refit`` adopts it (its held-out AUROC beats the
   model in use), as the server decides; ``refit`` also chooses how many calibration answers
   one labelled request counts for;
4. the model then in use scores the same held-out requests of every set for every ``k`` (the
   last ``n - max(k)`` of each set's draw), pooled, for the feature stage and both stages.

Each ``k`` is drawn ``repeats`` times with different seeds; the figures are the mean and the
range over the draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random

import numpy as np
from external_sets import TRAFFIC_SETS
from router_folds import Labelled, Read, beside_recent, family_rate, lofo_folds, mean_range

from hybrid.routing.calibration.fitting import (
    WORD_WEIGHTS,
    calibrate,
    feature_matrix,
    prompt_length,
)
from hybrid.routing.calibration.learning import TRAFFIC_WEIGHTS, refit
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.calibration.probe_fitting import two_stage_scores
from hybrid.routing.calibration.refit_examples import Example, Source, labelled_requests
from hybrid.routing.difficulty.features import extract
from hybrid.routing.difficulty.labelled import MIN_ESCALATED, NEIGHBOURS, PRIOR, LabelledScores
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import every_scores
from hybrid.routing.difficulty.recent import MIN_SIMILARITY, standardised_unit

LABELS_PER_SET = (0, 25, 50, 100)
"""Labelled requests per traffic set the router refits on (0: the model as calibrated)."""

EVERY = "any request"
"""Labels on requests drawn from all of them: what shadow comparisons give when they sample
escalated requests (``routing.learn.local_shadow_rate``) as well as local ones."""

REPLAY_SHA256 = "replay"
"""What the replay's models say they were fitted for (``meta.model_sha256``), so that the
router's memory of labelled requests reads beside the labels with them."""

KEPT_LOCAL = "kept local only"
"""Labels only on requests the model in use keeps local (at its threshold, with a cloud
configured): what people's feedback on local answers and shadow sampling of local answers
alone can give."""


@dataclass(frozen=True)
class Learned:
    """What the router scored on held-out traffic after learning from ``labels`` per set.

    Attributes:
        labels: Labelled requests per set.
        features: Pooled AUROC of the feature stage, one per draw.
        two_stage: Pooled AUROC of both stages (the runtime decision), one per draw.
        adopted: How many draws' refits the server would have adopted.
        weights: What one labelled request counted for, in calibration answers, in each
            draw's refit (empty with no labels).
        model_stage: Pooled AUROC of the model stage alone, every request asked (the probe of
            the model in use: a refit's own when the labelled requests taught it a better one,
            else the one carried over), one per draw; empty without a probe.
        recent: Pooled AUROC of both stages as ``hybrid serve`` decides, each feature score
            read beside the recent requests most like it, one per draw.
        every: Pooled AUROC of the model stage asked for every request
            (``routing.difficulty.model_stage = "every"``), one per draw; empty without a
            probe.
        word_weights: The hashed words' weight in each draw's refit (empty with no labels).
        labelled: Pooled AUROC of both stages as ``hybrid serve`` decides with
            ``routing.difficulty.labelled_neighbours`` (its default): each feature score read
            beside the recent requests, then beside the labelled requests (those an adopted
            refit learned from by the out-of-fold scores it recorded of them), one per draw.
        unrefitted: The same with no refit (``routing.learn.refit_after = 0``): the model as
            calibrated, read beside every labelled request, one per draw.
        probe_refits: Of the adopted refits, how many fitted the model stage again on the
            labelled requests' prompt vectors (the others carried it over).
        pool: Which requests could be labelled: :data:`EVERY` or :data:`KEPT_LOCAL`.
        available: How many requests of the label pool could be labelled in each draw (all
            sets together): ``labels`` per set, or fewer kept local.
    """

    labels: int
    features: tuple[float, ...]
    two_stage: tuple[float, ...]
    adopted: int
    weights: tuple[float, ...] = ()
    model_stage: tuple[float, ...] = ()
    recent: tuple[float, ...] = ()
    word_weights: tuple[float, ...] = ()
    probe_refits: int = 0
    pool: str = EVERY
    available: tuple[int, ...] = ()
    every: tuple[float, ...] = ()
    labelled: tuple[float, ...] = ()
    unrefitted: tuple[float, ...] = ()


def examples_of(
    data: Labelled, source: Source, escalated: np.ndarray | None = None
) -> list[Example]:
    """Items and their grades as ``refit``'s examples (``source``: where the label came from),
    each with its prompt vector when it has one, as the server keeps it for a request it
    answered (``routing.learn.prompt_vectors``); labelled requests arrive in their order, one
    a second, as the ledger's signals carry their time, and were answered in the cloud where
    ``escalated`` marks them (the local answer given in the background), else locally."""
    labelled = source != "calibration"
    return [
        Example(
            extract(item.messages),
            bool(wrong),
            prompt_length(item),
            source,
            vector if np.isfinite(vector).all() else None,
            float(index) if labelled else None,
            ("cloud" if escalated is not None and escalated[index] else "local")
            if labelled
            else None,
        )
        for index, (item, wrong, vector) in enumerate(
            zip(data.items, data.wrong, data.vectors, strict=True)
        )
    ]


def labelled_memory(examples: Sequence[Example]) -> LabelledScores:
    """The router's memory of labelled requests (:mod:`hybrid.routing.difficulty.labelled`)
    holding these, for the replay's model (:data:`REPLAY_SHA256`)."""
    memory = LabelledScores()
    memory.load(REPLAY_SHA256, labelled_requests(examples))
    return memory


def runtime_scores(
    model: DifficultyModel,
    data: Labelled,
    *,
    seed: int,
    labelled: LabelledScores | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The feature stage's scores of the items, both stages' with each prompt scored alone,
    both stages' as ``hybrid serve`` decides: each feature score read beside the recent
    requests most like it (the items arriving in a seeded random order), then beside the
    ``labelled`` requests most like it when given, and the model stage's asked for every
    request (:meth:`~hybrid.routing.difficulty.probe.ProbeStage.every`, the probe's scores
    read beside recent requests too; items without a prompt vector keep the feature score;
    None without a probe)."""
    features = feature_matrix(data.items)
    feature = model.scores(features)
    units = np.array([standardised_unit(model, row) for row in features])
    recent = beside_recent(feature, units, seed=seed)
    if labelled is not None:
        recent = np.array(
            [labelled.read(model, row, score) for row, score in zip(features, recent, strict=True)]
        )
    probe = model.probe
    if probe is None:
        return feature, feature, recent, None
    has = np.isfinite(data.vectors).all(axis=1)
    own = np.array(
        [probe.score(vector) if ok else 0.0 for vector, ok in zip(data.vectors, has, strict=True)]
    )

    def both(scores: np.ndarray) -> np.ndarray:
        assert probe is not None
        settled = np.array(
            [
                probe.settle(score, p) if ok else score
                for score, p, ok in zip(scores, own, has, strict=True)
            ]
        )
        return two_stage_scores(scores, settled, probe.band)

    read = beside_recent(own, probe.units(np.nan_to_num(data.vectors)), seed=seed, reading=has)
    every = np.where(has, every_scores(recent, read), recent)
    return feature, both(feature), both(recent), every


def model_stage_scores(model: DifficultyModel, data: Labelled) -> np.ndarray | None:
    """The model stage's scores of every item, as if each were in its band (None without a
    probe, or without every item's prompt vector)."""
    probe = model.probe
    if probe is None or not np.isfinite(data.vectors).all():
        return None
    return np.array([probe.score(vector) for vector in data.vectors])


def draw(
    traffic: Labelled,
    *,
    labels: int,
    held: int,
    seed: int,
    allowed: np.ndarray | None = None,
) -> tuple[list[int], list[int]]:
    """One draw: ``labels`` labelled requests of each set, and the ``held`` scored ones.

    The held-out requests depend on the seed only, not on ``labels``, so every ``k`` of a
    draw is scored on the same requests.  With ``allowed``, only the requests it marks among
    each set's others can be labelled (fewer than ``labels`` when fewer are marked).
    """
    sets = np.array(traffic.families)
    labelled: list[int] = []
    scored: list[int] = []
    for name in dict.fromkeys(traffic.families):
        order = [int(i) for i in np.flatnonzero(sets == name)]
        Random(f"{seed}:{name}").shuffle(order)
        scored += order[len(order) - held :]
        pool = order[: len(order) - held]
        labelled += [i for i in pool if allowed is None or allowed[i]][:labels]
    return labelled, scored


def learn_from_traffic(
    generated: Labelled,
    traffic: Labelled,
    *,
    seed: int,
    repeats: int = 5,
    labels: Sequence[int] = LABELS_PER_SET,
    pools: Sequence[str] = (EVERY, KEPT_LOCAL),
    told: np.ndarray | None = None,
) -> tuple[list[Learned], float]:
    """The router's pooled AUROC on held-out traffic after refitting on ``k`` labels per set.

    Args:
        generated: The calibration items with their grades and prompt vectors.
        traffic: The traffic sets' items with theirs.
        seed: Seeds the calibration, the draws and the refits.
        repeats: Draws per ``k``.
        labels: The ``k`` values.
        pools: Which requests can be labelled (:data:`EVERY`, :data:`KEPT_LOCAL`); ``k = 0``
            is read once, with the first.
        told: What each traffic request's label says (1: bad), where it is not its grade
            (a shadow comparison's); the held-out requests are still scored by their grades.

    Returns:
        One :class:`Learned` per pool and ``k``, and the family-rate reference (each held-out
        request scored by its set's share of wrong answers) on the first draw's held-out
        requests.

    Raises:
        ValueError: A set has no more than ``max(labels)`` items.
    """
    smallest = min(list(traffic.families).count(name) for name in set(traffic.families))
    held = smallest - max(labels)
    if held < 1:
        raise ValueError(f"a traffic set has {smallest} items: too few for {max(labels)} labels")
    correct = [not wrong for wrong in generated.wrong]
    calibrated = calibrate(
        generated.items,
        correct,
        seed=seed,
        vectors=list(generated.vectors),
        meta={"model_sha256": REPLAY_SHA256},
    )
    current = calibrated.model
    base = examples_of(generated, "calibration")
    results = []
    runs = [(pool, k) for pool in pools for k in labels if k > 0 or pool == pools[0]]
    for pool, k in runs:
        features, both, adopted, weights, alone, recent = [], [], 0, [], [], []
        every: list[float] = []
        read_labelled: list[float] = []
        unrefitted: list[float] = []
        probe_refits = 0
        word_weights = []
        available = []
        for repeat in range(repeats):
            # Where the model in use sends each request: labels of escalated ones come from
            # local answers given in the background.
            _, _, decided, _ = runtime_scores(current, traffic, seed=seed + repeat)
            escalated = decided > current.threshold
            allowed = ~escalated if pool == KEPT_LOCAL else None
            labelled, scored = draw(
                traffic, labels=k, held=held, seed=seed + repeat, allowed=allowed
            )
            available.append(len(labelled))
            model = current
            chosen = np.array(labelled, dtype=np.int64)
            labels_of = traffic if told is None else dataclasses.replace(traffic, wrong=told)
            answered = examples_of(labels_of.subset(chosen), "feedback", escalated[chosen])
            if labelled:
                fitted = refit(current, base + answered, seed=seed + repeat)
                weights.append(fitted.traffic_weight)
                word_weights.append(fitted.word_weight)
                if fitted.adopted:
                    model, adopted = fitted.model, adopted + 1
                    probe_refits += fitted.probe is not None and fitted.probe.adopted
            test = traffic.subset(np.array(scored))
            feature, two_stage, served, asked = runtime_scores(model, test, seed=seed + repeat)
            features.append(auroc(feature, test.wrong))
            both.append(auroc(two_stage, test.wrong))
            recent.append(auroc(served, test.wrong))
            memory = labelled_memory(answered)
            read = runtime_scores(model, test, seed=seed + repeat, labelled=memory)[2]
            read_labelled.append(auroc(read, test.wrong))
            alone_read = runtime_scores(current, test, seed=seed + repeat, labelled=memory)[2]
            unrefitted.append(auroc(alone_read, test.wrong))
            if asked is not None:
                every.append(auroc(asked, test.wrong))
            probe_scores = model_stage_scores(model, test)
            if probe_scores is not None:
                alone.append(auroc(probe_scores, test.wrong))
        results.append(
            Learned(
                k,
                tuple(features),
                tuple(both),
                adopted,
                tuple(weights),
                tuple(alone),
                tuple(recent),
                tuple(word_weights),
                probe_refits,
                pool,
                tuple(available),
                tuple(every),
                tuple(read_labelled),
                tuple(unrefitted),
            )
        )
    _, first = draw(traffic, labels=0, held=held, seed=seed)
    reference = traffic.subset(np.array(first))
    return results, auroc(family_rate(reference), reference.wrong)


LOFO_LABELS = (10, 25)
"""Labelled items of the family left out, in :func:`lofo_labelled`."""


def lofo_labelled(
    generated: Labelled, *, seed: int, repeats: int = 5, labels: Sequence[int] = LOFO_LABELS
) -> dict[int, tuple[tuple[float, ...], tuple[float, ...]]]:
    """Leaving one family out, with ``k`` of its items labelled: both stages as ``hybrid serve``
    decides, each feature score read beside the recent requests, then also beside the
    labelled items (:class:`~hybrid.routing.difficulty.labelled.LabelledScores`), on the rest
    of each family, pooled.  This is where the rule and its constants were chosen.

    Returns:
        ``k`` to the pooled AUROC beside recent requests alone, and beside the labelled items
        too, one per draw (the labelled items and the arrival order drawn by the seed).
    """
    folds, _ = lofo_folds(generated, seed=seed)
    out: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {}
    for k in labels:
        alone, beside = [], []
        for repeat in range(repeats):
            served = folds.recent(seed + repeat)["features+recent"]
            scores: list[np.ndarray] = []
            read: list[np.ndarray] = []
            wrong: list[np.ndarray] = []
            for index, fold in folds.parts:
                order = [int(i) for i in index]
                Random(f"{seed + repeat}:{k}:{order[0]}").shuffle(order)
                known, rest = order[:k], np.array(order[k:])
                model = dataclasses.replace(
                    fold.model, meta={**fold.model.meta, "model_sha256": REPLAY_SHA256}
                )
                position = {int(item): row for row, item in enumerate(index)}
                # Labels of escalated requests come from local answers given in the background.
                decided = fold.two_stage(served[index])
                escalated = np.array([decided[position[i]] > fold.threshold for i in known])
                memory = labelled_memory(
                    examples_of(generated.subset(known), "feedback", escalated)
                )
                rows = np.array([position[int(item)] for item in rest])
                X = feature_matrix(generated.subset(rest).items)
                feature = served[rest]
                moved = np.array(
                    [memory.read(model, x, f) for x, f in zip(X, feature, strict=True)]
                )
                has = fold.has_vector[rows]
                subset = Read(
                    fold.feature[rows],
                    fold.probe_scores[rows],
                    has,
                    fold.units[rows],
                    fold.probe,
                    fold.threshold,
                    model,
                    fold.factors[rows],
                )
                scores.append(subset.two_stage(feature))
                read.append(subset.two_stage(moved))
                wrong.append(generated.wrong[rest])
            truth = np.concatenate(wrong)
            alone.append(auroc(np.concatenate(scores), truth))
            beside.append(auroc(np.concatenate(read), truth))
        out[k] = (tuple(alone), tuple(beside))
    return out


LEARNING_HEAD = (
    "| labels per set | labelled from | feature stage | both stages | both stages, beside recent "
    "| beside recent and labelled (served) | the same, no refit "
    '| model stage alone | model_stage = "every" | adopted | weights chosen (traffic / words) |\n'
    "|---:|---|---|---|---|---|---|---|---|---:|---|"
)


def _pool(row: Learned) -> str:
    """Where a row's labels came from, and how many there were when fewer than asked."""
    if row.pool != KEPT_LOCAL or not row.available:
        return row.pool
    low, high = min(row.available), max(row.available)
    return f"{row.pool} ({low}-{high} labelled in all)" if low != high else f"{row.pool} ({low})"


def _weights(row: Learned) -> str:
    """Each draw's traffic weight and word weight, ``-`` with no refit."""
    pairs = zip(row.weights, row.word_weights, strict=True)
    return ", ".join(f"{weight:g} / {words:g}" for weight, words in pairs) or "-"


def learning_section(
    learned: list[Learned],
    reference: float,
    traffic: Labelled,
    chosen: dict[int, tuple[tuple[float, ...], tuple[float, ...]]],
) -> str:
    """The learning-from-traffic section: AUROC on held-out traffic against labels per set,
    and where reading beside the labelled requests was chosen (:func:`lofo_labelled`)."""
    sets = np.array(traffic.families)
    draws = len(learned[0].features)
    rows = "\n".join(
        f"| {row.labels} | {_pool(row)} | {mean_range(row.features)} | "
        f"{mean_range(row.two_stage)} | "
        f"{mean_range(row.recent)} | {mean_range(row.labelled)} | {mean_range(row.unrefitted)} | "
        f"{mean_range(row.model_stage)} | {mean_range(row.every)} | "
        f"{row.adopted} of {draws} "
        f"({row.probe_refits} with its model stage refitted) | "
        f"{_weights(row)} |"
        for row in learned
    )
    lofo_rows = "\n".join(
        f"| {k} | {mean_range(alone)} | {mean_range(beside)} |"
        for k, (alone, beside) in chosen.items()
    )
    choices = ", ".join(f"{w:g}" for w in TRAFFIC_WEIGHTS)
    word_choices = ", ".join(f"{w:g}" for w in WORD_WEIGHTS)
    licences = "\n".join(
        f"| {s.name} | {int((sets == s.name).sum())} | {traffic.wrong[sets == s.name].mean():.0%} "
        f"| {s.title} | {s.kind} | {s.licence} | {s.source} |"
        for s in TRAFFIC_SETS.values()
    )
    return f"""
## Learning from traffic: refitted on labelled requests of real prompts

Four more public sets stand in for a user's own traffic (table below); none is one of the
external check's sets. The model in use is `hybrid calibrate`'s fit on every generated item.
Of each set, *k* requests are labelled with their grade, drawn at random from one of two
pools: *{EVERY}*, as shadow comparisons label them when they sample the requests the router
escalates (`routing.learn.local_shadow_rate`) as well as those it keeps local; *{KEPT_LOCAL}*,
the requests the model in use keeps local at its threshold with a cloud configured (each read
beside the recent requests, as `hybrid serve` reads it), all that people's feedback on local
answers or shadow sampling of local answers can label (fewer than *k* when fewer are kept
local: the column gives how many were labelled over the four sets, lowest-highest over the
draws). They are refitted on through `hybrid calibrate --from-ledger`'s own path, with the
generated answers; the server adopts a refit only when it improves on the model in use (on
the labelled requests once they hold 10 right and 10 wrong, each scored by a fit that did not
see it, both stages together). Each refit chooses
how many calibration answers one labelled request counts for ({choices}) and the hashed
words' weight ({word_choices}; see [Word weight](#word-weight-chosen-on-the-traffic-sets)), by
cross-validation inside its own training split (the pair whose out-of-fold scores rank the
labelled requests there best); once judged, it is fitted again on all its examples. The model
then in use scores the same held-out requests of every set for every *k*. {draws}
draws per *k*: the mean and, in brackets, the range over the draws (pooled AUROC); the last
column lists each draw's weights. With their prompt vectors (`routing.learn.prompt_vectors`),
a refit fits the model stage again too, and keeps it when it ranks the labelled requests
better, out-of-fold, than the one in use. *Model stage alone* scores every held-out request
with the model stage of the model in use, as if each were in its band. *Both stages, beside
recent* is what `hybrid serve` decides: each feature score read beside the recent requests
most like it (the held-out requests of every set arriving in a seeded random order).
*Beside recent and labelled* is what it decides by default
(`routing.difficulty.labelled_neighbours`): each feature score read beside the recent requests,
then moved by how far the model in use was off on the labelled requests most like it: all *k*
per set, scored by the model in use, or, those an adopted refit learned from, by the
out-of-fold scores it recorded of them (see [Reading beside labelled
requests](#reading-beside-labelled-requests)). *The same, no
refit* is the model as calibrated read beside every labelled request, as with
`routing.learn.refit_after = 0`.
*`model_stage = "every"`* is what it decides with the model stage asked for every request:
the probe's score read beside the recent requests in its own vector space, averaged with the
feature score read beside them (see [The model stage asked for every
request](#the-model-stage-asked-for-every-request-opt-in)).

{LEARNING_HEAD}
{rows}

The *set rate* reference (each held-out request scored by its set's share of wrong answers) is
{reference:.3f}.

| set | n | local wrong | dataset | kind | licence | source |
|---|---:|---:|---|---|---|---|
{licences}

### Reading beside labelled requests

The router reads each feature score beside the labelled requests most like it
(`hybrid/routing/difficulty/labelled.py`): the score moves by *n* / (*n* + {PRIOR:g}) x (their
share of wrong answers - the model's mean score of them), over
the *n* nearest (at most {NEIGHBOURS}, cosine of the standardised text features at least
{MIN_SIMILARITY:g}). The rule was chosen leaving one generated family out, with *k* of the
left-out family's items labelled, against a mix of the neighbours' share of wrong answers at
0.5, the step without shrinking, and the same rules in the probe's vector space (the shrunk
step in the text features' space was as good as any and needs no prompt vector); the traffic
sets above were the check. A fit's scores of its own training requests are too close to their
labels to say how far off it is elsewhere (read with the refit's own scores, the step lowered
the figures in an earlier run of this report), so a refit records the out-of-fold score of
each labelled request it learned from (`meta.refit.out_of_fold`: the score a fit made without
it gave it), and the router reads those requests with it; requests labelled after the refit
(`meta.refit.labels_until`) are read with the refit's own scores. Before, the labels a refit
learned from were left out: *both stages, beside recent* above is that reading whenever the
refit was adopted.
Labels of both sides of the decision are needed: scores are read beside the labels only once
{MIN_ESCALATED} of them are of requests the router escalated (labelled by comparing a local
answer given in the background with the cloud's, `routing.learn.local_shadow_rate`). Read
beside labels of local answers alone (the *{KEPT_LOCAL}* rows, where the requests labelled are
the ones the model found easiest), the step carried that tail's errors to every request like
them and lowered the figures, from 0.669 to 0.591 at every *k* in an earlier run of this
report; those rows now read beside none.
Leaving one family out, pooled AUROC of both stages on the rest of each family, {draws} draws
(labelled items and arrival order):

| labelled per family | beside recent | beside recent and labelled |
|---:|---|---|
{lofo_rows}
"""
