"""Refitting the difficulty model from what traffic taught: ``hybrid calibrate --from-ledger``.

The examples are the calibration answers ``hybrid calibrate`` recorded for the model (when
they were recorded and still match the item generators), plus the labelled requests the
ledger kept signals for (:mod:`hybrid.ledger.learning`).  A labelled request is an example
when its label says something about the local model (:func:`wrong_from_labels`):

- a person's feedback on a **local** answer: ``good`` means right, ``bad`` wrong;
- a shadow comparison (the local answer against the cloud's): agreement means right;
- the cascade's: a local answer that declined the request (and was replaced by the cloud's)
  was wrong;
- several: the person wins, then the shadow comparison.  Feedback on a cloud answer says
  nothing about the local model and is not used.

The recipe is calibration's own (:func:`hybrid.routing.calibration.fitting.train_feature_model`:
standardise, penalty and threshold by cross-validation), on a seeded split stratified by
where each example came from and by its label.  A labelled request may count for several
calibration answers: it is the user's traffic, where the calibration answers only stand in
for it.  How many is chosen per refit, by cross-validation inside the training split, and so
is the weight of the hashed word n-grams (:func:`_fit_weighted`): a user's requests share
their app's phrasing, which the words can learn where the generated families could not teach
them.  The fit replaces the one in use only when
(:func:`review`):

1. enough is held out to measure it: at least :data:`~.acceptance.MIN_HELD_OUT_ITEMS`
   examples, at least :data:`~.acceptance.MIN_HELD_OUT_PER_CLASS` right and as many wrong;
2. its held-out AUROC is at least prompt length's, as for any calibration;
3. it ranks better than the current model: a refit that does not improve on the model in use
   is not adopted.  When the labelled requests hold at least
   :data:`~.acceptance.MIN_HELD_OUT_PER_CLASS` right and as many wrong, the comparison is made
   on them alone, each scored by a fit that did not see it (the training split's by their
   out-of-fold scores, the held-out ones by the refit): they are what the user's traffic looks
   like, and the model in use has never been fitted on them, whereas it was fitted on the
   calibration answers held out here, which flatters it.  When the model has a model stage and
   as many of the labelled requests carry a prompt vector, the comparison is made on those,
   both stages together (what the router decides; :meth:`ProbeRefit.judged`).  Otherwise the
   comparison is on the held-out examples.

Once judged, the refit is fitted again on every example with the weights it chose, as
``hybrid calibrate`` saves a fit on every item: the model adopted learns from the held-out
labelled requests too (fitted on a part, it ranked new requests worse on the public sets
standing in for traffic, ``docs/router-eval.md``).

The current model's prompt-vector stage (``probe``), when it has one, is carried over with its
feature-side choices taken again on the refitted feature stage (its band, the same share of
the examples around the new threshold, its blend's feature side, and ``every_threshold`` by
the feature part of the score it is compared with:
:func:`~hybrid.routing.calibration.probe_fitting.follow_feature_stage`), unless the labelled
requests teach a better one (:func:`refit_probe`).  The server keeps the local model's vector
of each prompt it answers (``routing.learn.prompt_vectors``); when at least
:data:`MIN_TRAFFIC_PER_CLASS` labelled requests of each class carry one, the probe is fitted
again on the calibration answers' vectors and theirs (one labelled request counting for the
feature stage's traffic weight), its band and threshold chosen on the labelled requests' own
out-of-fold ranking.  It replaces the carried-over probe only when that ranking, both stages
together, beats the carried-over probe's on the same requests, which it never saw; the band is
chosen on those requests too, so each half of them is ranked with the band the other half chose
(:func:`~hybrid.routing.calibration.probe_fitting.cross_fitted_two_stage`), lest the choice
flatter the refit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hybrid.errors import ConfigError
from hybrid.routing.calibration.acceptance import MIN_HELD_OUT_ITEMS, MIN_HELD_OUT_PER_CLASS
from hybrid.routing.calibration.fitting import (
    WORD_WEIGHT,
    WORD_WEIGHTS,
    prompt_length,
    rounded,
    train_feature_model,
)
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.calibration.probe_fitting import (
    follow_feature_stage,
    train_probe,
    two_stage_scores,
)
from hybrid.routing.calibration.record import AnswerRecord
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES, extract
from hybrid.routing.difficulty.labelled import SIZE as LABELLED_SIZE
from hybrid.routing.difficulty.labelled import LabelledRequest
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import ProbeStage

if TYPE_CHECKING:
    from hybrid.ledger.learning import LabelledSignal

Source = Literal["calibration", "feedback", "shadow", "cascade"]


@dataclass(frozen=True, eq=False)
class Example:
    """One thing the local model answered, and whether that was wrong.

    Attributes:
        features: The prompt's feature vector (:func:`~hybrid.routing.difficulty.features.extract`).
        wrong: The local answer was wrong (or not good enough).
        length: The prompt's length in characters (the length rule's score).
        source: ``calibration`` (a graded calibration item), ``feedback``, ``shadow`` or
            ``cascade``.
        vector: The local model's vector of the prompt, when one was read.
        time: When a labelled request's newest label was written (else when the request
            arrived), Unix seconds; None for a calibration answer.
        route: Where a labelled request was answered: ``local``, ``lan`` or ``cloud`` (None
            for a calibration answer).
    """

    features: np.ndarray
    wrong: bool
    length: float
    source: Source
    vector: np.ndarray | None = None
    time: float | None = None
    route: str | None = None


def wrong_from_labels(
    route: str, feedback: bool | None, shadow: bool | None, cascade: bool | None = None
) -> bool | None:
    """Whether a labelled request's local answer was wrong, or None when the labels cannot say.

    Args:
        route: Where the request was answered (``local`` or ``cloud``).
        feedback: A person's label (``good``), None when there is none.
        shadow: The shadow comparison's label, None when there is none.
        cascade: The cascade's label (False: the local answer declined), None when none.
    """
    if feedback is not None and route == "local":
        return not feedback
    if shadow is not None:
        return not shadow
    if cascade is not None:
        return not cascade
    return None


@dataclass(frozen=True)
class LedgerExamples:
    """What a refit learns from: a model's calibration answers and its labelled requests.

    Attributes:
        calibration: The recorded calibration answers; None when none are recorded or they no
            longer match the item generators.
        traffic: The labelled requests a refit can use.
        unused: Labelled requests it cannot use: a person's label on a cloud answer only.
        stale: Labelled requests whose features another hybrid version computed.
    """

    calibration: list[Example] | None
    traffic: list[Example]
    unused: int
    stale: int

    @property
    def examples(self) -> list[Example]:
        """Everything a refit learns from."""
        return [*(self.calibration or []), *self.traffic]


def ledger_examples(
    record: AnswerRecord | None, labelled: Sequence[LabelledSignal]
) -> LedgerExamples:
    """A refit's examples: the recorded calibration answers and the ledger's labelled requests.

    Args:
        record: The model's answer record (``hybrid calibrate``'s), None when there is none.
        labelled: The model's kept signals that carry a label
            (:meth:`~hybrid.ledger.store.LedgerStore.labelled`).
    """
    calibration = calibration_examples(record) if record is not None else None
    traffic: list[Example] = []
    unused = stale = 0
    for row in labelled:
        signal = row.signal
        features = signal.feature_array()
        if signal.feature_version != FEATURE_VERSION or features.shape != (N_FEATURES,):
            stale += 1
            continue
        wrong = wrong_from_labels(signal.route, row.feedback, row.shadow, row.cascade)
        if wrong is None:
            unused += 1
            continue
        source: Source = (
            "feedback"
            if row.feedback is not None and signal.route == "local"
            else ("shadow" if row.shadow is not None else "cascade")
        )
        length = float(signal.prompt_chars)
        traffic.append(
            Example(
                features,
                wrong,
                length,
                source,
                signal.vector_array(),
                signal.time if row.labelled_at is None else row.labelled_at,
                signal.route,
            )
        )
    return LedgerExamples(calibration, traffic, unused, stale)


def ledger_requests(rows: Sequence[LabelledSignal]) -> list[LabelledRequest]:
    """The labelled requests of the ledger's ``rows`` that a refit could use, as the router's
    memory of them keeps them."""
    return labelled_requests(ledger_examples(None, rows).traffic)


def labelled_requests(examples: Sequence[Example]) -> list[LabelledRequest]:
    """The labelled requests among ``examples`` (those with an arrival time), as the router's
    memory of them keeps them (:mod:`hybrid.routing.difficulty.labelled`)."""
    return [
        LabelledRequest(
            example.features,
            example.wrong,
            example.time,
            # A cascade's label is of a local answer that declined: the router had kept it.
            escalated=example.route not in (None, "local") and example.source != "cascade",
        )
        for example in examples
        if example.time is not None
    ]


def learned_scores(examples: Sequence[Example], out_of_fold: np.ndarray) -> list[list[float]]:
    """``[time, score]`` of each of the most recent labelled requests among ``examples``: the
    time of its label and its out-of-fold score, from a fit that did not see it (what the
    router's memory of labelled requests reads it with once a refit has learned from it; as
    many as the memory holds)."""
    learned = sorted(
        (example.time, round(float(score), 6))
        for example, score in zip(examples, out_of_fold, strict=True)
        if example.time is not None
    )
    return [[time, score] for time, score in learned[-LABELLED_SIZE:]]


def calibration_examples(record: AnswerRecord) -> list[Example] | None:
    """The graded calibration answers of a record as examples.

    Returns:
        The examples; None when the record's items cannot be generated again as they were
        (the generators changed since), so its answers would be mislabelled.
    """
    try:
        items = calibration_set(record.seed, per_category=record.per_category)
    except ConfigError:
        return None
    answers = record.answers_for(items)
    if answers is None:
        return None
    return [
        Example(
            extract(item.messages),
            not answer.correct,
            prompt_length(item),
            "calibration",
            None if answer.embedding is None else np.asarray(answer.embedding, dtype=np.float32),
        )
        for item, answer in zip(items, answers, strict=True)
    ]


@dataclass(frozen=True, eq=False)
class Refit:
    """A refit and how it compares with the model in use.

    Attributes:
        model: The refit, fitted again on every example once judged (its ``meta`` holds the
            figures below under ``refit``).
        counts: Examples by source.
        held_out: How many examples were held out to measure the fits.
        held_out_wrong: Of those, how many local answers were wrong.
        held_out_traffic: Of those, how many were labelled requests.
        before_auroc: The current model's held-out AUROC (NaN without one, or one class).
        after_auroc: The refit's held-out AUROC.
        length_auroc: Prompt length's held-out AUROC.
        before_traffic_auroc: The current model's AUROC on every labelled request.
        after_traffic_auroc: The refit's AUROC on them, each scored by a fit that did not see
            it (out-of-fold for the training split's, the refit for the held-out ones).
        traffic_weight: How many calibration answers one labelled request counted for in the
            fit (chosen per refit; 1 with too few labelled requests to choose).
        word_weight: The hashed word n-grams' weight in the fit (chosen with
            ``traffic_weight``; the default with too few labelled requests to choose).
        rejection: Why the refit must not replace the model in use; None when it may.
        probe: The model stage fitted again on the labelled requests' prompt vectors, and
            whether it replaced the carried-over one (None: the model in use has no probe).
    """

    model: DifficultyModel
    counts: Mapping[str, int]
    held_out: int
    held_out_wrong: int
    held_out_traffic: int
    before_auroc: float
    after_auroc: float
    length_auroc: float
    before_traffic_auroc: float
    after_traffic_auroc: float
    traffic_weight: float
    word_weight: float
    rejection: str | None
    probe: ProbeRefit | None = None

    @property
    def adopted(self) -> bool:
        """Whether the refit may replace the model in use."""
        return self.rejection is None


def refit(
    current: DifficultyModel | None,
    examples: Sequence[Example],
    *,
    seed: int,
    held_out: float = 0.3,
    meta: Mapping[str, object] | None = None,
) -> Refit:
    """Fit a difficulty model on the examples and judge it against the current one.

    Args:
        current: The model in use, None when the model has none.
        examples: Calibration answers and labelled requests.
        seed: Seeds the split and the cross-validation folds.
        held_out: Share of each (source, label) group held out.
        meta: Extra entries for the new model's ``meta``.

    Returns:
        The refit, its held-out figures, and whether it may replace the current model.

    Raises:
        ValueError: There are no examples, too few to both fit a refit and hold some out to
            measure it (a handful of labelled requests and no calibration answers: the
            message says how many are needed, and how to label more), ``held_out`` is not
            between 0 and 1, or an example's features have the wrong length.
    """
    if not examples:
        raise ValueError("there is nothing to refit from: no calibration answers or labels")
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be between 0 and 1 (got {held_out})")
    if any(example.features.shape != (N_FEATURES,) for example in examples):
        raise ValueError(f"every example needs {N_FEATURES} features")
    train, test = _split(examples, seed=seed, held_out=held_out)
    if not train or not test:
        raise ValueError(_too_few(examples, held_out))
    X = np.stack([e.features for e in train]).astype(np.float64)
    y = np.array([e.wrong for e in train], dtype=np.float64)
    from_traffic = np.array([e.source != "calibration" for e in train])
    (weight, word_weight), (fitted, _, out_of_fold) = _fit_weighted(X, y, from_traffic, seed=seed)
    X_test = np.stack([e.features for e in test]).astype(np.float64)
    y_test = np.array([e.wrong for e in test], dtype=np.float64)
    traffic = np.array([e.source != "calibration" for e in test])
    after = fitted.scores(X_test)
    before = current.scores(X_test) if current is not None else np.full(len(test), math.nan)
    lengths = np.array([e.length for e in test])
    # Every labelled request, scored by a fit that did not see it: the training split's by
    # their out-of-fold scores, the held-out ones by the refit.  The model in use never saw
    # any of them.
    labelled_wrong = np.concatenate([y[from_traffic], y_test[traffic]])
    labelled_after = np.concatenate([out_of_fold[from_traffic], after[traffic]])
    labelled_before = (
        np.concatenate([current.scores(X[from_traffic]), before[traffic]])
        if current is not None
        else np.full(len(labelled_wrong), math.nan)
    )
    figures = {
        "after": _auroc(after, y_test),
        "before": _auroc(before, y_test) if current is not None else math.nan,
        "length": _auroc(lengths, y_test),
        "after_traffic": _auroc(labelled_after, labelled_wrong),
        "before_traffic": (
            _auroc(labelled_before, labelled_wrong) if current is not None else math.nan
        ),
    }
    counts: dict[str, int] = {s: sum(e.source == s for e in examples) for s in _SOURCES}
    wrong = int(y_test.sum())
    labelled_count = len(labelled_wrong)
    labelled_wrong_count = int(labelled_wrong.sum())
    judged_on_traffic = (
        min(labelled_wrong_count, labelled_count - labelled_wrong_count) >= MIN_HELD_OUT_PER_CLASS
    )
    # Fitted again on every example, with the weights chosen: the model saved once judged.
    final, final_cv, final_out_of_fold = train_feature_model(
        np.stack([e.features for e in examples]).astype(np.float64),
        np.array([e.wrong for e in examples], dtype=np.float64),
        seed=seed,
        sample_weight=np.array([1.0 if e.source == "calibration" else weight for e in examples]),
        word_weight=word_weight,
    )
    probe: ProbeStage | None = getattr(current, "probe", None)
    refitted: ProbeRefit | None = None
    if probe is not None:
        assert current is not None  # a probe belongs to a model in use
        share = current.meta.get("probe_band_share")
        probe = follow_feature_stage(
            probe,
            final_out_of_fold,
            final.threshold,
            share=float(share) if isinstance(share, int | float) else None,
            previous_threshold=current.threshold,
        )
        refitted = refit_probe(
            probe,
            examples,
            final_out_of_fold,
            final.threshold,
            traffic_weight=weight,
            seed=seed,
            in_use=current,
        )
    rejection = review(
        len(test),
        wrong,
        figures["after"],
        figures["length"],
        figures["before"],
        traffic=(
            (labelled_count, figures["after_traffic"], figures["before_traffic"])
            if judged_on_traffic
            else None
        ),
        both=refitted.judged() if refitted is not None else None,
    )
    refit_meta: dict[str, object] = {
        "examples": dict(counts),
        "held_out": len(test),
        "held_out_traffic": int(traffic.sum()),
        "held_out_auroc_before": rounded(figures["before"]),
        "traffic_auroc_before": rounded(figures["before_traffic"]),
        "traffic_auroc": rounded(figures["after_traffic"]),
        "cv_auroc": rounded(final_cv),
        "traffic_weight": weight,
        "word_weight": word_weight,
    }
    times = [example.time for example in examples if example.time is not None]
    if times:
        # What the labelled requests' reading reads with the scores below, not the refit's own
        # (hybrid.routing.difficulty.labelled).
        refit_meta["labels_until"] = max(times)
        refit_meta["out_of_fold"] = learned_scores(examples, final_out_of_fold)
    model_meta: dict[str, Any] = {
        **(dict(current.meta) if current is not None else {}),
        **(meta or {}),
        "seed": seed,
        "items": len(examples),
        "train_items": len(train),
        "held_out_items": len(test),
        "l2": final.meta["l2"],
        "held_out_auroc": rounded(figures["after"]),
        "held_out_length_auroc": rounded(figures["length"]),
        "refit": refit_meta,
    }
    if refitted is not None:
        refit_meta["probe"] = refitted.meta()
        if refitted.adopted:
            probe = refitted.probe
            model_meta["probe_band_share"] = refitted.band_share
    model = dataclasses.replace(final, meta=model_meta, probe=probe)
    return Refit(
        model=model,
        counts=counts,
        held_out=len(test),
        held_out_wrong=wrong,
        held_out_traffic=int(traffic.sum()),
        before_auroc=figures["before"],
        after_auroc=figures["after"],
        length_auroc=figures["length"],
        before_traffic_auroc=figures["before_traffic"],
        after_traffic_auroc=figures["after_traffic"],
        traffic_weight=weight,
        word_weight=word_weight,
        rejection=rejection,
        probe=refitted,
    )


@dataclass(frozen=True, eq=False)
class ProbeRefit:
    """The model stage fitted again on labelled requests' prompt vectors, and its judgement.

    Attributes:
        probe: The refitted probe; None when too few labelled requests carry a vector.
        labelled: Labelled requests with a vector of the probe's size.
        band_share: The refitted probe's band, as a share of the examples it was fitted on.
        carried_auroc: The carried-over probe's two-stage AUROC on those requests, on the
            refitted feature stage's out-of-fold scores.
        refit_auroc: The refitted probe's two-stage AUROC on them, out-of-fold, each half
            ranked with the band chosen on the other half.
        labelled_wrong: Of those requests, how many local answers were wrong.
        in_use_auroc: The model in use's two-stage AUROC on them (both of its stages).
    """

    probe: ProbeStage | None
    labelled: int
    band_share: float = 0.0
    carried_auroc: float = math.nan
    refit_auroc: float = math.nan
    labelled_wrong: int = 0
    in_use_auroc: float = math.nan

    @property
    def adopted(self) -> bool:
        """Whether the refitted probe replaces the carried-over one."""
        return self.probe is not None and self.refit_auroc > self.carried_auroc

    def judged(self) -> tuple[int, float, float] | None:
        """What :func:`review` compares when the refit is judged on both stages together:
        the labelled requests with a vector, the refit's two-stage AUROC on them (with the
        model stage it keeps) and the model in use's; None when they hold fewer than
        :data:`~.acceptance.MIN_HELD_OUT_PER_CLASS` right or wrong, or no refit was tried."""
        right = self.labelled - self.labelled_wrong
        if self.probe is None or min(right, self.labelled_wrong) < MIN_HELD_OUT_PER_CLASS:
            return None
        after = self.refit_auroc if self.adopted else self.carried_auroc
        return (self.labelled, after, self.in_use_auroc)

    def meta(self) -> dict[str, object]:
        """What the refit's ``meta`` says of it."""
        return {
            "labelled_with_vector": self.labelled,
            "refitted": self.adopted,
            "band_share": self.band_share if self.probe is not None else None,
            "carried_auroc": rounded(self.carried_auroc),
            "refit_auroc": rounded(self.refit_auroc),
        }


