"""Evaluate the difficulty router on held-out calibration items; write docs/router-eval.md.

Uses the same harness as ``hybrid calibrate`` (items, runner, features, fitting): the model is
fitted on the training split and every figure below is measured on the held-out split only.
The local model's answers are reused from the record ``hybrid calibrate`` left in the data dir
when it matches the model, seed and items; otherwise (or with ``--rerun``) the local model is
run and the record written.

It compares four routers, each escalating the requests it scores highest first:

- calibrated: the difficulty model's score;
- random: every score equal (the expected curve over random orders, the diagonal);
- length: the prompt's length in characters, longest first;
- oracle: escalates exactly the requests the local model got wrong.

and reports AUROC (score vs "local answer wrong"), APGR, CPT(50%), CPT(80%) and the cloud share
needed for 95 % of all-cloud quality (cloud answers count as right), the quality-vs-escalated
curve (SVG), a per-category table, the same figures over several re-drawn splits, and the
feature extraction time.

Usage:
    python scripts/eval_router.py [--per-category 60] [--seed 0] [--rerun] [--splits 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import platform
import statistics
import sys
import timeit
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import svg_chart
from svg_chart import Series

from hybrid.cli.calibrate import (
    DEFAULT_HELD_OUT,
    DEFAULT_MAX_TOKENS,
    DEFAULT_PER_CATEGORY,
    DEFAULT_SEED,
    ProgressBar,
)
from hybrid.generation import Message
from hybrid.routing.calibration.fitting import Calibration, calibrate, prompt_length
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import RoutingCurve, auroc, routing_curve
from hybrid.routing.calibration.record import AnswerRecord, load_record, save_record
from hybrid.routing.calibration.runner import ItemAnswer, answer_items
from hybrid.routing.difficulty.features import extract
from hybrid.routing.difficulty.store import gguf_sha256
from hybrid.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
QUALITY_TARGET = 0.95


@dataclass(frozen=True)
class RouterResult:
    """One router's figures on the held-out split."""

    name: str
    scores: np.ndarray
    curve: RoutingCurve
    auroc: float

    @property
    def apgr(self) -> float:
        return self.curve.apgr()

    def cpt(self, recovered: float) -> float:
        return self.curve.cpt(recovered)

    @property
    def share_for_target(self) -> float:
        return self.curve.share_for_quality(QUALITY_TARGET)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-category", type=int, default=DEFAULT_PER_CATEGORY)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the one serve loads)")
    parser.add_argument("--rerun", action="store_true", help="ask the model even if recorded")
    parser.add_argument("--splits", type=int, default=5, help="re-drawn splits for the spread")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="report folder")
    args = parser.parse_args()

    cli = {"local.model": args.model} if args.model else {}
    settings = load_settings(cli=cli).settings
    from hybrid.models.catalog import resolve_model

    path = resolve_model(settings, progress=lambda line: print(line, file=sys.stderr))
    sha256 = gguf_sha256(path, progress=lambda line: print(line, file=sys.stderr))
    items = calibration_set(args.seed, per_category=args.per_category)
    answers, source = _answers(settings, path, sha256, items, args)
    correct = [answer.correct for answer in answers]
    calibration = calibrate(items, correct, seed=args.seed, held_out=DEFAULT_HELD_OUT)
    routers = evaluate_routers(calibration)
    spread = split_spread(items, correct, seeds=range(args.seed, args.seed + args.splits))
    timing = feature_timing()

    args.out.mkdir(parents=True, exist_ok=True)
    plot_path = args.out / "router-eval.svg"
    write_plot(routers, calibration, plot_path)
    report = render_report(
        calibration=calibration,
        routers=routers,
        items=items,
        correct=correct,
        spread=spread,
        timing=timing,
        model_name=path.stem,
        sha256=sha256,
        source=source,
        args=args,
        plot_name=plot_path.name,
    )
    (args.out / "router-eval.md").write_text(report, encoding="utf-8")
    print(main_table(routers))
    print(f"\nwrote {args.out / 'router-eval.md'} and {plot_path}")
    return 0


