"""The examples a refit learns from: calibration answers and the ledger's labelled requests.

The examples are the calibration answers ``hybrid calibrate`` recorded for the model (when
they were recorded and still match the item generators), plus the labelled requests the
ledger kept signals for (:mod:`hybrid.ledger.learning`).  A labelled request is an example
when its label says something about the local model (:func:`wrong_from_labels`):

- a person's feedback on a **local** answer: ``good`` means right, ``bad`` wrong;
- a shadow comparison (the local answer against the cloud's): agreement means right;
- the cascade's: a local answer that declined the request, or was none of the answers its
  prompt offered (and was replaced by the cloud's), was wrong;
- several: the person wins, then the shadow comparison.  Feedback on a cloud answer says
  nothing about the local model and is not used.

Calibration answers whose items cannot be generated again as they were are left out
(:func:`calibration_examples`), and so are labelled requests whose features another hybrid
version computed: either would be mislabelled.  The labelled requests are also kept as the
router's memory of them reads them (:func:`labelled_requests`, :func:`learned_scores`;
:mod:`hybrid.routing.difficulty.labelled`).  What is learned from the examples, and how, is
:mod:`hybrid.routing.calibration.learning`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from hybrid.errors import ConfigError
from hybrid.routing.calibration.fitting import prompt_length
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.record import AnswerRecord
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES, extract
from hybrid.routing.difficulty.labelled import SIZE as LABELLED_SIZE
from hybrid.routing.difficulty.labelled import LabelledRequest

if TYPE_CHECKING:
    from hybrid.ledger.learning import LabelledSignal

MIN_TRAFFIC_PER_CLASS = 5
"""Labelled requests of each class (right, wrong) in the training split before a weight
other than 1 is tried: fewer cannot tell the weights apart (and, with a prompt vector, before
the model stage is fitted again on them: :mod:`~hybrid.routing.calibration.probe_refit`)."""

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
        cascade: The cascade's label (False: the local answer declined, or was none of the
            answers offered), None when none.
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
            # A cascade's label is of a local answer it discarded: the router had kept it.
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
