"""How well shadow comparisons label local answers, and what the router learns from their labels.

A shadow comparison (``routing.learn.shadow_rate``, ``routing.learn.local_shadow_rate``) grades a
local answer against the cloud's answer to the same request, by word overlap when no judge is
configured (:func:`hybrid.routing.agreement.grade_overlap`).  This script measures those labels on
the local answers that ``scripts/eval_router.py`` recorded (generated, external and traffic
items, whose right grade is known).  No cloud answer can be asked here, so each item's
reference answer stands in for the cloud's, phrased three ways:

- the reference alone ("Madrid");
- the question restated, then the reference ("What is the capital of Spain Madrid."), as
  chat models often answer;
- "The answer is" and the reference.

Each is graded two ways: the whole answers compared (as before), and against the question (only
the words each answer adds to the question compared, as ``grade_overlap`` does now).  For each,
the share of local answers labelled good, how many of those were wrong, and how many of the right
answers were labelled good.

Then the learning replay of ``scripts/eval_router.py`` (:func:`router_learning.learn_from_traffic`,
labels drawn from every request, as ``routing.learn.local_shadow_rate`` gives them) is run with
the labels those comparisons give instead of the grades, and the router's AUROC on held-out
traffic (scored by the grades) is reported beside the replay with the grades.

Usage:
    python scripts/shadow_grading.py [--seed 0] [--repeats 5] [--external 200]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from eval_router import served_model
from external_sets import TRAFFIC_SETS, load_all
from probe_pooling import calibration_items, labels
from router_folds import Labelled, mean_range
from router_learning import EVERY, Learned, learn_from_traffic

from hybrid.cli.calibrate_run import DEFAULT_PER_CATEGORY, DEFAULT_SEED
from hybrid.generation import GenerationRequest
from hybrid.routing.agreement import asked, grade_overlap, question_of
from hybrid.routing.calibration.item import (
    CalibrationItem,
    Choice,
    Code,
    Constraint,
    KeyFacts,
    Literal,
    Number,
    Text,
    Words,
)
from hybrid.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = 0.5
"""``routing.learn.shadow_agreement``'s default."""

STAND_INS: dict[str, Callable[[str, str], str]] = {
    "the reference alone": lambda question, reference: reference,
    "the question restated, then the reference": (
        lambda question, reference: f"{question.rstrip('?.! ')} {reference}."
    ),
    '"The answer is" and the reference': lambda question, reference: f"The answer is {reference}.",
}
"""How the stand-in cloud answer is phrased: name to (the request's question, reference)."""

GRADERS = ("whole answers", "against the question")
REPLAYED = (
    "the question restated, then the reference",
    '"The answer is" and the reference',
)
"""The stand-ins the learning replay is run with (the reference alone grades the same both
ways, and nearly as the grades do)."""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-category", type=int, default=DEFAULT_PER_CATEGORY)
    parser.add_argument("--external", type=int, default=200, help="items per external set")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--repeats", type=int, default=5, help="draws per number of labels")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "shadow-grading.md")
    args = parser.parse_args()

    settings = load_settings().settings
    path, sha256 = served_model(settings)
    data = {
        "generated": labels(
            settings, sha256, "answers", calibration_items(args.seed, args.per_category)
        ),
        "external": labels(settings, sha256, "external", load_all(n=args.external, seed=args.seed)),
        "traffic": labels(
            settings,
            sha256,
            "traffic",
            load_all(n=args.external, seed=args.seed, sets=TRAFFIC_SETS),
        ),
    }
    graded = {name: shadow_labels(collection) for name, collection in data.items()}
    replays: dict[str, list[Learned]] = {}
    replays["the grades"], _ = learn_from_traffic(
        data["generated"], data["traffic"], seed=args.seed, repeats=args.repeats, pools=(EVERY,)
    )
    for stand_in in REPLAYED:
        for grader in GRADERS:
            good = graded["traffic"][(stand_in, grader)]
            told = np.where(np.isnan(good), data["traffic"].wrong, 1.0 - np.nan_to_num(good))
            print(f"replaying with {stand_in}, {grader}", file=sys.stderr)
            replays[f"{stand_in}, {grader}"], _ = learn_from_traffic(
                data["generated"],
                data["traffic"],
                seed=args.seed,
                repeats=args.repeats,
                pools=(EVERY,),
                told=told,
            )
    report = render(data, graded, replays, model=path.stem, sha256=sha256, args=args)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    return 0


def reference(item: CalibrationItem) -> str | None:
    """A right answer to the item as text (None where its grader has no single one)."""
    answer = item.answer
    if isinstance(answer, Words | Text):
        return answer.accepted[0]
    if isinstance(answer, Number):
        value = answer.value
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(answer, Literal):
        return answer.bare if answer.bare is not None else answer.text
    if isinstance(answer, Choice):
        return answer.letters[0]
    if isinstance(answer, KeyFacts | Constraint | Code):
        return answer.example or None
    return None


