"""Calibrating the served model in the background, while it serves, without slowing it down.

A model with no calibration starts on a prior (:mod:`hybrid.routing.difficulty.prior`).  When
``routing.calibration.background`` is on, ``hybrid serve`` then asks it the calibration set
(``hybrid calibrate``'s, same seed and output cap) through the queue's low-priority lane: each
answer is one short job that starts only when no request waits or runs, so a request waits at
most for the one answer being generated.  The local model's backend also gives its own vector
of each item's prompt (read from the prefill its answer reuses), so that the fit gets the model
stage (a probe) as ``hybrid calibrate``'s does.  When every item is answered it fits
(:func:`~hybrid.routing.calibration.fitting.calibrate`) at the lowest CPU priority
(:mod:`~hybrid.routing.calibration.low_priority`), and adopts the fit only when it passes
:func:`~hybrid.routing.calibration.acceptance.review_against_prior`; either way the answers are
saved as the model's answer record, for ``hybrid calibrate`` and ``scripts/eval_router.py`` to
reuse.

Progress (:class:`BackgroundProgress`) is kept in memory for ``/health`` and the monitor, and
written to ``<home>/calibration/<sha256>.background.json`` with the answers so far, so that
``hybrid models`` can show it and a restarted server resumes where the last one stopped.

States: ``waiting`` (the model is loading or its calibration is being looked up), ``running``
(answering), ``paused`` (the machine runs on its battery: background work waits for AC power
unless ``local.background_on_battery`` lets it run; ``message`` says so), ``fitting``,
``adopted`` (the fit replaced the prior), ``kept-prior`` (the fit was no better, or not
trustworthy), ``stopped`` (a calibration appeared meanwhile, the model was not calibratable, or
answering failed: ``message`` says which).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from hybrid.backend import Backend
from hybrid.errors import GenerationError, HybridError, ModelNotReadyError, PreemptedError
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.low_priority import run_low_priority
from hybrid.routing.calibration.runner import ItemAnswer
from hybrid.routing.difficulty.model import DifficultyModel

if TYPE_CHECKING:
    from hybrid.routing.policies.difficulty import CalibrationStatus

log = logging.getLogger("hybrid.calibration")

BackgroundState = Literal[
    "waiting", "running", "paused", "fitting", "adopted", "kept-prior", "stopped"
]

SEED = 0
"""The calibration seed: ``hybrid calibrate``'s default, so each can reuse the other's answers."""

MAX_TOKENS = 24
"""Output cap per answer: ``hybrid calibrate``'s default.  Answers also end at their first line
break, so one background job is a short generation."""

HELD_OUT = 0.3
"""Share of each category held out to compare the fit with the prior."""

PROGRESS_FORMAT = "hybrid.background-calibration"

RESUMES = "resumes on AC power, or with local.background_on_battery"
"""What a ``paused`` progress's message says after the reason."""

_SAVE_EVERY = 10
"""Fewest answers between two writes of the progress file.  The file holds every answer so far
with its prompt vector (about 10 MB for 900 items of a 640-wide model), so writes also wait for
a tenth more answers than the last one held: a crash loses at most that tenth."""


class CalibrationSource(Protocol):
    """What background calibration needs of the served model's calibration lookup
    (:class:`~hybrid.routing.policies.difficulty.CalibratedModel`)."""

    def status(self) -> CalibrationStatus:
        """Which calibration is in use (``prior`` while the model has none)."""
        ...

    def reload(self) -> DifficultyModel | None:
        """Look the calibration up again after one was saved."""
        ...


