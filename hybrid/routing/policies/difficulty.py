"""Difficulty: escalate prompts the installed local model is likely to get wrong.

The score comes from the difficulty model calibrated for *this* GGUF file (``hybrid
calibrate``, or the weights shipped for the embedded model), looked up by the file's SHA-256.
Until that lookup is done, or when no calibration exists, the policy has no opinion.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hybrid.errors import HybridError
from hybrid.generation import Message
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.store import StoredModel, find, gguf_sha256
from hybrid.routing.policy import Policy, RouteContext, Verdict

log = logging.getLogger("hybrid.routing")


@dataclass(frozen=True)
class CalibrationStatus:
    """Which calibration the difficulty policy uses, for ``/health``.

    Attributes:
        state: ``"waiting"`` (no model loaded yet, or its file is still being looked up),
            ``"found"``, ``"missing"`` (no calibration for this model: the policy abstains)
            or ``"unusable"`` (the file found is damaged or made for other features).
        found: The calibration in use, when ``state`` is ``"found"``.
        problem: Why it is unusable, when it is.
    """

    state: Literal["waiting", "found", "missing", "unusable"]
    found: StoredModel | None = None
    problem: str | None = None


class CalibratedModel:
    """The difficulty model for the GGUF file being served, found in the background.

    Hashing a large model file takes seconds, so the lookup runs on a thread the first time a
    file is seen; until it ends, :meth:`__call__` returns None.

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
        """The calibrated model, or None (not loaded yet, still looking, or uncalibrated)."""
        found = self.status().found
        return found.model if found is not None else None

    def status(self) -> CalibrationStatus:
        """Which calibration is in use; starts looking it up for a newly loaded model."""
        path = self._model_path()
        with self._lock:
            if path is None:
                return CalibrationStatus("waiting")
            if path == self._seen:
                return self._status
            self._seen, self._status = path, CalibrationStatus("waiting")
        threading.Thread(target=self._look_up, args=(path,), daemon=True).start()
        return CalibrationStatus("waiting")

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
        try:
            found = find(self._home, gguf_sha256(path))
        except HybridError as exc:
            log.error("difficulty model for %s unusable: %s", path.name, exc)
            status = CalibrationStatus("unusable", problem=str(exc))
        else:
            if found is None:
                log.info("no difficulty model for %s; run `hybrid calibrate`", path.name)
            status = (
                CalibrationStatus("missing") if found is None else CalibrationStatus("found", found)
            )
        with self._lock:
            if self._seen == path:
                self._status = status


class DifficultyPolicy(Policy):
    """Scores a prompt and escalates it above the threshold.

    Args:
        model: Returns the calibrated model, or None when there is none (yet).
        threshold: The user's threshold; None uses the calibrated one.
    """

    name = "difficulty"

    def __init__(
        self, model: Callable[[], DifficultyModel | None], *, threshold: float | None
    ) -> None:
        self._model = model
        self._threshold = threshold

    def evaluate(self, context: RouteContext) -> Verdict:
        """``cloud`` above the threshold, ``local`` at or below it, with the score."""
        model = self._model()
        if model is None:
            return self.abstain("difficulty:uncalibrated")
        messages = context.messages or (Message("user", context.text),)
        score = model.score(messages)
        threshold = model.threshold if self._threshold is None else self._threshold
        if score > threshold:
            return self.verdict("cloud", f"difficulty:{score:.2f}>{threshold:.2f}", score=score)
        return self.verdict("local", f"difficulty:{score:.2f}<={threshold:.2f}", score=score)
