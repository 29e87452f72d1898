"""The pure part of ``scripts/eval_router.py``: routers fitted per fold, and their figures.

A *router* here is a way to score requests, higher escalating first.  Five are fitted on
training items and scored on others:

- ``features``: the shipped difficulty model on cheap text features (the feature stage);
- ``probe``: the logistic probe on the local model's prompt vector alone;
- ``two-stage``: the feature stage, whose scores inside the probe's band the two stages
  blended settle (the blend and band are chosen by cross-validation inside the training items
  that leaves whole families out);
- ``features+recent`` and ``two-stage+recent``: the same, with each feature score read beside
  the recent requests most like it (:mod:`hybrid.routing.difficulty.recent`; the items
  arrive in a seeded random order): the runtime decision, ``routing.difficulty.neighbours``
  at its default;

and five need no fitting: ``length`` (characters), ``digits`` (digit characters), ``random``
(every score equal: the diagonal), ``oracle`` (exactly the wrong answers) and ``family rate``
(each item scored by the share of wrong answers in its own family: an oracle that knows how hard
each kind of prompt is for the model, and nothing about the prompts within a kind; the ceiling
of a router that only recognises the kind of prompt).

The evaluation that matters is *leave one family out* (:func:`lofo_splits`): fit on every
generated family but one, score the one left out, for each family, and pool the out-of-family
scores.  A random split scores new draws of generators the router has already seen, which
says little about a kind of prompt it has not.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hybrid.routing.calibration.fitting import (
    WORD_WEIGHT,
    feature_matrix,
    out_of_family_scores,
    prompt_length,
    train_feature_model,
)
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.metrics import auroc, bootstrap_ci, routing_curve
from hybrid.routing.calibration.probe_fitting import train_probe, two_stage_scores
from hybrid.routing.cascade import declined
from hybrid.routing.choices import TWO_WAY, guessed, offered, outside
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import ProbeStage
from hybrid.routing.difficulty.recent import RecentScores, standardised_unit
from hybrid.settings.routing import DifficultySettings

ORDERS = 10
"""Arrival orders (seeds 0 to 9) the report also reads the ``+recent`` routers in; its other
figures read them in the order of the run's own seed."""

NEIGHBOURS = DifficultySettings().neighbours
"""``routing.difficulty.neighbours`` at its default: what ``hybrid serve`` reads scores with."""

QUALITY_TARGET = 0.95
FITTED = ("features", "probe", "two-stage", "features+recent", "two-stage+recent")
BASELINES = ("length", "digits", "random", "oracle", "family rate")
PER_GROUP = (*FITTED, "length", "digits")
"""The routers whose AUROC inside one family or set means something (the rest are constant
there, or exact by construction)."""


