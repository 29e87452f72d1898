"""Difficulty: escalate prompts the installed local model is likely to get wrong.

The score comes from the difficulty model calibrated for *this* GGUF file (``hybrid
calibrate``, background calibration, or the weights shipped for the embedded model), looked up
by the file's SHA-256.  A file with no calibration runs on a *prior* built from its size and
family (:mod:`hybrid.routing.difficulty.prior`), and the policy's reasons say so
(``difficulty(prior):0.71>0.50``).  Until the lookup is done, or when neither a calibration nor
a prior can be had (an unreadable header), the policy has no opinion.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from hybrid.errors import HybridError
from hybrid.generation import Message
from hybrid.routing.choices import TWO_WAY, guessed
from hybrid.routing.difficulty.features import extract
from hybrid.routing.difficulty.labelled import LabelledScores
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.prior import is_prior, prior_for_file
from hybrid.routing.difficulty.probe import ProbeStage
from hybrid.routing.difficulty.recent import RecentScores
from hybrid.routing.difficulty.store import StoredModel, find, gguf_sha256, model_path
from hybrid.routing.policy import Policy, RouteContext, Verdict
from hybrid.settings.routing import ModelStage

log = logging.getLogger("hybrid.routing")


@dataclass(frozen=True)
class CalibrationStatus:
    """Which calibration the difficulty policy uses, for ``/health``.

    Attributes:
        state: ``"waiting"`` (no model loaded yet, or its file is still being looked up),
            ``"found"``, ``"prior"`` (no calibration for this model: it runs on a prior from
            its size and family), ``"missing"`` (no calibration and no prior: the policy
            abstains) or ``"unusable"`` (the file found is damaged or made for other features).
        found: The calibration in use, when ``state`` is ``"found"``.
        problem: Why it is unusable, or why no prior could be built.
        prior: The prior in use, when ``state`` is ``"prior"``.
        sha256: The served file's SHA-256, once known.
    """

    state: Literal["waiting", "found", "prior", "missing", "unusable"]
    found: StoredModel | None = None
    problem: str | None = None
    prior: DifficultyModel | None = None
    sha256: str | None = None

    @property
    def model(self) -> DifficultyModel | None:
        """The difficulty model in use: the calibration, else the prior, else None."""
        if self.found is not None:
            return self.found.model
        return self.prior


class CalibratedModel:
    """The difficulty model for the GGUF file being served, found in the background.

    Hashing a large model file takes seconds, so the lookup runs on a thread the first time a
    file is seen; until it ends, :meth:`__call__` returns None.  While the file runs on a
    prior, a calibration written for it later (``hybrid calibrate``, background calibration)
    is picked up: each :meth:`status` checks whether its file has appeared.

    Args:
        home: The data dir, where ``hybrid calibrate`` stores its models.
        model_path: The GGUF file being served, or None while it loads.
    """

    def __init__(self, home: Path, model_path: Callable[[], Path | None]) -> None:
        self._home = home
        self._model_path = model_path
        self._lock = threading.Lock()
        self._seen: Path | None = None
        self._status = CalibrationStatus("waiting")

    def __call__(self) -> DifficultyModel | None:
        """The model in use: calibrated, else the prior; None while loading or looking."""
        return self.status().model

    def status(self) -> CalibrationStatus:
        """Which calibration is in use; starts looking it up for a newly loaded model."""
        path = self._model_path()
        with self._lock:
            if path is None:
                return CalibrationStatus("waiting")
            if path == self._seen:
                status = self._status
                if not self._calibrated_since(status):
                    return status
                self._status = CalibrationStatus("waiting", sha256=status.sha256)
            else:
                self._seen, self._status = path, CalibrationStatus("waiting")
        threading.Thread(target=self._look_up, args=(path,), daemon=True).start()
        return CalibrationStatus("waiting")

    def reload(self) -> DifficultyModel | None:
        """Look the served file's calibration up again, on this thread (after one is saved)."""
        return self.look_up_now()

    def _calibrated_since(self, status: CalibrationStatus) -> bool:
        """A calibration file has appeared for a file that runs on a prior."""
        if status.state != "prior" or status.sha256 is None:
            return False
        return model_path(self._home, status.sha256).is_file()

    def look_up_now(self) -> DifficultyModel | None:
        """Find the model on this thread (for commands that decide once and exit)."""
        path = self._model_path()
        if path is None:
            return None
        with self._lock:
            self._seen = path
        self._look_up(path)
        return self()

    def _look_up(self, path: Path) -> None:
        sha256: str | None = None
        try:
            sha256 = gguf_sha256(path)
            found = find(self._home, sha256)
        except HybridError as exc:
            log.error("difficulty model for %s unusable: %s", path.name, exc)
            status = CalibrationStatus("unusable", problem=str(exc), sha256=sha256)
        else:
            if found is not None:
                status = CalibrationStatus("found", found, sha256=sha256)
            else:
                status = self._prior(path, sha256)
        with self._lock:
            if self._seen == path:
                self._status = status

    def _prior(self, path: Path, sha256: str) -> CalibrationStatus:
        try:
            prior = prior_for_file(path, sha256)
        except HybridError as exc:
            log.warning(
                "no difficulty model for %s and no prior (%s); run `hybrid calibrate`",
                path.name,
                exc,
            )
            return CalibrationStatus("missing", problem=str(exc), sha256=sha256)
        log.info(
            "no difficulty model for %s: routing on a prior (expected accuracy %.2f) until it is "
            "calibrated",
            path.name,
            prior.meta.get("expected_accuracy"),
        )
        return CalibrationStatus("prior", prior=prior, sha256=sha256)