def shadow_labels(data: Labelled) -> dict[tuple[str, str], np.ndarray]:
    """Each item's shadow label (1: good; NaN where it has no reference or no answer) for
    every stand-in and grader."""
    out = {(s, g): np.full(len(data.items), np.nan) for s in STAND_INS for g in GRADERS}
    for index, (item, answer) in enumerate(zip(data.items, data.answers, strict=True)):
        right = reference(item)
        if right is None or not answer:
            continue
        request = GenerationRequest(request_id=item.id, messages=item.presentations[0])
        question = question_of(asked(request))
        for stand_in, phrase in STAND_INS.items():
            cloud = phrase(question, right)
            whole = grade_overlap(answer, cloud, threshold=THRESHOLD)
            against = grade_overlap(answer, cloud, threshold=THRESHOLD, question=question)
            out[(stand_in, GRADERS[0])][index] = whole.good
            out[(stand_in, GRADERS[1])][index] = against.good
    return out


def label_row(good: np.ndarray, wrong: np.ndarray) -> str:
    """n, share labelled good, wrong among those, right ones labelled good."""
    known = ~np.isnan(good)
    good, right = good[known] == 1, wrong[known] == 0
    labelled = int(good.sum())
    wrong_share = (good & ~right).sum() / labelled if labelled else float("nan")
    found = (good & right).sum() / right.sum() if right.any() else float("nan")
    return f"{int(known.sum())} | {good.mean():.0%} | {wrong_share:.0%} | {found:.0%}"


def render(
    data: dict[str, Labelled],
    graded: dict[str, dict[tuple[str, str], np.ndarray]],
    replays: dict[str, list[Learned]],
    *,
    model: str,
    sha256: str,
    args: argparse.Namespace,
) -> str:
    rows = "\n".join(
        f"| {name} | {stand_in} | {grader} | "
        f"{label_row(graded[name][(stand_in, grader)], d.wrong)} |"
        for name, d in data.items()
        for stand_in in STAND_INS
        for grader in GRADERS
    )
    ks = [row.labels for row in replays["the grades"]]
    head = " | ".join(f"k = {k}" for k in ks)
    replay_rows = "\n".join(
        f"| {name} | "
        + " | ".join(mean_range(row.recent) for row in learned)
        + " | "
        + " | ".join(mean_range(row.unrefitted) for row in learned[1:])
        + " |"
        for name, learned in replays.items()
    )
    unrefitted_head = " | ".join(f"k = {k}, no refit" for k in ks[1:])
    return f"""# Shadow labels: how well word overlap grades local answers

Generated by `python scripts/shadow_grading.py` on {datetime.now(UTC).date().isoformat()}.
Model `{model}.gguf`, sha256 `{sha256}`. The local answers are those `scripts/eval_router.py`
recorded ([router-eval.md](router-eval.md)): {len(data["generated"].items)} generated items,
{len(data["external"].items)} external, {len(data["traffic"].items)} traffic, with their grades.

No cloud answer can be asked here: each item's reference answer stands in for the cloud's,
phrased three ways. *Whole answers*: the two answers compared whole (`grade_overlap` without the
question, as shadow comparisons graded before); *against the question*: only the words each adds
to the request's question compared, where the cloud's answer adds any (as they grade now). The
rule was written after reading these answers, so these figures are not blind to it.

## Labels

*Labelled good*: share of the local answers graded good (threshold {THRESHOLD}, the default
`routing.learn.shadow_agreement`); *wrong among them*: of those, the share the item's grader
marks wrong; *right found*: of the right answers, the share graded good. Items without an
answer are left out.

| items | stand-in cloud answer | graded | n | labelled good | wrong among them | right found |
|---|---|---|---:|---:|---:|---:|
{rows}

## What the router learns from them

The learning replay of [router-eval.md](router-eval.md) (*Learning from traffic*, labels drawn
from every request, as `routing.learn.local_shadow_rate` gives them): *k* requests of each
traffic set labelled, the router refitted (adopted only when it ranks the labelled requests
better), and both stages as `hybrid serve` decides scored on the same held-out requests by their
grades; *no refit*: the labels only read beside (`routing.difficulty.labelled_neighbours`). The
first row labels with the grades; the others with what each shadow comparison says. AUROC, mean
over {args.repeats} draws and in brackets the lowest and the highest.

| labels from | {head} | {unrefitted_head} |
|---|{"---|" * (2 * len(ks) - 1)}
{replay_rows}
"""


if __name__ == "__main__":
    sys.exit(main())