def refit_probe(
    carried: ProbeStage,
    examples: Sequence[Example],
    feature_scores: np.ndarray,
    feature_threshold: float,
    *,
    traffic_weight: float,
    seed: int,
    in_use: DifficultyModel | None = None,
) -> ProbeRefit:
    """The probe fitted again with the labelled requests' prompt vectors (module docstring).

    Args:
        carried: The model in use's probe, following the refitted feature stage.
        examples: The refit's examples, in the order of ``feature_scores``.
        feature_scores: The refitted feature stage's out-of-fold score of each example.
        feature_threshold: The refitted feature stage's threshold.
        traffic_weight: What one labelled request counts for, in calibration answers.
        seed: Seeds the folds.
        in_use: The model in use, whose two stages are scored on the same requests (None:
            not scored).

    Returns:
        The refitted probe and how it compares with ``carried`` on the labelled requests (no
        probe when fewer than :data:`MIN_TRAFFIC_PER_CLASS` of each class carry a vector).
    """
    usable = [
        i
        for i, example in enumerate(examples)
        if example.vector is not None and example.vector.shape == (carried.dim,)
    ]
    traffic = np.array([examples[i].source != "calibration" for i in usable], dtype=bool)
    wrong = np.array([examples[i].wrong for i in usable], dtype=np.float64)
    labelled = int(traffic.sum())
    labelled_wrong = int(wrong[traffic].sum())
    if min(labelled_wrong, labelled - labelled_wrong) < MIN_TRAFFIC_PER_CLASS:
        return ProbeRefit(None, labelled)
    vectors = np.stack([np.asarray(examples[i].vector, dtype=np.float64) for i in usable])
    scores = np.asarray(feature_scores, dtype=np.float64)[usable]
    fitted = train_probe(
        vectors,
        wrong,
        feature_scores=scores,
        feature_threshold=feature_threshold,
        groups=None,
        seed=seed,
        sample_weight=np.where(traffic, traffic_weight, 1.0),
        judged=traffic,
    )
    carried_auroc = _two_stage_auroc(carried, scores[traffic], vectors[traffic], wrong[traffic])
    in_use_auroc = math.nan
    if in_use is not None and in_use.probe is not None:
        requests = [examples[i] for i, asked in zip(usable, traffic, strict=True) if asked]
        own = in_use.scores(np.stack([example.features for example in requests]))
        in_use_auroc = _two_stage_auroc(in_use.probe, own, vectors[traffic], wrong[traffic])
    return ProbeRefit(
        fitted.probe,
        labelled,
        fitted.band_share,
        carried_auroc,
        fitted.cv_two_stage_auroc,
        labelled_wrong,
        in_use_auroc,
    )


