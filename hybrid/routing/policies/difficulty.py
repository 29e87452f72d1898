"""Difficulty: escalate prompts the installed local model is likely to get wrong.

The score comes from the difficulty model calibrated for *this* GGUF file (``hybrid
calibrate``, or the weights shipped for the embedded model), looked up by the file's SHA-256.
Until that lookup is done, or when no calibration exists, the policy has no opinion.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.generation import Message
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.store import gguf_sha256, load_for
from hybrid.routing.policy import Policy, RouteContext, Verdict

log = logging.getLogger("hybrid.routing")


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
        self._model: DifficultyModel | None = None

    def __call__(self) -> DifficultyModel | None:
        """The calibrated model, or None (not loaded yet, still looking, or uncalibrated)."""
        path = self._model_path()
        with self._lock:
            if path is None or path == self._seen:
                return self._model if path is not None else None
            self._seen, self._model = path, None
        threading.Thread(target=self._look_up, args=(path,), daemon=True).start()
        return None

    def look_up_now(self) -> DifficultyModel | None:
        """Find the model on this thread (for commands that decide once and exit)."""
        path = self._model_path()
        if path is None:
            return None
        with self._lock:
            self._seen = path
        self._look_up(path)
        return self._model

    def _look_up(self, path: Path) -> None:
        try:
            model = load_for(self._home, gguf_sha256(path))
        except HybridError as exc:
            log.error("difficulty model for %s unusable: %s", path.name, exc)
            model = None
        if model is None:
            log.info("no difficulty model for %s; run `hybrid calibrate`", path.name)
        with self._lock:
            if self._seen == path:
                self._model = model


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
