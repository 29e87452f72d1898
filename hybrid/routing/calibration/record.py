"""The answers of a calibration run, kept beside the fitted model so evaluation can reuse them.

Running the local model is the slow part of calibrating; ``scripts/eval_router.py`` reads
``<home>/calibration/<sha256>.answers.json`` instead of asking the model again when the record
was made with the same model, seed and items (each answer carries its item's prompt, so a
change to the generators invalidates old records rather than mislabelling them).  An answer
may carry the local model's vector of the item's prompt (``"embedding"``), which the probe is
fitted on; records without it still load.  Other item sets (the external evaluation sets of
``scripts/eval_router.py``) keep their own records beside it, ``<sha256>.<name>.json``.

:func:`load_record` reads a record as a cache (a damaged one counts as none: the model is asked
again); :func:`read_record` says that a damaged one is damaged, for ``hybrid calibrate
--from-ledger``, which has no model to ask.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid.errors import ConfigError
from hybrid.routing.calibration.grading import grade_all
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.runner import ItemAnswer
from hybrid.routing.difficulty.store import write_atomic

FORMAT = "hybrid.calibration-answers"


@dataclass(frozen=True)
class AnswerRecord:
    """What the local model answered to a calibration set.

    Attributes:
        model_sha256: The GGUF file's SHA-256.
        seed: The calibration seed.
        per_category: Items per category.
        max_tokens: Output cap per answer.
        prompts: Each item's prompt (its last user message), in order.
        answers: Each item's answers and grade, in the same order.
    """

    model_sha256: str
    seed: int
    per_category: int
    max_tokens: int
    prompts: tuple[str, ...]
    answers: tuple[ItemAnswer, ...]

    def answers_for(self, items: Sequence[CalibrationItem]) -> list[ItemAnswer] | None:
        """The recorded answers to these items, if the record holds one to every item.

        An answer counts for an item when both its id and its prompt match, so a record that
        also holds answers to other items (a larger run's) serves a smaller set, and one that
        misses an item (an interrupted run's) is never taken for a complete one.

        Returns:
            The answers in the order of ``items``; None when an item has no answer.
        """
        known = {
            (answer.item_id, prompt): answer
            for prompt, answer in zip(self.prompts, self.answers, strict=True)
        }
        found = [known.get((item.id, item.prompt)) for item in items]
        if any(answer is None for answer in found):
            return None
        return [answer for answer in found if answer is not None]

    def reusable(self, *, seed: int, max_tokens: int) -> dict[tuple[str, str], ItemAnswer]:
        """The answers by (item id, prompt), for reuse item by item.

        Args:
            seed: The seed the caller's items were drawn with.
            max_tokens: The caller's output cap.

        Returns:
            Every answer when the record was made with this seed and cap; nothing otherwise.
        """
        if seed != self.seed or max_tokens != self.max_tokens:
            return {}
        return {
            (answer.item_id, prompt): answer
            for prompt, answer in zip(self.prompts, self.answers, strict=True)
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "format": FORMAT,
            "model_sha256": self.model_sha256,
            "seed": self.seed,
            "per_category": self.per_category,
            "max_tokens": self.max_tokens,
            "answers": [
                {**answer.to_json(), "prompt": prompt}
                for prompt, answer in zip(self.prompts, self.answers, strict=True)
            ],
        }

    @classmethod
    def from_json(cls, data: object) -> AnswerRecord:
        """Rebuild a record from :meth:`to_json` output.

        Raises:
            ConfigError: The data is not a well-formed answer record.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError("this is not a hybrid calibration answer record")
        try:
            rows = data["answers"]
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise TypeError("answers is not a list of objects")
            prompts = tuple(str(row["prompt"]) for row in rows)
            return cls(
                model_sha256=str(data["model_sha256"]),
                seed=int(data["seed"]),
                per_category=int(data["per_category"]),
                max_tokens=int(data["max_tokens"]),
                prompts=prompts,
                answers=tuple(ItemAnswer.from_json(row) for row in rows),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"the calibration answer record is damaged ({exc})") from exc


def record_path(home: Path, sha256: str, name: str = "answers") -> Path:
    """``home / "calibration" / f"{sha256}.{name}.json"`` (``name`` "answers": the
    calibration set's record)."""
    return home / "calibration" / f"{sha256}.{name}.json"


def split_reusable(
    record: AnswerRecord | None,
    items: Sequence[CalibrationItem],
    *,
    seed: int,
    max_tokens: int,
    vectors: bool,
    confidence: bool = False,
) -> tuple[dict[str, ItemAnswer], list[CalibrationItem]]:
    """Which items a record already answers, and which the model must still be asked.

    A reused answer to an item graded automatically is graded again by this version's graders,
    so a grader fixed since the record was made counts; one to an item with a rubric keeps the
    grade it was recorded with (a judge's, when ``--judge`` graded it).  An answer that no longer
    fits its item (another number of presentations) is asked again.

    Args:
        record: The record (None: nothing to reuse).
        items: The items of this run.
        seed: The seed they were drawn with.
        max_tokens: This run's output cap.
        vectors: The run needs each prompt's vector; answers recorded without one are asked
            again.
        confidence: The run needs each answer's confidence; answers recorded without one are
            asked again, unless their first presentation's answer is empty (no token to be sure
            of, or a prompt the model cannot take).

    Returns:
        The reusable answers by item id, and the items left to ask, in the order of ``items``.
    """
    known = {} if record is None else record.reusable(seed=seed, max_tokens=max_tokens)
    reused: dict[str, ItemAnswer] = {}
    for item in items:
        answer = known.get((item.id, item.prompt))
        if answer is None or (answer.embedding is None and vectors):
            continue
        if confidence and answer.confidence is None and answer.texts[:1] != ("",):
            continue
        if item.rubric is None:
            try:
                correct = grade_all(item, answer.texts)
            except ValueError:
                continue  # the item is asked another number of times now
            answer = dataclasses.replace(answer, correct=correct)
        reused[item.id] = answer
    return reused, [item for item in items if item.id not in reused]


def save_record(home: Path, record: AnswerRecord, name: str = "answers") -> Path:
    """Store a record beside its model's calibration, atomically; returns the path."""
    path = record_path(home, record.model_sha256, name)
    write_atomic(path, json.dumps(record.to_json(), indent=1, ensure_ascii=False) + "\n")
    return path


def read_record(home: Path, sha256: str, name: str = "answers") -> AnswerRecord | None:
    """The record for a model, or None when there is none; a damaged one is an error.

    For a caller that must not take a damaged record for a missing one (``hybrid calibrate
    --from-ledger`` would otherwise refit as if no answers had been recorded).  The file is
    only read, never moved or rewritten.

    Raises:
        ConfigError: The file exists but cannot be read, is not JSON, or is not an answer
            record; the message names it and says what to do.
    """
    path = record_path(home, sha256, name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8
        raise _damaged(path, exc) from exc
    try:
        return AnswerRecord.from_json(json.loads(text))
    except (ValueError, ConfigError) as exc:
        raise _damaged(path, exc) from exc


def load_record(home: Path, sha256: str, name: str = "answers") -> AnswerRecord | None:
    """The record for a model, or None when there is none or it cannot be read."""
    try:
        return read_record(home, sha256, name)
    except ConfigError:
        # Only a cache: an unreadable record means asking the model again.
        return None


_REASON_CHARS = 200
"""How much of the reason a damaged record's message quotes (a malformed answer is quoted
whole, prompt vector included)."""


def _damaged(path: Path, exc: Exception) -> ConfigError:
    reason = str(exc)
    if len(reason) > _REASON_CHARS:
        reason = reason[: _REASON_CHARS - 3] + "..."
    return ConfigError(
        f"the recorded calibration answers {path} are damaged ({reason}). Run `hybrid "
        "calibrate` to record them again (it replaces the file), or move the file out of the "
        "way to go on without them; hybrid leaves it as it is."
    )