def _two_stage_auroc(
    probe: ProbeStage, feature_scores: np.ndarray, vectors: np.ndarray, wrong: np.ndarray
) -> float:
    """AUROC of the two stages as the router decides: ``probe`` settles the feature scores
    inside its band."""
    settled = np.array(
        [
            probe.settle(float(score), probe.score(vector))
            for score, vector in zip(feature_scores, vectors, strict=True)
        ]
    )
    return auroc(two_stage_scores(feature_scores, settled, probe.band), wrong)


def review(
    held: int,
    wrong: int,
    after: float,
    length: float,
    before: float,
    *,
    traffic: tuple[int, float, float] | None = None,
    both: tuple[int, float, float] | None = None,
) -> str | None:
    """Why a refit must not replace the model in use (module docstring), or None.

    Args:
        held: Examples held out.
        wrong: Of those, how many local answers were wrong.
        after: The refit's held-out AUROC.
        length: Prompt length's held-out AUROC.
        before: The current model's held-out AUROC; NaN when there is no current model.
        traffic: When the labelled requests hold enough of each class to measure on, their
            count and the refit's (each scored by a fit that did not see it) and the current
            model's AUROC on them; the comparison with the model in use is then made on them
            alone.
        both: When enough labelled requests carry a prompt vector
            (:meth:`ProbeRefit.judged`), their count and the refit's and the model in use's
            AUROC on them, both stages together: the comparison is then made on what the
            router decides.

    Returns:
        One sentence without a final full stop, or None.
    """
    right = held - wrong
    if held < MIN_HELD_OUT_ITEMS or min(right, wrong) < MIN_HELD_OUT_PER_CLASS:
        return (
            f"{held} examples were held out to measure the refit, {right} answered right and "
            f"{wrong} wrong: too few to trust (at least {MIN_HELD_OUT_ITEMS}, with "
            f"{MIN_HELD_OUT_PER_CLASS} right and {MIN_HELD_OUT_PER_CLASS} wrong, are needed); "
            f"label more requests (POST /v1/hybrid/feedback, routing.learn.shadow_rate, or "
            f"routing.learn.local_shadow_rate for the requests sent to the cloud)"
        )
    if after < length:
        return (
            f"the refit ranks the {held} held-out examples worse than their length does "
            f"(held-out AUROC {after:.3f}, against {length:.3f} for prompt length)"
        )
    if both is not None and not math.isnan(both[2]):
        requests, after_both, before_both = both
        if not after_both > before_both:
            return (
                f"the refit does not improve on the model in use on the {requests} labelled "
                f"requests with a prompt vector, both stages together, each scored by a fit "
                f"that did not see it (AUROC {after_both:.3f}, against {before_both:.3f} now)"
            )
        return None
    if traffic is not None:
        requests, after_traffic, before_traffic = traffic
        if not math.isnan(before_traffic) and not after_traffic > before_traffic:
            return (
                f"the refit does not improve on the model in use on the {requests} labelled "
                f"requests, each scored by a fit that did not see it (AUROC "
                f"{after_traffic:.3f}, against {before_traffic:.3f} now)"
            )
        return None
    if not math.isnan(before) and not after > before:
        return (
            f"the refit does not improve on the model in use on the {held} held-out examples "
            f"(held-out AUROC {after:.3f}, against {before:.3f} now)"
        )
    return None