class DifficultyPolicy(Policy):
    """Scores a prompt and escalates it above the threshold.

    Args:
        model: Returns the calibrated model, or None when there is none (yet).
        threshold: The user's threshold; None uses the calibrated one.
        model_stage: When the model has a probe, ask it for the scores in its band
            (``"band"``, or True), for every request (``"every"``: falls back to the band for a
            probe fitted before it could be; :mod:`hybrid.routing.model_stage`), or never
            (``"off"``, or False: the feature stage alone decides).
        neighbours: Read each feature score beside those of this many of the nearest recent
            requests (:mod:`hybrid.routing.difficulty.recent`); 0 scores each prompt alone.
        labelled: Then read it beside the labelled requests most like it
            (:mod:`hybrid.routing.difficulty.labelled`); None: labels play no part until a
            refit learns from them.
        yes_no: Then halve the score of a prompt that asks for yes or no, or true or false:
            a guess is right half the time (:func:`~hybrid.routing.choices.guessed`).
    """

    name = "difficulty"

    def __init__(
        self,
        model: Callable[[], DifficultyModel | None],
        *,
        threshold: float | None,
        model_stage: ModelStage | bool = "band",
        neighbours: int = 0,
        labelled: LabelledScores | None = None,
        yes_no: bool = True,
    ) -> None:
        self._model = model
        self._labelled = labelled
        self._yes_no = yes_no
        self._threshold = threshold
        if isinstance(model_stage, bool):
            model_stage = "band" if model_stage else "off"
        self._model_stage: ModelStage = model_stage
        self._recent = RecentScores(neighbours) if neighbours > 0 else None
        # The probe's scores, read beside the recent requests' when it is asked for every one.
        self._recent_probe = RecentScores(neighbours) if neighbours > 0 else None
        self._warned_every: ProbeStage | None = None
        # The model's probe and threshold, and that probe moved to the user's threshold.
        self._moved: tuple[ProbeStage, float, ProbeStage] | None = None

    def probe(self) -> ProbeStage | None:
        """The model stage in use: the current model's probe, unless switched off.

        With a threshold of the user's, the probe's threshold moves by the same step
        (:meth:`~hybrid.routing.difficulty.probe.ProbeStage.moved`); at 0 or 1 there is no
        model stage, since the setting alone decides every request.
        """
        if self._model_stage == "off":
            return None
        model = self._model()
        if model is None or model.probe is None:
            return None
        if self._threshold is None:
            return model.probe
        if self._threshold <= 0.0 or self._threshold >= 1.0:
            return None
        moved = self._moved
        if moved is None or moved[0] is not model.probe or moved[1] != model.threshold:
            probe = model.probe.moved(model.threshold, self._threshold)
            moved = self._moved = (model.probe, model.threshold, probe)
        return moved[2]

    def asks_every(self, probe: ProbeStage) -> bool:
        """Whether this probe (:meth:`probe`) is asked for every request: so set, and it has
        the threshold for it (one fitted before it could be is asked in its band, with a
        warning, once per probe)."""
        if self._model_stage != "every":
            return False
        if probe.every_threshold is not None:
            return True
        if self._warned_every is not probe:
            self._warned_every = probe
            log.warning(
                'routing.difficulty.model_stage = "every" needs a calibration fitted with its '
                "threshold: run `hybrid calibrate` for this model; the model stage is asked in "
                "its band until then"
            )
        return False

    def read_probe(self, probe: ProbeStage, vector: np.ndarray, score: float) -> float:
        """The probe's score of a prompt read beside the recent requests most like it, by
        their prompt vectors as the probe standardises them (each score alone with
        ``neighbours`` 0); then remembered.

        Args:
            probe: The probe in use (a new one starts the memory afresh).
            vector: The prompt's vector.
            score: The probe's score of it.
        """
        if self._recent_probe is None:
            return score
        return self._recent_probe.beside(probe, probe.units(vector), score)

    def guessed(self, score: float, options: frozenset[str] | None) -> float:
        """The score of a prompt offering ``options`` (:func:`~hybrid.routing.choices.options_of`),
        halved for yes or no, or true or false (:func:`~hybrid.routing.choices.guessed`), unless
        switched off."""
        return guessed(score, options) if self._yes_no else score

    def halves(self, context: RouteContext) -> bool:
        """Whether this request's score is halved: it asks for yes or no, or true or false
        (:meth:`guessed`)."""
        return self._yes_no and context.options in TWO_WAY

    def evaluate(self, context: RouteContext) -> Verdict:
        """``cloud`` above the threshold, ``local`` at or below it, with the score."""
        model = self._model()
        if model is None:
            return self.abstain("difficulty:uncalibrated")
        messages = context.messages or (Message("user", context.text),)
        features = extract(messages)
        if self._recent is None:
            score = model.score_features(features)
        else:
            score, _ = self._recent.score(model, features)
        if self._labelled is not None:
            score = self._labelled.read(model, features, score)
        score = self.guessed(score, context.options)
        threshold = model.threshold if self._threshold is None else self._threshold
        # "difficulty(prior)", "difficulty(yes_no)", "difficulty(prior,yes_no)" say how it was
        # scored; ``hybrid stats --by reason`` groups them apart.
        marks = [
            mark
            for mark, on in (("prior", is_prior(model)), ("yes_no", self.halves(context)))
            if on
        ]
        name = f"difficulty({','.join(marks)})" if marks else "difficulty"
        if score > threshold:
            return self.verdict("cloud", f"{name}:{score:.2f}>{threshold:.2f}", score=score)
        return self.verdict("local", f"{name}:{score:.2f}<={threshold:.2f}", score=score)