@dataclass(frozen=True)
class BackgroundProgress:
    """How far background calibration has got.

    Attributes:
        state: See the module docstring.
        done: Items answered.
        total: Items in the calibration set (0 until known).
        correct: Items answered right so far.
        message: What happened, for ``adopted``, ``kept-prior`` and ``stopped``.
        updated: When this was recorded (ISO 8601, UTC).
    """

    state: BackgroundState
    done: int = 0
    total: int = 0
    correct: int = 0
    message: str | None = None
    updated: str | None = None

    @property
    def accuracy(self) -> float | None:
        """Share of the answered items answered right; None before the first."""
        return self.correct / self.done if self.done else None

    def to_json(self) -> dict[str, Any]:
        """``state``, ``done``, ``total``, ``correct``, ``accuracy`` (4 decimals or None),
        ``message`` and ``updated``: what ``/health`` shows under ``calibration.background``."""
        accuracy = self.accuracy
        return {
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "correct": self.correct,
            "accuracy": round(accuracy, 4) if accuracy is not None else None,
            "message": self.message,
            "updated": self.updated,
        }

    def line(self) -> str:
        """One phrase for people: ``running: 120/540 items, 31% right so far``."""
        if self.state in ("waiting", "fitting") and not self.done:
            return self.state
        counts = f"{self.done}/{self.total} items"
        if self.accuracy is not None:
            counts += f", {self.accuracy:.0%} right" + (
                " so far" if self.state in ("running", "paused") else ""
            )
        text = f"{self.state}: {counts}"
        return f"{text} ({self.message})" if self.message else text


def progress_path(home: Path, sha256: str) -> Path:
    """``home / "calibration" / f"{sha256}.background.json"``."""
    return home / "calibration" / f"{sha256}.background.json"


