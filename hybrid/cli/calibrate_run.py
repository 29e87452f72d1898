"""The calibration run behind ``hybrid calibrate``: ask, grade, fit, review, store.

:func:`calibrate_backend` runs a generated calibration set through a backend (only the items
the answer record does not hold), optionally has a judge grade them again, records the
answers, fits the difficulty model, and stores it when
:func:`~hybrid.routing.calibration.acceptance.review` accepts it;
:func:`rejection_message` says why a fit was refused and how to run again.  The command's flags
and the choice of backend (the local model or a LAN server) are :mod:`hybrid.cli.calibrate`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hybrid.cli.calibrate_report import ProgressBar, render_summary

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from hybrid.backend import Backend
    from hybrid.routing.calibration.acceptance import Rejection
    from hybrid.routing.calibration.fitting import Calibration
    from hybrid.routing.calibration.item import CalibrationItem
    from hybrid.routing.calibration.judge import Judge
    from hybrid.routing.calibration.record import AnswerRecord
    from hybrid.routing.calibration.runner import ItemAnswer
    from hybrid.routing.difficulty.store import StoredModel


DEFAULT_PER_CATEGORY = 60
"""Items per category: 900 in all, four to six minutes on a 2-core CPU with Gemma 3 270M."""
DEFAULT_SEED = 0
DEFAULT_MAX_TOKENS = 24
"""Answers are graded on their first line; 24 tokens hold any right answer in the set."""
DEFAULT_HELD_OUT = 0.3
_MARGIN = 1.25
"""Head-room on the suggested --per-category: the share of right answers seen is an estimate."""


@dataclass(frozen=True)
class CalibrateOptions:
    """What to run.

    Attributes:
        per_category: Items per category.
        seed: Seeds the items, the split and the cross-validation folds.
        max_tokens: Output cap per answer.
        held_out: Share of each category kept out of fitting, to measure the model on.
        rerun: Ask the model every item, even those the answer record already holds.
    """

    per_category: int = DEFAULT_PER_CATEGORY
    seed: int = DEFAULT_SEED
    max_tokens: int = DEFAULT_MAX_TOKENS
    held_out: float = DEFAULT_HELD_OUT
    rerun: bool = False


@dataclass(frozen=True)
class DeferredBackend:
    """A backend opened only when an item must be asked: a run whose every answer is reused
    from the record never loads the model.

    Attributes:
        open: Opens (loads) the backend.
        embeds: Whether the opened backend gives prompt vectors (``prompt_embedding``).
    """

    open: Callable[[], Awaitable[Backend]]
    embeds: bool


async def calibrate_backend(
    backend: Backend | DeferredBackend,
    *,
    home: Path,
    sha256: str,
    model_name: str,
    options: CalibrateOptions,
    out: TextIO,
    err: TextIO,
    clock: Callable[[], float] = time.monotonic,
    shipped: Traversable | Path | None = None,
    judge: Judge | None = None,
) -> Calibration:
    """Run the calibration set through a backend, fit, store, and print a summary.

    The fit is stored only when :func:`~hybrid.routing.calibration.acceptance.review` accepts
    it; otherwise the summary is printed and the error says why.  The answers (and a judge's
    grades) are recorded whatever the fit's outcome, and those given before an interruption
    (Ctrl-C) too, so the next run asks only the rest.

    Args:
        backend: Answers the items (the local model's backend); a
            :class:`DeferredBackend` is opened only when an item is not in the record.
        home: The data dir; the model goes to ``home/calibration/<sha256>.json``.
        sha256: The GGUF file's SHA-256, the key the router looks the model up by.
        model_name: The model's id, for the summary and the stored metadata.
        options: Items, seed, output cap and held-out share.
        out: Where the summary goes.
        err: Where the progress bar goes.
        clock: Seconds, for the progress bar and the elapsed time.
        shipped: Folder of shipped calibrations (default: the package's), to name the one
            kept in use when the fit is refused.
        judge: Grades the answers to items with a rubric again (``--judge``); None keeps the
            automatic grades.

    Returns:
        The calibration (fitted model and held-out figures).

    Raises:
        ConfigError: ``options`` are out of range, or the data dir cannot be written.
        CalibrationRejectedError: The fit was not saved: too few held-out items, too few of
            them right or wrong, or a held-out AUROC below prompt length's.
        HybridError: The backend failed for a reason other than the prompt.
    """
    from hybrid import __version__
    from hybrid.errors import CalibrationRejectedError, ConfigError
    from hybrid.routing.calibration.acceptance import review
    from hybrid.routing.calibration.fitting import calibrate
    from hybrid.routing.calibration.items import calibration_set
    from hybrid.routing.calibration.record import load_record, split_reusable
    from hybrid.routing.calibration.runner import answer_items
    from hybrid.routing.difficulty.store import find, save

    items = calibration_set(options.seed, per_category=options.per_category)
    # The local backend also gives the model's vector of each prompt: the probe is fitted on it.
    if isinstance(backend, DeferredBackend):
        embed = backend.embeds
    else:
        embed = callable(getattr(backend, "prompt_embedding", None))
    recorded = load_record(home, sha256)
    earlier = None if options.rerun else recorded
    reused, missing = split_reusable(
        earlier, items, seed=options.seed, max_tokens=options.max_tokens, vectors=embed
    )
    if reused:
        print(
            f"reusing {len(reused)} of {len(items)} answers recorded by an earlier run "
            "(--rerun asks the model again)",
            file=err,
        )
    if missing and isinstance(backend, DeferredBackend):
        backend = await backend.open()
    started = clock()
    got = dict(reused)

    def keep(answer: ItemAnswer) -> None:
        got[answer.item_id] = answer

    if missing:
        assert not isinstance(backend, DeferredBackend)  # opened above
        bar = ProgressBar(err, "answering", clock=clock)
        try:
            await answer_items(
                backend,
                missing,
                max_tokens=options.max_tokens,
                progress=bar,
                embed=embed,
                on_answer=keep,
            )
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Interrupted (Ctrl-C): keep what was answered, so the next run asks only the rest.
            _keep_record(home, sha256, options, items, got, recorded)
            raise
        bar.finish()
    answers = [got[item.id] for item in items]
    elapsed = clock() - started
    if judge is not None:
        judging = ProgressBar(err, "judging", clock=clock)

        def graded(index: int, answer: ItemAnswer) -> None:
            got[answer.item_id] = answer

        try:
            report = await judge.regrade(items, answers, progress=judging, on_verdict=graded)
        except (KeyboardInterrupt, asyncio.CancelledError):
            _keep_record(home, sha256, options, items, got, recorded)  # the paid grades
            raise
        judging.finish()
        answers = list(report.answers)
        print(report.describe(judge.model), file=out)
    # Kept whatever the fit's outcome: a refused fit asks for a larger --per-category, and
    # that run reuses these answers (and any judge's grades) instead of asking again.
    _keep_record(home, sha256, options, items, {a.item_id: a for a in answers}, recorded)
    print("fitting the difficulty model ...", file=err, flush=True)
    meta = {
        "model": model_name,
        "model_sha256": sha256,
        "per_category": options.per_category,
        "max_tokens": options.max_tokens,
        "created": datetime.now(UTC).date().isoformat(),
        "hybrid_version": __version__,
    }
    calibration = calibrate(
        items,
        [answer.correct for answer in answers],
        seed=options.seed,
        held_out=options.held_out,
        meta=meta,
        vectors=[answer.embedding for answer in answers] if embed else None,
    )
    correct = [answer.correct for answer in answers]
    rejection = review(calibration)
    if rejection is not None:
        print(
            render_summary(
                calibration, items, correct, model_name, elapsed, None, reused=len(reused)
            ),
            file=out,
        )
        in_use: StoredModel | None = None
        damaged: str | None = None
        try:
            in_use = find(home, sha256, shipped=shipped)
        except ConfigError as exc:  # a damaged file in use: say so, the refusal still stands
            damaged = str(exc)
        raise CalibrationRejectedError(
            rejection_message(rejection, options.per_category, in_use, damaged)
        )
    path = save(home, sha256, calibration.model)
    print(
        render_summary(calibration, items, correct, model_name, elapsed, path, reused=len(reused)),
        file=out,
    )
    return calibration


def _keep_record(
    home: Path,
    sha256: str,
    options: CalibrateOptions,
    items: Sequence[CalibrationItem],
    answers: Mapping[str, ItemAnswer],
    earlier: AnswerRecord | None,
) -> None:
    """Store the answers of a run, with the earlier record's answers to items it did not ask.

    The record's ``per_category`` names the set it answers in full: this run's when every item
    was answered, else the earlier record's, so an interrupted run's record is reused item by
    item but never taken for a complete set.  An interrupted run does not replace a record made
    with another seed or output cap that holds more answers.
    """
    from hybrid.routing.calibration.record import AnswerRecord, save_record

    rows = [(item.prompt, answers[item.id]) for item in items if item.id in answers]
    complete = len(rows) == len(items)
    per_category = options.per_category
    if earlier is not None:
        if earlier.seed == options.seed and earlier.max_tokens == options.max_tokens:
            rows += [
                (prompt, answer)
                for prompt, answer in zip(earlier.prompts, earlier.answers, strict=True)
                if answer.item_id not in answers
            ]
            if not complete:
                per_category = earlier.per_category
        elif not complete and len(earlier.answers) >= len(rows):
            return
    if not rows:
        return
    save_record(
        home,
        AnswerRecord(
            model_sha256=sha256,
            seed=options.seed,
            per_category=per_category,
            max_tokens=options.max_tokens,
            prompts=tuple(prompt for prompt, _ in rows),
            answers=tuple(answer for _, answer in rows),
        ),
    )


def rejection_message(
    rejection: Rejection,
    per_category: int,
    in_use: StoredModel | None,
    damaged: str | None = None,
) -> str:
    """The error for a refused fit: what happened, what stays in use, and how to run again.

    Args:
        rejection: Why the fit was refused.
        per_category: The ``--per-category`` of the run.
        in_use: The calibration the router keeps using, if any.
        damaged: Why the file in use cannot be read, when it cannot.

    Returns:
        Sentences ending in a full stop.
    """
    if rejection.growth is not None:
        wanted = math.ceil(per_category * rejection.growth * _MARGIN)
    else:
        wanted = max(2 * per_category, DEFAULT_PER_CATEGORY)
    suggested = max(-(-wanted // 10) * 10, per_category + 10)
    if damaged is not None:
        kept = f"The calibration in use is unchanged, but unreadable: {damaged}"
    elif in_use is not None:
        kept = f"The router keeps using {in_use.describe()}."
    else:
        kept = (
            "No fit was written: this model still has no calibration, and the difficulty "
            "policy abstains."
        )
    return (
        f"calibration not saved: {rejection.message}. {kept} Run `hybrid calibrate` again "
        f"with --per-category {suggested} or more."
    )
