"""Asking a backend the calibration items, grading, and keeping the answers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
from calibration_fakes import FunctionBackend

from hybrid.errors import ContextLengthExceededError, HybridError, QueueFullError
from hybrid.routing.calibration.item import Number
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.record import (
    AnswerRecord,
    load_record,
    record_path,
    save_record,
)
from hybrid.routing.calibration.runner import answer_items, run_items

ITEMS = [i for i in calibration_set(0, per_category=3) if i.category in ("chat", "choice")]
CHAT = [i for i in ITEMS if i.category == "chat"]


def say_hello(prompt: str) -> str | HybridError:
    return "Hello!"


def test_every_presentation_is_asked_greedily_and_progress_counts_them() -> None:
    backend = FunctionBackend(say_hello)
    progress: list[tuple[int, int]] = []
    asyncio.run(
        answer_items(backend, ITEMS, max_tokens=16, progress=lambda d, t: progress.append((d, t)))
    )
    total = sum(len(item.presentations) for item in ITEMS)
    assert total == 3 + 3 * 4  # three chat items, three four-order choice items
    assert len(backend.requests) == total
    assert progress[-1] == (total, total) and len(progress) == total
    params = {r.params for r in backend.requests}
    assert len(params) == 1
    (used,) = params
    assert used.temperature == 0.0 and used.max_tokens == 16 and used.seed is not None


def test_answers_are_graded_per_item() -> None:
    items = calibration_set(0, per_category=4)
    arithmetic = [i for i in items if i.category == "arithmetic"]
    right = {i.prompt: f"{i.answer.value:g}" for i in arithmetic if isinstance(i.answer, Number)}
    assert len(right) == len(arithmetic)
    backend = FunctionBackend(lambda prompt: right.get(prompt, "???"))
    grades = asyncio.run(run_items(backend, items, max_tokens=8, progress=lambda d, t: None))
    assert grades == [item.category == "arithmetic" for item in items]


def test_a_prompt_the_backend_cannot_take_counts_as_wrong() -> None:
    too_long = ContextLengthExceededError(prompt_tokens=9000, max_tokens=16, context_length=8192)
    backend = FunctionBackend(lambda prompt: too_long)
    answers = asyncio.run(
        answer_items(backend, CHAT[:1], max_tokens=16, progress=lambda d, t: None)
    )
    assert answers[0].texts == ("",) and not answers[0].correct


def test_a_backend_failure_that_is_not_the_prompt_s_fault_stops_the_run() -> None:
    backend = FunctionBackend(lambda prompt: QueueFullError(depth=4, retry_after=1.0))
    with pytest.raises(QueueFullError):
        asyncio.run(answer_items(backend, ITEMS, max_tokens=16, progress=lambda d, t: None))


def record_of(answers_text: str = "Hello!") -> AnswerRecord:
    answers = asyncio.run(
        answer_items(
            FunctionBackend(lambda prompt: answers_text),
            ITEMS,
            max_tokens=16,
            progress=lambda d, t: None,
        )
    )
    return AnswerRecord(
        model_sha256="ab" * 32,
        seed=0,
        per_category=3,
        max_tokens=16,
        prompts=tuple(item.prompt for item in ITEMS),
        answers=tuple(answers),
    )


def test_a_record_round_trips_and_serves_the_same_items_only(tmp_path: Path) -> None:
    record = record_of()
    path = save_record(tmp_path, record)
    assert path == record_path(tmp_path, "ab" * 32)
    loaded = load_record(tmp_path, "ab" * 32)
    assert loaded == record
    assert loaded.answers_for(ITEMS) == list(record.answers)
    # Answers are matched by item id and prompt: a larger record serves fewer items, in their
    # order, and a record missing an item (an interrupted run's) serves none.
    assert loaded.answers_for(ITEMS[:-1]) == list(record.answers[:-1])
    assert loaded.answers_for(list(reversed(ITEMS))) == list(reversed(record.answers))
    partial = dataclasses.replace(record, prompts=record.prompts[:-1], answers=record.answers[:-1])
    assert partial.answers_for(ITEMS) is None
    changed = dataclasses.replace(record, prompts=("another prompt", *record.prompts[1:]))
    assert changed.answers_for(ITEMS) is None


def test_a_missing_or_damaged_record_reads_as_none(tmp_path: Path) -> None:
    assert load_record(tmp_path, "cd" * 32) is None
    path = save_record(tmp_path, record_of())
    data = json.loads(path.read_text())
    data["answers"][0]["correct"] = "yes"
    path.write_text(json.dumps(data))
    assert load_record(tmp_path, "ab" * 32) is None


def test_answers_are_graded_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # A coding item's answer runs in a sandboxed interpreter for up to its time limit: graded
    # on the event loop, it would stall a server that calibrates in the background.
    from hybrid.routing.calibration import runner

    graded_on_loop: list[bool] = []
    grade = runner.grade_all

    def recording(item: object, texts: list[str]) -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            graded_on_loop.append(False)
        else:
            graded_on_loop.append(True)
        return grade(item, texts)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "grade_all", recording)
    asyncio.run(
        answer_items(FunctionBackend(say_hello), CHAT, max_tokens=8, progress=lambda d, t: None)
    )
    assert graded_on_loop == [False] * len(CHAT)