@dataclass(frozen=True, eq=False)
class Labelled:
    """Items with what the local model did on them.

    Attributes:
        items: The items.
        wrong: 1 where the local answer was wrong.
        vectors: ``(n, dim)`` prompt vectors; a row of NaN where the model could not take the
            prompt.
        answers: Each local answer (its first presentation's text; empty: not known).
        confidence: How sure the model was of each answer
            (:func:`hybrid.routing.cascade.confidence`; NaN where not known; empty: none known).
    """

    items: list[CalibrationItem]
    wrong: np.ndarray
    vectors: np.ndarray
    answers: tuple[str, ...] = ()
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def subset(self, indices: Sequence[int] | np.ndarray) -> Labelled:
        """The items at ``indices``, in that order."""
        index = np.asarray(indices, dtype=np.int64)
        answers = tuple(self.answers[i] for i in index) if self.answers else ()
        sure = self.confidence[index] if self.confidence.size else self.confidence
        return Labelled(
            [self.items[i] for i in index], self.wrong[index], self.vectors[index], answers, sure
        )

    def discarded(self, min_confidence: float, *, keep_yes_no: bool = True) -> np.ndarray:
        """1 where the cascade discards the local answer (``routing.cascade`` with this
        ``min_confidence``): it is no answer (:attr:`no_answer`), or the model was less sure
        of it than that (an answer whose confidence is not known is discarded only when it is
        no answer; nor is an answer to a question asking for yes or no, or true or false,
        whatever its confidence, as :meth:`hybrid.routing.cascade.Cascade.verdict` reads it;
        ``keep_yes_no=False``: such answers too, as the cascade did before it kept them)."""
        if not self.confidence.size:
            return self.no_answer
        unsure = np.nan_to_num(self.confidence, nan=1.0) < min_confidence
        if keep_yes_no:
            unsure &= np.array(
                [offered(item.messages) not in TWO_WAY for item in self.items], dtype=bool
            )
        return np.maximum(self.no_answer, unsure.astype(np.float64))

    @property
    def openings(self) -> tuple[str, ...]:
        """The first word of each local answer, lower-cased, without the punctuation around
        it (empty where there is no answer; no openings when the answers are not known)."""
        return tuple(opening(answer) for answer in self.answers)

    @property
    def declined(self) -> np.ndarray:
        """1 where the local answer opens by declining (:func:`hybrid.routing.cascade.declined`;
        all 0 when the answers are not known)."""
        if not self.answers:
            return np.zeros(len(self.items))
        return np.array([declined(answer) for answer in self.answers], dtype=np.float64)

    @property
    def outside(self) -> np.ndarray:
        """1 where the local answer is none of the answers its prompt offered (the last user
        turn of the item's first presentation, the one answered:
        :func:`hybrid.routing.choices.offered` and :func:`~hybrid.routing.choices.outside`);
        all 0 when the answers are not known."""
        if not self.answers:
            return np.zeros(len(self.items))
        return np.array(
            [
                outside(answer, offered(item.messages))
                for item, answer in zip(self.items, self.answers, strict=True)
            ],
            dtype=np.float64,
        )

    @property
    def no_answer(self) -> np.ndarray:
        """1 where the local answer is no answer, as the cascade reads it whatever its
        confidence: it declines (:attr:`declined`) or is none of the answers its prompt
        offered (:attr:`outside`)."""
        return np.maximum(self.declined, self.outside)

    @property
    def families(self) -> list[str]:
        """Each item's family (category)."""
        return [item.category for item in self.items]


def opening(text: str) -> str:
    """The first word of an answer, lower-cased, without the punctuation around it."""
    words = text.split()
    return words[0].strip(".,:;!?\"'()*").lower() if words else ""


@dataclass(frozen=True)
class FitOptions:
    """How the routers are fitted, beyond the data.

    Attributes:
        components: Whitened principal components the probe keeps (None: all dimensions).
        group_folds: Cross-validate the probe by leaving whole families out (else stratified
            folds).
        word_weight: The feature stage's weight on the hashed word n-grams (default: as
            ``hybrid calibrate`` fits it; 0 leaves them out).
    """

    components: int | None = None
    group_folds: bool = True
    word_weight: float = WORD_WEIGHT


