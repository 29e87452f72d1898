"""What the ledger keeps for learning from traffic: signals and labels.

A :class:`Signal` is what a refit of the difficulty model needs about one request the
difficulty policy scored, without the prompt's text: the local model it was scored for (its
GGUF file's SHA-256), the prompt's feature vector (float32 bytes), the local model's own
prompt vector when one was computed (float16 bytes), the route, the score and the prompt's
length in characters.  A :class:`Label` says whether an answer was good: from a person
(``source="feedback"``, ``POST /v1/hybrid/feedback``), from comparing a local answer with
a cloud answer to the same request (``source="shadow"``, :mod:`hybrid.routing.shadow`), or
from the cascade, which discarded a local answer that declined the request or was none of the
answers its prompt offered (``source="cascade"``, always bad: :mod:`hybrid.routing.cascade`).

Both go through the ledger's writer, like records: journaled first, committed in batches.
A request has at most one signal and one label per source; a newer one replaces the older.
Only the ``keep`` most recent signals are kept (``routing.learn.keep_signals``), and labels and
signals older than the ledger's retention go with the records.

Their tables and the SQL that writes and reads them are :mod:`hybrid.ledger.learning_tables`,
which :class:`~hybrid.ledger.store.LedgerStore` runs.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

LabelSource = Literal["feedback", "shadow", "cascade"]
LABEL_SOURCES: tuple[str, ...] = get_args(LabelSource)

_FEATURE_DTYPE = np.dtype("<f4")
_VECTOR_DTYPE = np.dtype("<f2")


@dataclass(frozen=True)
class Signal:
    """What a refit needs to know about one scored request (never its text).

    Attributes:
        request_id: The request's id (``X-Hybrid-Request-Id``).
        time: When the request arrived, Unix seconds.
        model_sha256: The SHA-256 of the local model's GGUF file the score was made for.
        feature_version: The prompt features' version (``FEATURE_VERSION``).
        features: The feature vector, little-endian float32.
        route: Where the request was answered: ``local``, ``lan`` or ``cloud``.
        score: The difficulty score the router used.
        prompt_chars: The conversation's length in characters (the length rule's score).
        vector: The local model's prompt vector, little-endian float16, when one was computed.
    """

    request_id: str
    time: float
    model_sha256: str
    feature_version: int
    features: bytes
    route: str
    score: float | None
    prompt_chars: int
    vector: bytes | None = None

    @classmethod
    def of(
        cls,
        *,
        request_id: str,
        time: float,
        model_sha256: str,
        feature_version: int,
        features: np.ndarray,
        route: str,
        score: float | None,
        prompt_chars: int,
        vector: np.ndarray | None = None,
    ) -> Signal:
        """A signal from arrays: the features as float32, the prompt vector as float16."""
        return cls(
            request_id=request_id,
            time=time,
            model_sha256=model_sha256,
            feature_version=feature_version,
            features=np.asarray(features, dtype=_FEATURE_DTYPE).tobytes(),
            route=route,
            score=score,
            prompt_chars=prompt_chars,
            vector=None if vector is None else np.asarray(vector, dtype=_VECTOR_DTYPE).tobytes(),
        )

    def with_vector(self, vector: np.ndarray) -> Signal:
        """The same signal with the local model's prompt vector (as float16)."""
        return dataclasses.replace(self, vector=np.asarray(vector, dtype=_VECTOR_DTYPE).tobytes())

    def feature_array(self) -> np.ndarray:
        """The feature vector as float64."""
        return np.frombuffer(self.features, dtype=_FEATURE_DTYPE).astype(np.float64)

    def vector_array(self) -> np.ndarray | None:
        """The prompt vector as float32, or None."""
        if self.vector is None:
            return None
        return np.frombuffer(self.vector, dtype=_VECTOR_DTYPE).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The journal's JSON object (bytes as base64)."""
        return {
            "kind": "signal",
            "request_id": self.request_id,
            "time": self.time,
            "model_sha256": self.model_sha256,
            "feature_version": self.feature_version,
            "features": base64.b64encode(self.features).decode("ascii"),
            "route": self.route,
            "score": self.score,
            "prompt_chars": self.prompt_chars,
            "vector": None if self.vector is None else base64.b64encode(self.vector).decode(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signal:
        """Read :meth:`to_dict` output.

        Raises:
            ValueError: A key is missing or a value cannot be decoded.
        """
        try:
            vector = data.get("vector")
            score = data["score"]
            return cls(
                request_id=str(data["request_id"]),
                time=float(data["time"]),
                model_sha256=str(data["model_sha256"]),
                feature_version=int(data["feature_version"]),
                features=base64.b64decode(data["features"], validate=True),
                route=str(data["route"]),
                score=None if score is None else float(score),
                prompt_chars=int(data["prompt_chars"]),
                vector=None if vector is None else base64.b64decode(vector, validate=True),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a signal needs the key {exc}") from exc


@dataclass(frozen=True)
class Label:
    """Whether the answer to a request was good.

    Attributes:
        request_id: The request's id.
        source: ``feedback`` (a person said so), ``shadow`` (a cloud answer agreed or not) or
            ``cascade`` (the local answer declined the request or was none of the answers
            its prompt offered, and the cloud answered).
        good: The answer was good enough.
        time: When the label was given, Unix seconds.
        note: What the person added, if anything.
        agreement: For a shadow label, how far the two answers agreed (0 to 1).
    """

    request_id: str
    source: LabelSource
    good: bool
    time: float
    note: str | None = None
    agreement: float | None = None

    def __post_init__(self) -> None:
        """Reject an unknown source.

        Raises:
            ValueError: ``source`` is not one of :data:`LABEL_SOURCES`.
        """
        if self.source not in LABEL_SOURCES:
            raise ValueError(f"source must be one of {LABEL_SOURCES}, not {self.source!r}")

    def to_dict(self) -> dict[str, Any]:
        """The journal's JSON object."""
        return {
            "kind": "label",
            "request_id": self.request_id,
            "source": self.source,
            "good": self.good,
            "time": self.time,
            "note": self.note,
            "agreement": self.agreement,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Label:
        """Read :meth:`to_dict` output.

        Raises:
            ValueError: A key is missing or a value is out of its set.
        """
        try:
            agreement = data.get("agreement")
            note = data.get("note")
            return cls(
                request_id=str(data["request_id"]),
                source=data["source"],
                good=bool(data["good"]),
                time=float(data["time"]),
                note=None if note is None else str(note),
                agreement=None if agreement is None else float(agreement),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a label needs the key {exc}") from exc


Learned = Signal | Label
"""An entry of the ledger that is not a request record."""


@dataclass(frozen=True)
class LabelledSignal:
    """A kept signal and the labels its request has.

    Attributes:
        signal: The signal.
        feedback: The person's label (``good``), None when there is none.
        shadow: The shadow comparison's label, None when there is none.
        cascade: The cascade's label (False: the local answer declined, or was none of the
            answers offered), None when none.
        labelled_at: When its newest label was written, Unix seconds (None: not known).
    """

    signal: Signal
    feedback: bool | None
    shadow: bool | None
    cascade: bool | None = None
    labelled_at: float | None = None


@dataclass(frozen=True)
class LabelCount:
    """How many labels one local model's requests have, by source.

    Attributes:
        model_sha256: The local model's SHA-256; None for labels of requests with no kept
            signal (the difficulty policy did not score them, or their signal was pruned).
        feedback: Labels given by people.
        shadow: Labels from shadow comparisons.
        cascade: Labels from the cascade (local answers that declined, or were none of the
            answers offered).
        usable: Requests a refit can learn from: a kept signal with a shadow or a cascade
            label, or with feedback on a local answer.
        with_vector: Of those, how many kept the local model's prompt vector (what refits
            the model stage).
        shadow_escalated: Of the shadow labels, those of requests the router sent to the
            cloud or a LAN server: local answers given in the background
            (``routing.learn.local_shadow_rate``).
    """

    model_sha256: str | None
    feedback: int = 0
    shadow: int = 0
    usable: int = 0
    cascade: int = 0
    with_vector: int = 0
    shadow_escalated: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``/v1/hybrid/stats``' ``labels`` entries)."""
        return {
            "model_sha256": self.model_sha256,
            "feedback": self.feedback,
            "shadow": self.shadow,
            "cascade": self.cascade,
            "usable": self.usable,
            "with_vector": self.with_vector,
            "shadow_escalated": self.shadow_escalated,
        }
