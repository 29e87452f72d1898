"""``scripts/eval_prompt.py``: the sample, the copy count and the choice of a format."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from calibration_fakes import FunctionBackend
from scripts_import import script as script_module

from hybrid.errors import HybridError
from hybrid.local.prompt import TranscriptFormat
from hybrid.routing.calibration.items import CATEGORIES, calibration_set
from hybrid.routing.calibration.runner import ItemAnswer

FEW_SHOT = TranscriptFormat("Q and A.", (("Who painted the Mona Lisa?", "Leonardo da Vinci."),))


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    with script_module("eval_prompt") as module:
        yield module


def test_the_sample_takes_the_same_items_of_every_category_from_calibrates_set(
    script: ModuleType,
) -> None:
    sample = script.sample_items(0, 5)
    assert Counter(item.category for item in sample) == {category: 5 for category in CATEGORIES}
    full = {item.id: item for item in calibration_set(0, per_category=60)}
    assert all(full[item.id] == item for item in sample)
    assert script.sample_items(0, 5) == sample
    assert script.sample_items(1, 5) != sample


def test_wrong_answers_that_repeat_an_example_are_counted_as_copies(script: ModuleType) -> None:
    answers = [
        ItemAnswer("a", ("Leonardo da Vinci.",), False),
        ItemAnswer("b", ("I think leonardo da vinci",), False),
        ItemAnswer("c", ("Paris.",), False),
        ItemAnswer("d", ("Leonardo da Vinci.",), True),
    ]
    assert script.copies_of_examples(FEW_SHOT, answers) == 2
    assert script.copies_of_examples(TranscriptFormat("Q and A."), answers) == 0


def result(script: ModuleType, name: str, correct: list[bool], copies: int = 0) -> object:
    answers = tuple(ItemAnswer(str(i), ("x",), ok) for i, ok in enumerate(correct))
    return script.FormatResult(name, 10, answers, copies, 0, 0, 0.0)


def draws(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, n, (2000, n))


def test_a_clear_gain_is_chosen_and_a_small_one_keeps_the_baseline(script: ModuleType) -> None:
    plain = result(script, "plain", [False] * 100)
    better = result(script, "better", [True] * 30 + [False] * 70)
    slightly = result(script, "slightly", [True] + [False] * 99)
    assert "Best: better, +30.0 points" in script.verdict([plain, better, slightly], draws(100))
    assert "within noise: keep the baseline" in script.verdict([plain, slightly], draws(100))


def test_a_format_that_copies_its_examples_is_not_chosen(script: ModuleType) -> None:
    plain = result(script, "plain", [False] * 100)
    copier = result(script, "copier", [True] * 40 + [False] * 60, copies=10)
    honest = result(script, "honest", [True] * 20 + [False] * 80, copies=1)
    text = script.verdict([plain, copier, honest], draws(100))
    assert text.startswith("Best: honest") and "copier not eligible" in text


def test_each_format_is_graded_and_checked_for_a_clean_ending(script: ModuleType) -> None:
    items = [item for item in calibration_set(0, per_category=2) if item.category == "chat"]

    def answer(prompt: str) -> str | HybridError:
        return "Leonardo da Vinci."

    backend = FunctionBackend(answer)
    measured = asyncio.run(
        script.measure(
            backend,
            "few-shot",
            FEW_SHOT,
            items,
            max_tokens=24,
            ending_per_category=1,
            count_tokens=lambda text: len(text.split()),
        )
    )
    assert [a.correct for a in measured.answers] == [False, False]
    assert measured.copies == 2 and measured.ending_asked == 1 and measured.clean_endings == 1
    assert measured.header_tokens == len(FEW_SHOT.header().split())
    # The graded requests end at the first line break; the ending check uses serve's stops only.
    assert [r.params.stop for r in backend.requests] == [("\n",), ("\n",), ()]