def read_progress(home: Path, sha256: str) -> BackgroundProgress | None:
    """The last progress a server recorded for a model, or None (never run, or unreadable)."""
    try:
        data = json.loads(progress_path(home, sha256).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != PROGRESS_FORMAT:
            return None
        fields = data["progress"]
        return BackgroundProgress(
            state=fields["state"],
            done=int(fields["done"]),
            total=int(fields["total"]),
            correct=int(fields["correct"]),
            message=fields.get("message"),
            updated=fields.get("updated"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _saved_answers(
    home: Path, sha256: str, items: Sequence[CalibrationItem], per_category: int
) -> list[ItemAnswer]:
    """Answers a previous server recorded for the first items of this same set."""
    try:
        data = json.loads(progress_path(home, sha256).read_text(encoding="utf-8"))
        if (
            data.get("format") != PROGRESS_FORMAT
            or data.get("seed") != SEED
            or data.get("per_category") != per_category
            or data.get("max_tokens") != MAX_TOKENS
        ):
            return []
        answers = []
        for item, row in zip(items, data["answers"], strict=False):
            answer = ItemAnswer.from_json(row)
            if answer.item_id != item.id or row.get("prompt") != item.prompt:
                break
            answers.append(answer)
        return answers
    except (OSError, ValueError, KeyError, TypeError, AttributeError, HybridError):
        return []


class BackgroundCalibration:
    """Calibrates the served model on the queue's low-priority lane (see the module docstring).

    Args:
        home: The data dir, where calibrations, answer records and progress live.
        calibration: The served model's calibration lookup; calibration runs only while it
            reports ``prior``, and is told to look again after a fit is saved.
        backend: The local model's background-lane backend (each request it answers waits
            until no client request waits or runs); raises ModelNotReadyError while loading.
        model_name: The served model's id, for the saved calibration's metadata.
        per_category: Items per category.
        held: Why background work waits now (on battery power), or None: each answer, and
            the fit, wait until it says None, in state ``paused``.
        poll_s: Seconds between two looks at the calibration lookup while it is pending, and
            at ``held`` while it holds.
    """

    def __init__(
        self,
        *,
        home: Path,
        calibration: CalibrationSource,
        backend: Callable[[], Backend],
        model_name: Callable[[], str],
        per_category: int,
        held: Callable[[], str | None] = lambda: None,
        poll_s: float = 0.5,
    ) -> None:
        self._home = home
        self._calibration = calibration
        self._backend = backend
        self._model_name = model_name
        self._per_category = per_category
        self._held = held
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._progress: BackgroundProgress | None = BackgroundProgress("waiting")
        self.finished = threading.Event()
        """Set when :meth:`run` has ended, whatever the outcome."""

    def progress(self) -> BackgroundProgress | None:
        """The progress now (safe from any thread); None when the served model needs no
        calibration (it has one)."""
        with self._lock:
            return self._progress

    def reset(self) -> None:
        """Start over for the model served now (after a switch or a reload): back to
        ``waiting``; the next :meth:`run` looks its calibration up and resumes its saved
        answers.  Call it only when no :meth:`run` is running."""
        with self._lock:
            self._progress = BackgroundProgress("waiting")
        self.finished.clear()

    def _current(self) -> BackgroundProgress:
        return self.progress() or BackgroundProgress("waiting")

    async def run(self) -> None:
        """Wait for the lookup, answer every item, fit, and adopt or keep the prior.

        Never raises but for cancellation: a failure ends in state ``stopped`` with its reason.
        """
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except ModelNotReadyError as exc:  # shutting down, or the model went away
            self._set(self._current(), state="stopped", message=str(exc))
        except Exception as exc:  # background work must never take the server down
            log.exception("background calibration failed")
            self._set(self._current(), state="stopped", message=f"failed: {exc}")
        finally:
            self.finished.set()

    async def _run(self) -> None:
        from hybrid.routing.calibration.items import calibration_set

        status = await self._decided()
        if status.state == "found":
            with self._lock:
                self._progress = None
            return
        if status.state != "prior" or status.prior is None or status.sha256 is None:
            self._set(
                self._current(),
                state="stopped",
                message=f"no prior to improve on (calibration {status.state}: {status.problem})",
            )
            return
        prior: DifficultyModel = status.prior
        sha256: str = status.sha256
        items = await asyncio.to_thread(calibration_set, SEED, per_category=self._per_category)
        answers = await asyncio.to_thread(
            _saved_answers, self._home, sha256, items, self._per_category
        )
        if answers:
            log.info("background calibration resumes after %d answered items", len(answers))
        # The local model's backend also gives its vector of each prompt, for the model stage.
        embed = callable(getattr(self._backend(), "prompt_embedding", None))
        if embed and any(answer.embedding is None for answer in answers):
            # Answers saved without one (by an older server) get it; they are not asked again.
            try:
                answers = await self._with_vectors(items[: len(answers)], answers)
            except GenerationError as exc:
                embed = _without_vectors(exc)
        self._set(
            BackgroundProgress("running", len(answers), len(items), sum(a.correct for a in answers))
        )
        log.info("background calibration of %s: %d items", self._model_name(), len(items))
        saved = len(answers)

        async def saving() -> None:
            await run_low_priority(self._save_progress, sha256, items, answers)

        for item in items[len(answers) :]:
            if self._calibration.status().state != "prior":
                self._set(
                    self._current(),
                    state="stopped",
                    message="a calibration was saved meanwhile (`hybrid calibrate`)",
                )
                return
            answer, embed = await self._ask(item, embed, saving)
            answers.append(answer)
            now = self._current()
            self._set(
                dataclasses.replace(now, done=now.done + 1, correct=now.correct + answer.correct)
            )
            if len(answers) - saved >= max(_SAVE_EVERY, saved // 10):
                await run_low_priority(self._save_progress, sha256, items, answers)
                saved = len(answers)
        await self._while_held(saving)
        self._set(self._current(), state="fitting")
        await run_low_priority(self._save_progress, sha256, items, answers)
        outcome, message = await run_low_priority(self._fit, sha256, prior, items, answers, embed)
        self._set(self._current(), state=outcome, message=message)
        await run_low_priority(self._save_progress, sha256, items, answers)
        log.info("background calibration: %s (%s)", outcome, message)

    async def _ask(
        self, item: CalibrationItem, embed: bool, saving: Callable[[], Awaitable[None]]
    ) -> tuple[ItemAnswer, bool]:
        """One item's answer, once background work is not held (``saving`` records the
        progress when it pauses); asked again when a client request stopped it early, and
        without the prompt vector once the model gives none.

        Returns:
            The answer, and whether vectors are still read.
        """
        from hybrid.routing.calibration.runner import answer_items

        while True:
            await self._while_held(saving)
            try:
                (answer,) = await answer_items(
                    self._backend(), [item], max_tokens=MAX_TOKENS, progress=_ignore, embed=embed
                )
            except PreemptedError:
                continue  # it waits in the low-priority lane until the model is free again
            except GenerationError as exc:
                if not embed:
                    raise
                embed = _without_vectors(exc)
                continue
            return answer, embed

    async def _with_vectors(
        self, items: Sequence[CalibrationItem], answers: Sequence[ItemAnswer]
    ) -> list[ItemAnswer]:
        """The answers, each saved without a prompt vector now with it (read one at a time,
        again when a client request stopped the read early; not asked again)."""
        from hybrid.routing.calibration.runner import with_vectors

        done = []
        for item, answer in zip(items, answers, strict=True):
            while True:
                try:
                    (read,) = await with_vectors(
                        self._backend(), [item], [answer], max_tokens=MAX_TOKENS
                    )
                except PreemptedError:
                    continue  # it waits in the low-priority lane until the model is free
                done.append(read)
                break
        return done

    async def _while_held(self, saving: Callable[[], Awaitable[None]]) -> None:
        """Wait in state ``paused`` while background work is held (the progress file says so,
        for ``hybrid models``), then go on ``running``."""
        reason = self._held()
        if reason is None:
            return
        log.info("background calibration paused: %s", reason)
        self._set(self._current(), state="paused", message=f"{reason}; {RESUMES}")
        await saving()
        while self._held() is not None:
            await asyncio.sleep(self._poll_s)
        log.info("background calibration resumes")
        self._set(self._current(), state="running", message=None)

    async def _decided(self) -> CalibrationStatus:
        while True:
            status = self._calibration.status()
            if status.state != "waiting":
                return status
            await asyncio.sleep(self._poll_s)

    def _fit(
        self,
        sha256: str,
        prior: DifficultyModel,
        items: Sequence[CalibrationItem],
        answers: Sequence[ItemAnswer],
        embed: bool,
    ) -> tuple[BackgroundState, str]:
        from hybrid import __version__
        from hybrid.routing.calibration.acceptance import review_against_prior
        from hybrid.routing.calibration.fitting import calibrate
        from hybrid.routing.calibration.record import AnswerRecord, save_record
        from hybrid.routing.difficulty.store import save

        save_record(
            self._home,
            AnswerRecord(
                model_sha256=sha256,
                seed=SEED,
                per_category=self._per_category,
                max_tokens=MAX_TOKENS,
                prompts=tuple(item.prompt for item in items),
                answers=tuple(answers),
            ),
        )
        meta = {
            "model": self._model_name(),
            "model_sha256": sha256,
            "per_category": self._per_category,
            "max_tokens": MAX_TOKENS,
            "created": datetime.now(UTC).date().isoformat(),
            "hybrid_version": __version__,
            "calibrated_by": "background",
        }
        vectors = [answer.embedding for answer in answers] if embed else []
        calibration = calibrate(
            items,
            [answer.correct for answer in answers],
            seed=SEED,
            held_out=HELD_OUT,
            meta=meta,
            vectors=vectors if any(vector is not None for vector in vectors) else None,
        )
        rejection = review_against_prior(calibration, prior)
        if rejection is not None:
            return "kept-prior", rejection.message
        path = save(self._home, sha256, calibration.model)
        self._calibration.reload()
        two_stage = calibration.model.meta.get("held_out_two_stage_auroc")
        stages = "" if two_stage is None else f", {two_stage:.3f} with the model stage"
        return "adopted", (
            f"held-out AUROC {calibration.held_out_auroc:.3f}{stages} on "
            f"{len(calibration.held_out)} items; saved to {path}"
        )

    def _set(self, progress: BackgroundProgress, **changes: Any) -> None:
        stamped = dataclasses.replace(
            progress, **changes, updated=datetime.now(UTC).isoformat(timespec="seconds")
        )
        with self._lock:
            self._progress = stamped

    def _save_progress(
        self, sha256: str, items: Sequence[CalibrationItem], answers: Sequence[ItemAnswer]
    ) -> None:
        from hybrid.routing.difficulty.store import write_atomic

        data = {
            "format": PROGRESS_FORMAT,
            "seed": SEED,
            "per_category": self._per_category,
            "max_tokens": MAX_TOKENS,
            "progress": self._current().to_json(),
            "answers": [
                {**answer.to_json(), "prompt": item.prompt}
                for item, answer in zip(items, answers, strict=False)
            ],
        }
        try:
            write_atomic(
                progress_path(self._home, sha256), json.dumps(data, ensure_ascii=False) + "\n"
            )
        except HybridError as exc:  # progress is a convenience: serving goes on without it
            log.warning("cannot save background calibration progress: %s", exc)


def _without_vectors(exc: GenerationError) -> bool:
    """Go on without the model's prompt vectors (the fit then has no model stage)."""
    log.warning(
        "background calibration goes on without the model stage: the model gives no vector "
        "of a prompt (%s)",
        exc,
    )
    return False


def _ignore(done: int, total: int) -> None:
    del done, total