def lofo_splits(families: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Leave-one-family-out splits, one per family, in order of first appearance.

    Args:
        families: Each item's family.

    Returns:
        ``(family, train indices, test indices)``: the test part is exactly that family's
        items, the training part every other item.

    Raises:
        ValueError: Fewer than two families.
    """
    names = list(dict.fromkeys(families))
    if len(names) < 2:
        raise ValueError(f"leave-one-family-out needs two families or more (got {names})")
    labels = np.array(families)
    return [
        (name, np.flatnonzero(labels != name), np.flatnonzero(labels == name)) for name in names
    ]


def digit_count(item: CalibrationItem) -> float:
    """The digit-count rule's score: digit characters in the conversation."""
    return float(sum(ch.isdigit() for message in item.messages for ch in message.content))


def baseline_scores(data: Labelled) -> dict[str, np.ndarray]:
    """The five rules that need no fitting, on ``data``."""
    return {
        "length": np.array([prompt_length(item) for item in data.items]),
        "digits": np.array([digit_count(item) for item in data.items]),
        "random": np.zeros(len(data.items)),
        "oracle": data.wrong.astype(np.float64),
        "family rate": family_rate(data),
    }


FAMILY_MEAN = "feature family mean"
"""A reference beside the baselines: :func:`family_means` of the feature stage's scores."""


def family_means(scores: np.ndarray, families: Sequence[str]) -> np.ndarray:
    """Each item's score: the mean score of the items of its family (its set, for the external
    items).  Of the feature stage's scores: what it says of each kind on average."""
    names = np.array(families)
    means = {name: float(scores[names == name].mean()) for name in set(families)}
    return np.array([means[name] for name in families], dtype=np.float64)


def family_rate(data: Labelled) -> np.ndarray:
    """Each item's score: the share of wrong answers among the items of its family (its set,
    for the external items), taken from the labels themselves (an oracle)."""
    families = np.array(data.families)
    rates = {name: float(data.wrong[families == name].mean()) for name in set(data.families)}
    return np.array([rates[name] for name in data.families], dtype=np.float64)


def guess_factors(items: Sequence[CalibrationItem]) -> np.ndarray:
    """What each item's score is multiplied by for the answers its prompt asks for
    (``routing.difficulty.yes_no``, on by default: :func:`~hybrid.routing.choices.guessed`):
    1/2 for yes or no, or true or false; 1 for any other prompt."""
    return np.array([guessed(1.0, offered(item.messages)) for item in items], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Read:
    """What the routers fitted on training items make of test items, before the model stage.

    Attributes:
        feature: The feature stage's own scores.
        probe_scores: The probe's scores (the feature score where there is no vector).
        has_vector: Whether each item has a prompt vector.
        units: The standardised feature vectors, of norm 1, that recent requests are
            compared by (:mod:`hybrid.routing.difficulty.recent`).
        probe: The fitted model stage.
        threshold: The fitted feature stage's threshold.
        model: The fitted feature stage.
        guess: What each item's scores are multiplied by for the answers its prompt asks for
            (:func:`guess_factors`; None: 1 for every item). ``feature`` and
            ``probe_scores`` are the stages' own scores, before it.
    """

    feature: np.ndarray
    probe_scores: np.ndarray
    has_vector: np.ndarray
    units: np.ndarray
    probe: ProbeStage
    threshold: float
    model: DifficultyModel
    guess: np.ndarray | None = None

    @property
    def factors(self) -> np.ndarray:
        """:attr:`guess`, 1 for every item when there is none."""
        return np.ones(len(self.feature)) if self.guess is None else self.guess

    def two_stage(self, feature: np.ndarray) -> np.ndarray:
        """The runtime's decision scores from these feature scores (the feature score
        outside the probe's band, and where there is no vector), each stage's score moved by
        :attr:`guess` first, as the runtime moves them."""
        feature = feature * self.factors
        probe_scores = self.probe_scores * self.factors
        settled = np.array(
            [self.probe.settle(f, p) for f, p in zip(feature, probe_scores, strict=True)]
        )
        return np.where(
            self.has_vector, two_stage_scores(feature, settled, self.probe.band), feature
        )

    def scores(self, seed: int) -> dict[str, np.ndarray]:
        """Every fitted router's scores of the items, the ``+recent`` ones with the items
        arriving in the order ``seed`` draws."""
        return {
            "features": self.feature * self.factors,
            "probe": self.probe_scores * self.factors,
            "two-stage": self.two_stage(self.feature),
        } | self.recent(seed)

    def recent(self, seed: int) -> dict[str, np.ndarray]:
        """The ``+recent`` routers' scores, the items arriving in the order ``seed`` draws
        (each own score read beside the recent ones, then moved by :attr:`guess`)."""
        recent = beside_recent(self.feature, self.units, seed=seed)
        return {
            "features+recent": recent * self.factors,
            "two-stage+recent": self.two_stage(recent),
        }


@dataclass(frozen=True, eq=False)
class Folds:
    """Every item read by the routers fitted without its family (leave one family out).

    Attributes:
        parts: Each fold's test items (indices into the data) and what its routers read.
        n: How many items in all.
    """

    parts: tuple[tuple[np.ndarray, Read], ...]
    n: int

    def scores(self, seed: int) -> dict[str, np.ndarray]:
        """:meth:`Read.scores`, pooled over the folds.

        The ``+recent`` routers read each item beside the items of *every* family before it
        in one order, each scored by the routers fitted without its own family: as a
        server's recent requests mix kinds of prompt.
        """
        return {
            "features": self._pooled(lambda read: read.feature * read.factors),
            "probe": self._pooled(lambda read: read.probe_scores * read.factors),
            "two-stage": self._pooled(lambda read: read.two_stage(read.feature)),
        } | self.recent(seed)

    def recent(self, seed: int) -> dict[str, np.ndarray]:
        """:meth:`Read.recent`, pooled: one order of the items of every family."""
        feature = self._pooled(lambda read: read.feature)
        recent = beside_recent(feature, self._pooled(lambda read: read.units), seed=seed)
        both = np.full(self.n, np.nan)
        for index, read in self.parts:
            both[index] = read.two_stage(recent[index])
        moved = recent * self._pooled(lambda read: read.factors)
        return {"features+recent": moved, "two-stage+recent": both}

    def _pooled(self, part: Callable[[Read], np.ndarray]) -> np.ndarray:
        first = part(self.parts[0][1])
        out = np.full((self.n, *first.shape[1:]), np.nan)
        for index, read in self.parts:
            out[index] = part(read)
        return out


def fit_and_read(
    train: Labelled, test: Labelled, *, seed: int, options: FitOptions = FitOptions()
) -> Read:
    """Fit the feature stage and the probe on ``train``, as ``hybrid calibrate`` fits them,
    and read ``test`` with them.

    Items without a prompt vector are left out of the probe's training; on the test side they
    keep the feature score (the runtime falls back to it when the model cannot take a prompt).
    """
    model, _, _ = train_feature_model(
        feature_matrix(train.items), train.wrong, seed=seed, word_weight=options.word_weight
    )
    features = feature_matrix(test.items)
    feature = model.scores(features)
    has_train = ~np.isnan(train.vectors).any(axis=1)
    has_test = ~np.isnan(test.vectors).any(axis=1)
    kept = train.subset(np.flatnonzero(has_train))
    fitted = train_probe(
        kept.vectors,
        kept.wrong,
        feature_scores=out_of_family_scores(
            kept.items, kept.wrong, seed=seed, word_weight=options.word_weight
        ),
        feature_threshold=model.threshold,
        groups=kept.families if options.group_folds else None,
        seed=seed,
        components=options.components,
    )
    probe = fitted.probe
    probe_scores = np.array(
        [
            probe.score(vector) if ok else score
            for vector, ok, score in zip(test.vectors, has_test, feature, strict=True)
        ]
    )
    units = np.array([standardised_unit(model, row) for row in features])
    return Read(
        feature,
        probe_scores,
        has_test,
        units,
        probe,
        model.threshold,
        model,
        guess_factors(test.items),
    )


def beside_recent(
    own: np.ndarray, units: np.ndarray, *, seed: int, reading: np.ndarray | None = None
) -> np.ndarray:
    """Each score read beside the recent requests most like it, as ``hybrid serve`` reads it
    (:class:`~hybrid.routing.difficulty.recent.RecentScores`, ``routing.difficulty.neighbours``
    at its default), the items arriving in a seeded random order, each beside those before it.

    Args:
        own: Each item's own score.
        units: The vectors of norm 1 the items are compared by.
        seed: Draws the arrival order.
        reading: Which items are read and remembered (all when None); the others keep their
            own score and are not remembered.
    """
    recent = RecentScores(NEIGHBOURS)
    out = np.array(own, dtype=np.float64)
    for i in np.random.default_rng(seed).permutation(len(own)):
        if reading is None or reading[i]:
            out[i] = recent.read(units[i], float(own[i]))
    return out


def over_orders(
    reader: Read | Folds, wrong: np.ndarray, *, seeds: Sequence[int]
) -> dict[str, dict[str, list[float]]]:
    """The ``+recent`` routers' AUROC and share kept local in each of several arrival orders:
    their scores depend on the order the requests come in, which one order's figures hide.

    Returns:
        Router name to statistic name to one value per seed.
    """
    out: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        for name, scores in reader.recent(seed).items():
            for statistic in ("AUROC", "kept local @95%"):
                value = STATISTICS[statistic](scores, wrong)
                out.setdefault(name, {}).setdefault(statistic, []).append(value)
    return out


def fit_and_score(
    train: Labelled, test: Labelled, *, seed: int, options: FitOptions = FitOptions()
) -> dict[str, np.ndarray]:
    """Fit the routers on ``train`` and score ``test`` (its items arriving in a seeded random
    order for the ``+recent`` ones).

    Returns:
        Router name to the scores of ``test``'s items.
    """
    return fit_and_read(train, test, seed=seed, options=options).scores(seed)


def lofo_folds(
    data: Labelled, *, seed: int, options: FitOptions = FitOptions()
) -> tuple[Folds, list[str]]:
    """Fit the routers without each family in turn and read that family with them.

    Returns:
        The folds, and the families in split order.
    """
    parts = []
    order = []
    for family, train_idx, test_idx in lofo_splits(data.families):
        read = fit_and_read(
            data.subset(train_idx), data.subset(test_idx), seed=seed, options=options
        )
        parts.append((test_idx, read))
        order.append(family)
    return Folds(tuple(parts), len(data.items)), order


def lofo_scores(
    data: Labelled, *, seed: int, options: FitOptions = FitOptions()
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every fitted router's out-of-family scores of every item (:meth:`Folds.scores`).

    Returns:
        Router name to one score per item of ``data`` (each from the routers fitted without
        its family), and the families in split order.
    """
    folds, order = lofo_folds(data, seed=seed, options=options)
    return folds.scores(seed), order


@dataclass(frozen=True)
class Figure:
    """A figure with its 95 % bootstrap interval."""

    value: float
    low: float
    high: float

    def text(self, fmt: str = "{:.3f}") -> str:
        """``0.712 (0.650-0.770)``, or ``n/a``."""
        if math.isnan(self.value):
            return "n/a"
        if math.isnan(self.low):
            return fmt.format(self.value)
        return f"{fmt.format(self.value)} ({fmt.format(self.low)}-{fmt.format(self.high)})"


def mean_range(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """The mean and, in brackets, the lowest and the highest; ``-`` when there is none."""
    if not values:
        return "-"
    return (
        f"{fmt.format(statistics.mean(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )


def bullet(text: str) -> str:
    """A bullet of the report's summary: ``- text``, wrapped at 95 characters, its later lines
    indented under the first's text, with no word or link broken at a hyphen."""
    return textwrap.fill(
        f"- {text}",
        width=95,
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def grid_head(
    first: str, collections: Sequence[str], statistics: Sequence[str], align: str = "---"
) -> str:
    """The head of a table with one row per setting: ``first``, then each statistic of each
    collection (``LOFO AUROC | LOFO kept local | ...``), and its alignment line."""
    names = " | ".join(f"{where} {stat}" for where in collections for stat in statistics)
    return f"| {first} | {names} |\n|---|" + f"{align}|" * (len(collections) * len(statistics))


def kept_local(scores: np.ndarray, wrong: np.ndarray) -> float:
    """Share of requests kept local at 95 % of all-cloud quality (1 - the cloud share)."""
    return 1.0 - routing_curve(scores, wrong).share_for_quality(QUALITY_TARGET)


STATISTICS: Mapping[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "AUROC": auroc,
    "APGR": lambda s, w: routing_curve(s, w).apgr(),
    "kept local @95%": kept_local,
}


def figures(
    scores: np.ndarray, wrong: np.ndarray, *, seed: int, resamples: int
) -> dict[str, Figure]:
    """AUROC, APGR and the share kept local at 95 % quality, each with its bootstrap CI.

    Resampling draws items with replacement (seeded); a resample of one class has no AUROC and
    is skipped.
    """
    result = {}
    for name, statistic in STATISTICS.items():
        value = statistic(scores, wrong) if len(wrong) else math.nan
        if len(wrong) == 0:
            result[name] = Figure(math.nan, math.nan, math.nan)
            continue
        low, high = bootstrap_ci(
            lambda idx, f=statistic: _defined(f, scores[idx], wrong[idx]),
            len(wrong),
            resamples=resamples,
            seed=seed,
        )
        result[name] = Figure(value, low, high)
    return result


def _defined(
    statistic: Callable[[np.ndarray, np.ndarray], float], scores: np.ndarray, wrong: np.ndarray
) -> float:
    if wrong.min() == wrong.max() and statistic is auroc:
        return math.nan
    return float(statistic(scores, wrong))


def random_split_aurocs(
    data: Labelled, *, seeds: Sequence[int], held_out: float = 0.3
) -> dict[str, list[float]]:
    """AUROC of the fitted routers on re-drawn random splits stratified by family."""
    from hybrid.routing.calibration.items import split

    result: dict[str, list[float]] = {name: [] for name in FITTED}
    index = {item.id: i for i, item in enumerate(data.items)}
    for seed in seeds:
        train_items, test_items = split(data.items, seed=seed, held_out=held_out)
        train = data.subset([index[item.id] for item in train_items])
        test = data.subset([index[item.id] for item in test_items])
        scored = fit_and_score(train, test, seed=seed)
        for name in FITTED:
            result[name].append(auroc(scored[name], test.wrong))
    return result
