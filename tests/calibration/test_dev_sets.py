"""scripts/external_sets.py's held-back development sets: read from the wheel's layout (made-up
rows here), gradable, and none of them an external or a traffic set."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from scripts_import import script

from hybrid.routing.calibration.grading import grade
from hybrid.routing.calibration.item import CalibrationItem, Choice, Words
from hybrid.routing.choices import offered


@pytest.fixture(scope="module")
def external() -> Iterator[ModuleType]:
    with script("external_sets") as module:
        yield module


def write_task(root: Path, task: str, docs: list[dict[str, Any]], *, native: bool = True) -> None:
    path = root / "oe_eval_tasks" / task / "requests.jsonl.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for number, doc in enumerate(docs):
            row = {"native_id": f"q{number}" if native else None, "doc_id": number, "doc": doc}
            out.write(json.dumps(row) + "\n")


def only(external: ModuleType, root: Path, name: str) -> CalibrationItem:
    items = external.load_set(name, n=10, seed=0, root=root)
    assert len(items) == 1
    return items[0]  # type: ignore[no-any-return]


def test_the_development_sets_are_neither_external_nor_traffic_sets(external: ModuleType) -> None:
    dev = external.DEV_SETS
    assert len(dev) == 7
    for other in (external.SETS, external.TRAFFIC_SETS):
        assert not set(dev) & set(other)
        assert not {s.task.split("/")[0] for s in dev.values()} & {
            s.task.split("/")[0] for s in other.values()
        }


def test_a_yes_no_set_asks_for_yes_or_no_and_grades_the_first_mention(
    external: ModuleType, tmp_path: Path
) -> None:
    doc = {
        "evidence": ["We report macro F1 in Table 3."],
        "question": "Does the paper report macro F1?",
        "answer": "Yes",
    }
    unanswerable = {"evidence": [], "question": "Is it?", "answer": "Yes"}
    write_task(tmp_path, "qasper_yesno/rc_5shot", [doc, unanswerable])

    item = only(external, tmp_path, "qasper_yesno")

    assert item.prompt.endswith("Does the paper report macro F1?\nAnswer yes or no.")
    assert offered(item.messages) == frozenset({"yes", "no"})
    assert isinstance(item.answer, Words)
    assert grade(item, "Yes, it does.", presentation=0)
    assert not grade(item, "No.", presentation=0)


@pytest.mark.parametrize(
    ("name", "task", "doc", "letters"),
    [
        (
            "piqa",
            "piqa/rc_0shot",
            {"query": "Goal: Dry a wet phone.\nAnswer:", "choices": ["rice", "oven"], "gold": 0},
            2,
        ),
        (
            "socialiqa",
            "socialiqa/rc_0shot",
            {
                "query": "Question: How would Lee feel?\nAnswer:",
                "choices": ["a", "b", "c"],
                "gold": 2,
            },
            3,
        ),
        (
            "medmcqa",
            "medmcqa/rc_5shot",
            {"query": "Question: Which nerve?\nAnswer:", "choices": list("wxyz"), "gold": 1},
            4,
        ),
    ],
)
def test_option_sets_ask_every_ordering_of_their_options(
    external: ModuleType, tmp_path: Path, name: str, task: str, doc: dict[str, Any], letters: int
) -> None:
    write_task(tmp_path, task, [doc])

    item = only(external, tmp_path, name)

    assert isinstance(item.answer, Choice) and item.kind == "choice"
    assert len(item.presentations) == letters == len(item.answer.letters)
    assert "Answer:" not in item.prompt and "Goal:" not in item.prompt
    assert offered(item.messages) == frozenset("abcd"[:letters])
    for presentation, right in enumerate(item.answer.letters):
        assert grade(item, f"{right})", presentation=presentation)
    assert not grade(item, "Z", presentation=0)


def test_winogrande_fills_a_blank_and_is_read_once_per_row_without_a_native_id(
    external: ModuleType, tmp_path: Path
) -> None:
    docs = [
        {
            "sentence": f"Sarah was a better surgeon than Maria so _ got the easier cases ({n}).",
            "option1": "Sarah",
            "option2": "Maria",
            "answer": "2",
        }
        for n in range(3)
    ]
    write_task(tmp_path, "winogrande/rc_0shot", docs, native=False)

    items = external.load_set("winogrande", n=10, seed=0, root=tmp_path)

    assert len(items) == 3  # one per row, keyed by doc_id
    item = items[0]
    assert item.prompt.startswith("Fill in the blank: Sarah was a better surgeon than Maria so ___")
    assert isinstance(item.answer, Choice) and item.answer.options[0] == ("Sarah", "Maria")
    assert item.answer.letters == ("B", "A")  # Maria, in either ordering


def test_trivia_and_story_questions_are_short_answers(external: ModuleType, tmp_path: Path) -> None:
    clue = {
        "query": "Category: SCIENCE\nQuestion: It travels 1,129 feet per second\nAnswer:",
        "answer": "sound",
    }
    write_task(tmp_path, "jeopardy/bpb_5shot", [clue])
    story = "Cotton was a little white kitten who lived in a barn."
    turns = [
        {
            "id": "s1_turn0",
            "story": story,
            "question": "What color was Cotton?",
            "answers": ["white"],
        },
        {"id": "s1_turn1", "story": story, "question": "Where?", "answers": ["in a barn"]},
    ]
    write_task(tmp_path, "coqa/bpb_0shot", turns)

    clue_item = only(external, tmp_path, "jeopardy")
    assert clue_item.prompt == "Category: SCIENCE\nQuestion: It travels 1,129 feet per second"
    assert grade(clue_item, "Sound.", presentation=0)
    story_item = only(external, tmp_path, "coqa")  # the first turn only
    assert story_item.prompt == f"{story}\n\nWhat color was Cotton?"
    assert grade(story_item, "White", presentation=0) and offered(story_item.messages) is None


def test_option_sets_keep_items_the_graders_can_read(external: ModuleType, tmp_path: Path) -> None:
    four = {"query": "Question: Which?\nAnswer:", "choices": list("wxyz"), "gold": 0}
    three = {"query": "Question: Which of three?\nAnswer:", "choices": list("xyz"), "gold": 0}
    five = {"query": "Question: Which one?\nAnswer:", "choices": list("vwxyz"), "gold": 0}
    write_task(tmp_path, "arc_easy/rc_0shot", [four, three, five])
    write_task(tmp_path, "medmcqa/rc_5shot", [five, three])

    # The external check's option sets keep four options; none reads a fifth letter (E).
    item = only(external, tmp_path, "arc_easy")
    assert isinstance(item.answer, Choice) and len(item.answer.letters) == 4
    item = only(external, tmp_path, "medmcqa")
    assert isinstance(item.answer, Choice) and len(item.answer.letters) == 3