_SOURCES: tuple[Source, ...] = ("calibration", "feedback", "shadow", "cascade")

TRAFFIC_WEIGHTS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""What one labelled request may count for, in calibration answers, in a refit."""

MIN_TRAFFIC_PER_CLASS = 5
"""Labelled requests of each class (right, wrong) in the training split before a weight
other than 1 is tried: fewer cannot tell the weights apart."""


def _fit_weighted(
    X: np.ndarray, y: np.ndarray, from_traffic: np.ndarray, *, seed: int
) -> tuple[tuple[float, float], tuple[DifficultyModel, float, np.ndarray]]:
    """The feature stage fitted with labelled requests weighted as their traffic says.

    Labelled requests are the user's own traffic, the calibration answers a stand-in for it;
    a request that counts for several calibration answers pulls the fit toward the traffic.
    How much is chosen per refit, inside the training split, with the weight of the hashed
    word n-grams: each pair of :data:`TRAFFIC_WEIGHTS` and
    :data:`~hybrid.routing.calibration.fitting.WORD_WEIGHTS` is fitted
    (:func:`~hybrid.routing.calibration.fitting.train_feature_model`) and the one whose
    out-of-fold scores rank the training split's labelled requests best wins (on a tie, the
    default word weight, then the lighter traffic weight).  With fewer than
    :data:`MIN_TRAFFIC_PER_CLASS` labelled requests of either class every example weighs 1
    and the words keep their default weight.

    Returns:
        The traffic weight and the word weight chosen, and ``train_feature_model``'s result
        for them.
    """
    wrong = int(y[from_traffic].sum())
    if min(wrong, int(from_traffic.sum()) - wrong) < MIN_TRAFFIC_PER_CLASS:
        return (1.0, WORD_WEIGHT), train_feature_model(X, y, seed=seed)
    word_weights = dict.fromkeys((WORD_WEIGHT, *WORD_WEIGHTS))
    best: tuple[float, tuple[float, float], tuple[DifficultyModel, float, np.ndarray]] | None
    best = None
    for word_weight in word_weights:
        for weight in TRAFFIC_WEIGHTS:
            result = train_feature_model(
                X,
                y,
                seed=seed,
                sample_weight=np.where(from_traffic, weight, 1.0),
                word_weight=word_weight,
            )
            ranked = auroc(result[2][from_traffic], y[from_traffic])
            if best is None or ranked > best[0] + 1e-9:
                best = (ranked, (weight, word_weight), result)
    assert best is not None  # TRAFFIC_WEIGHTS is not empty
    return best[1], best[2]


def _split(
    examples: Sequence[Example], *, seed: int, held_out: float
) -> tuple[list[Example], list[Example]]:
    """A seeded split, stratified by where an example came from and by its label."""
    groups: dict[tuple[bool, bool], list[Example]] = {}
    for example in examples:
        groups.setdefault((example.source == "calibration", example.wrong), []).append(example)
    rng = Random(seed)
    train: list[Example] = []
    test: list[Example] = []
    for key in sorted(groups):
        members = list(groups[key])
        rng.shuffle(members)
        cut = round(len(members) * held_out)
        test.extend(members[:cut])
        train.extend(members[cut:])
    return train, test


def _too_few(examples: Sequence[Example], held_out: float) -> str:
    """Why ``examples`` cannot be split into some to fit on and some to measure with, and how
    many labelled requests the review (:func:`review`) needs."""
    labelled = [example for example in examples if example.source != "calibration"]
    wrong = sum(example.wrong for example in labelled)
    answers = len(examples) - len(labelled)
    # Each class holds out its share, rounded (_split): this many hold out MIN_HELD_OUT_PER_CLASS.
    per_class = math.ceil((MIN_HELD_OUT_PER_CLASS - 0.5) / held_out)
    needed = max(2 * per_class, math.ceil(MIN_HELD_OUT_ITEMS / held_out))
    requests = "request" if len(labelled) == 1 else "requests"
    return (
        f"{len(labelled)} labelled {requests} ({len(labelled) - wrong} answered right, {wrong} "
        f"wrong) and {answers} calibration answers are too few to fit a refit and hold "
        f"{held_out:.0%} of them out to measure it; a refit is adopted only when at least "
        f"{MIN_HELD_OUT_ITEMS} examples are held out, with {MIN_HELD_OUT_PER_CLASS} right and "
        f"{MIN_HELD_OUT_PER_CLASS} wrong: without calibration answers, about {needed} labelled "
        f"requests, at least {per_class} right and {per_class} wrong. Label more requests "
        f"(POST /v1/hybrid/feedback, routing.learn.shadow_rate, or "
        f"routing.learn.local_shadow_rate for the requests sent to the cloud)"
    )


def _auroc(scores: np.ndarray, wrong: np.ndarray) -> float:
    if len(wrong) == 0 or wrong.min() == wrong.max():
        return math.nan
    return auroc(scores, wrong)