def _answers(
    settings: Settings,
    path: Path,
    sha256: str,
    items: list[CalibrationItem],
    args: argparse.Namespace,
) -> tuple[list[ItemAnswer], str]:
    """The local model's answers: from the calibration record, or by running the model."""
    record = None if args.rerun else load_record(settings.home, sha256)
    if (
        record is not None
        and record.seed == args.seed
        and record.max_tokens == args.max_tokens
        and (answers := record.answers_for(items)) is not None
    ):
        return answers, "reused from the `hybrid calibrate` record"
    answers = asyncio.run(_run_model(settings, items, args.max_tokens))
    save_record(
        settings.home,
        AnswerRecord(
            model_sha256=sha256,
            seed=args.seed,
            per_category=args.per_category,
            max_tokens=args.max_tokens,
            prompts=tuple(item.prompt for item in items),
            answers=tuple(answers),
        ),
    )
    return answers, "produced by the local model in this run"


async def _run_model(
    settings: Settings, items: list[CalibrationItem], max_tokens: int
) -> list[ItemAnswer]:
    from hybrid.local.runtime import LocalRuntime

    runtime = LocalRuntime.for_settings(settings)
    await runtime.load()
    try:
        bar = ProgressBar(sys.stderr, "answering")
        answers = await answer_items(runtime.backend(), items, max_tokens=max_tokens, progress=bar)
        bar.finish()
        return answers
    finally:
        await runtime.close()


def evaluate_routers(calibration: Calibration) -> list[RouterResult]:
    """The four routers' figures on the held-out split."""
    wrong = calibration.held_out_wrong
    candidates = {
        "calibrated": calibration.held_out_scores,
        "random": np.zeros(len(wrong)),
        "length": np.array([prompt_length(item) for item in calibration.held_out]),
        "oracle": wrong.astype(np.float64),
    }
    return [
        RouterResult(name, scores, routing_curve(scores, wrong), auroc(scores, wrong))
        for name, scores in candidates.items()
    ]


def split_spread(
    items: list[CalibrationItem], correct: list[bool], *, seeds: Sequence[int] | range
) -> dict[str, list[float]]:
    """AUROC and APGR of the calibrated and the length router over re-drawn splits."""
    figures: dict[str, list[float]] = {
        "calibrated AUROC": [],
        "length AUROC": [],
        "calibrated APGR": [],
        "length APGR": [],
    }
    for seed in seeds:
        calibration = calibrate(items, correct, seed=seed, held_out=DEFAULT_HELD_OUT)
        wrong = calibration.held_out_wrong
        lengths = np.array([prompt_length(item) for item in calibration.held_out])
        figures["calibrated AUROC"].append(calibration.held_out_auroc)
        figures["length AUROC"].append(auroc(lengths, wrong))
        figures["calibrated APGR"].append(routing_curve(calibration.held_out_scores, wrong).apgr())
        figures["length APGR"].append(routing_curve(lengths, wrong).apgr())
    return figures


def feature_timing() -> dict[str, float]:
    """Median microseconds of one feature extraction, for a short and an 8k-token prompt."""
    short = [Message("user", "What is the capital of France?")]
    paragraph = (
        "Please explain step by step why the derivative of x**2 is 2x, and then compare it "
        "with the integral. Write the answer as a short proof, with code in Python:\n"
        "```python\ndef f(x):\n    return x * x\n```\n"
    )
    long_text = (paragraph * (32_000 // len(paragraph) + 1))[:32_000]  # ~8k tokens
    long = [
        Message("system", "You are a careful assistant."),
        Message("user", long_text[:16_000]),
        Message("assistant", "Noted."),
        Message("user", long_text[16_000:]),
    ]
    result = {}
    for name, messages in (("short prompt", short), ("8k-token conversation", long)):
        runs = timeit.repeat(functools.partial(extract, messages), number=200, repeat=9)
        result[name] = statistics.median(runs) / 200 * 1e6
    return result


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def main_table(routers: list[RouterResult]) -> str:
    oracle = next(r for r in routers if r.name == "oracle")
    headroom = oracle.apgr - 0.5
    header = (
        "| router | AUROC | APGR | APGR gain, share of the oracle's | CPT(50%) | CPT(80%) "
        "| cloud share for 95% quality |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r.name} | {_num(r.auroc)} | {_num(r.apgr)} | "
        f"{_pct((r.apgr - 0.5) / headroom) if headroom > 0 else 'n/a'} | {_pct(r.cpt(0.5))} | "
        f"{_pct(r.cpt(0.8))} | {_pct(r.share_for_target)} |"
        for r in routers
    ]
    return "\n".join([header, *rows])


def threshold_table(calibration: Calibration) -> str:
    scores, wrong = calibration.held_out_scores, calibration.held_out_wrong
    default = calibration.model.threshold
    lines = ["| threshold | escalated | quality |", "|---:|---:|---:|"]
    for threshold in sorted({0.5, 0.7, 0.8, 0.9, 0.95, round(default, 3)}):
        escalated = scores > threshold
        quality = float(np.mean(np.where(escalated, 1.0, 1.0 - wrong)))
        label = f"{threshold:.3f} (default)" if threshold == round(default, 3) else f"{threshold}"
        lines.append(f"| {label} | {float(escalated.mean()):.0%} | {quality:.0%} |")
    return "\n".join(lines)


def category_table(calibration: Calibration) -> str:
    threshold = calibration.model.threshold
    rows: dict[str, list[tuple[bool, float]]] = {}
    for item, wrong, score in zip(
        calibration.held_out,
        calibration.held_out_wrong,
        calibration.held_out_scores,
        strict=True,
    ):
        rows.setdefault(item.category, []).append((not wrong, float(score)))
    lines = [
        "| category | n | local accuracy | mean score | escalated at the default threshold |",
        "|---|---:|---:|---:|---:|",
    ]
    for category, entries in rows.items():
        right = [ok for ok, _ in entries]
        scores = [s for _, s in entries]
        lines.append(
            f"| {category} | {len(entries)} | {sum(right) / len(right):.0%} | "
            f"{statistics.mean(scores):.2f} | "
            f"{sum(s > threshold for s in scores) / len(scores):.0%} |"
        )
    all_scores = calibration.held_out_scores
    lines.append(
        f"| **all** | {len(all_scores)} | "
        f"{1 - float(calibration.held_out_wrong.mean()):.0%} | {float(all_scores.mean()):.2f} | "
        f"{float((all_scores > threshold).mean()):.0%} |"
    )
    return "\n".join(lines)


def write_plot(routers: list[RouterResult], calibration: Calibration, path: Path) -> None:
    """Write the quality and PGR curves of every router as an SVG figure."""
    styles = {
        "calibrated": ("#1f77b4", "-"),
        "random": ("#7f7f7f", "--"),
        "length": ("#ff7f0e", "-."),
        "oracle": ("#2ca02c", ":"),
    }
    quality = [
        Series(
            f"{router.name} (APGR {router.apgr:.2f})",
            list(router.curve.shares * 100),
            list(router.curve.quality),
            *styles[router.name],
        )
        for router in routers
    ]
    threshold = calibration.model.threshold
    share = float((calibration.held_out_scores > threshold).mean())
    calibrated = next(r for r in routers if r.name == "calibrated")
    quality.append(
        Series(
            f"default threshold {threshold:.2f}",
            [share * 100],
            [calibrated.curve.quality_at(share)],
            styles["calibrated"][0],
            dots=True,
        )
    )
    pgr = [
        Series(
            router.name,
            list(router.curve.shares * 100),
            list(router.curve.pgr()),
            *styles[router.name],
        )
        for router in routers
        if router.name != "random"
    ]
    pgr.append(Series("random", [0, 100], [0, 1], *styles["random"]))
    escalated = "requests escalated to the cloud (%)"
    figure = svg_chart.render(
        [
            svg_chart.Panel(
                "Quality vs. escalation, held-out items",
                escalated,
                "quality (share answered right)",
                quality,
                x_range=(0, 100),
                hlines=[QUALITY_TARGET],
            ),
            svg_chart.Panel(
                "PGR; CPT(x) is where a curve crosses x",
                escalated,
                "performance gap recovered (PGR)",
                pgr,
                x_range=(0, 100),
                hlines=[0.5, 0.8],
            ),
        ]
    )
    path.write_text(figure, encoding="utf-8")


def render_report(
    *,
    calibration: Calibration,
    routers: list[RouterResult],
    items: list[CalibrationItem],
    correct: list[bool],
    spread: dict[str, list[float]],
    timing: dict[str, float],
    model_name: str,
    sha256: str,
    source: str,
    args: argparse.Namespace,
    plot_name: str,
) -> str:
    model = calibration.model
    by_name = {r.name: r for r in routers}
    calibrated, length = by_name["calibrated"], by_name["length"]
    spread_lines = [
        f"| {name} | {statistics.mean(values):.3f} | "
        f"{statistics.stdev(values) if len(values) > 1 else 0.0:.3f} | "
        f"{min(values):.3f} | {max(values):.3f} |"
        for name, values in spread.items()
    ]
    wins = sum(
        c > l_ for c, l_ in zip(spread["calibrated AUROC"], spread["length AUROC"], strict=True)
    )
    timing_lines = [f"| {name} | {micros:.0f} us |" for name, micros in timing.items()]
    escalated = float((calibration.held_out_scores > model.threshold).mean())
    oracle = by_name["oracle"]
    return f"""# Router evaluation: the difficulty model on {model_name}

Generated by `python scripts/eval_router.py` on {datetime.now(UTC).date().isoformat()}
({platform.machine()}, {platform.python_implementation()} {platform.python_version()}).
Model `{model_name}.gguf`, sha256 `{sha256}`.

The calibration set has {len(items)} generated items ({args.per_category} per category, seed
{args.seed}); the local model got {sum(correct)} ({sum(correct) / len(correct):.0%}) right.
Answers were {source}. The difficulty model was fitted on the {len(calibration.train)}
training items (penalty and threshold chosen by 5-fold cross-validation inside them);
**every figure below is measured on the {len(calibration.held_out)} held-out items only**.

## Summary

{main_table(routers)}

At its default threshold ({model.threshold:.3f}) the calibrated router escalates
{escalated:.0%} of the held-out requests, for a quality (share of all requests answered right)
of {calibrated.curve.quality_at(escalated):.0%}, against
{calibrated.curve.local_quality:.0%} all-local and 100 % all-cloud. Other thresholds
(`routing.difficulty.threshold`) trade quality for cost:

{threshold_table(calibration)}

The calibrated router's held-out AUROC is {calibrated.auroc:.3f}, against
{length.auroc:.3f} for the length rule and 0.5 for a random router; its APGR is
{calibrated.apgr:.3f} against {length.apgr:.3f} (length) and 0.5 (random). Over
{len(spread["calibrated AUROC"])} re-drawn train/held-out splits it beat the length rule's
AUROC in {wins} of them (table below).

![Quality and PGR against the share of requests escalated]({plot_name})

The oracle's APGR is only {oracle.apgr:.3f} because the local model is wrong on
{1 - oracle.curve.local_quality:.0%} of the held-out items: even a perfect router must escalate
that share to recover the whole gap (an oracle's APGR is 1 - error rate / 2), so APGR gains
are small in absolute terms here; the *APGR gain* column puts each router's gain over random
as a share of the oracle's.

## Definitions

Cloud answers are taken to be right (quality 1). A router escalates the requests it scores
highest; *quality* at a cloud share is the share of all requests answered right. As in
RouteLLM: *PGR* = (quality - local quality) / (cloud quality - local quality); *APGR* is the
area under PGR over the cloud share from 0 to 1 (0.5 for a random router); *CPT(x%)* is the
smallest cloud share whose PGR reaches x %. The *cloud share for 95% quality* is the smallest
share at which quality reaches 95 % of the all-cloud quality. Requests with equal scores are
escalated as a group in random order, so the random router is exactly the diagonal (its
expected curve) and a router with ties is credited with its expected quality. AUROC is the
probability that a request the local model got wrong scores above one it got right.

## Per category (held-out)

Default threshold {model.threshold:.3f}: requests scoring above it go to the cloud.

{category_table(calibration)}

## Spread over re-drawn splits

The same items and answers, split again with seeds {args.seed} to
{args.seed + args.splits - 1}; the model refitted on each training part.

| figure | mean | sd | min | max |
|---|---:|---:|---:|---:|
{chr(10).join(spread_lines)}

## Feature extraction time

Median of one `extract()` call on this machine (scoring adds one dot product).

| prompt | time |
|---|---:|
{chr(10).join(timing_lines)}

## Caveats

- The held-out items are new draws from the same generators as the training items, not real
  traffic; the figures say how well the score separates this model's right and wrong answers
  on prompts of these kinds, not how it transfers to other prompts.
- {model_name} is a small base model and gets most items wrong, so the default threshold
  escalates most requests: for it, keeping a request local is rarely the right call. A user
  who prefers cost to quality raises the threshold (`routing.difficulty.threshold`).
- The model's answers are noisy (it may get "What colour is grass?" right and "Please: What
  colour is grass?" wrong); no prompt-only score can separate those, which bounds the AUROC.
- With {len(calibration.held_out)} held-out items the AUROC has a standard error of a few
  hundredths; the split spread above shows how much it moves.
"""


if __name__ == "__main__":
    sys.exit(main())
