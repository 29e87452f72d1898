"""Measure transcript formats for base models on the calibration set, in one run.

A base model (no chat template in its GGUF) is prompted as a plain transcript
(:class:`hybrid.local.prompt.TranscriptFormat`).  This script loads the local model through
:class:`hybrid.local.runtime.LocalRuntime` once per candidate format, exactly as ``hybrid serve``
and ``hybrid calibrate`` load it, asks it a fixed, seeded, stratified sample of the calibration
set through the calibration runner (greedy decoding, answers end at their first line break), and
grades the answers with the calibration graders.  So the prompt measured is the prompt served.

It prints, per format: the tokens its header (preamble and examples) takes, the accuracy with a
95 % bootstrap interval, the paired difference to the ``plain`` baseline, how many wrong answers
copy an example, and how many answers end cleanly under the stop sequences ``hybrid serve``
uses (no line-break stop, a token cap); then the accuracy per category, and which format is
best: the most accurate one among those that rarely copy an example (:data:`MAX_COPY_SHARE`),
kept only when its paired interval against the baseline lies above zero.  The intervals come
from a bootstrap stratified by category (items redrawn within their category); the difference
to the baseline redraws the same items for both formats.

Usage:
    python scripts/eval_prompt.py [--per-category 20] [--seed 0] [--threads 1]
        [--formats fewshot-2,fewshot-3,...] [--answers answers.json]

``--per-category 60`` asks the whole set ``hybrid calibrate`` asks (about 4 minutes a format at
one thread for Gemma 3 270M).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random

import numpy as np

from hybrid.backend import Backend
from hybrid.cli.calibrate_report import ProgressBar
from hybrid.cli.calibrate_run import DEFAULT_MAX_TOKENS, DEFAULT_PER_CATEGORY
from hybrid.generation import GenerationRequest, SamplingParams
from hybrid.local.prompt import DEFAULT_TRANSCRIPT, TranscriptFormat
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.runner import ANSWER_SEED, ItemAnswer, answer_items
from hybrid.settings import Settings, load_settings

BASELINE = "plain"
_PREAMBLE = (
    "A conversation between a user and a helpful assistant. "
    "The assistant answers accurately and briefly."
)
# Example exchanges of the few-shot candidates: general questions, none of them a calibration
# item, each answer on one line.
_PAINTER = ("Who painted the Mona Lisa?", "Leonardo da Vinci.")
_FRENCH = ("Translate 'good night' into French.", "Bonne nuit.")
_CATERPILLAR = ("What do caterpillars turn into?", "Butterflies.")
_SUM = ("Add 12 and 30.", "12 + 30 = 42")

CANDIDATES: Mapping[str, TranscriptFormat] = {
    BASELINE: TranscriptFormat(_PREAMBLE),
    "instruction": TranscriptFormat(
        "A conversation between a user and an assistant. "
        "The assistant replies with the answer only, in a few words."
    ),
    "fewshot-2": TranscriptFormat(_PREAMBLE, (_PAINTER, _FRENCH)),
    "fewshot-3": TranscriptFormat(_PREAMBLE, (_PAINTER, _FRENCH, _CATERPILLAR)),
    "fewshot-worked": TranscriptFormat(_PREAMBLE, (_PAINTER, _SUM, _FRENCH)),
}
"""Candidate formats by name; :data:`BASELINE` is the preamble alone."""

DEFAULT_SAMPLE_PER_CATEGORY = 20
DEFAULT_SEED = 0
DEFAULT_THREADS = 1
DEFAULT_RESAMPLES = 2000
DEFAULT_ENDING_PER_CATEGORY = 2
MAX_COPY_SHARE = 0.02
"""A format whose answers repeat an example for more items than this share is not chosen: such
an answer shows the user text of the prompt they never wrote."""
# Example texts at least this long count as copied when an answer contains them; shorter ones
# ("2") only when the answer is nothing else.
_COPY_MIN_CHARS = 8
ENDING_MAX_TOKENS = 64
"""Token cap of the ending check: an answer still going here did not end by itself."""


@dataclass(frozen=True)
class FormatResult:
    """What one format did on the sample.

    Attributes:
        name: The format's name.
        header_tokens: Tokens of its header (preamble and examples), without BOS.
        answers: One graded answer per sampled item, in sample order.
        copies: Wrong answers that repeat an example's answer or question.
        clean_endings: Ending-check answers that ended by themselves (a stop sequence or
            end of turn) before :data:`ENDING_MAX_TOKENS`.
        ending_asked: Ending-check prompts asked.
        seconds: Wall time of the format's answers.
    """

    name: str
    header_tokens: int
    answers: tuple[ItemAnswer, ...]
    copies: int
    clean_endings: int
    ending_asked: int
    seconds: float

    @property
    def correct(self) -> np.ndarray:
        """1.0 for each item answered right, else 0.0."""
        return np.array([answer.correct for answer in self.answers], dtype=np.float64)


def formats_to_run(names: Sequence[str] | None) -> dict[str, TranscriptFormat]:
    """The candidates to measure, the baseline first.

    The shipped default is included as ``default`` unless it equals a candidate.

    Raises:
        SystemExit: A name is not a candidate.
    """
    known = dict(CANDIDATES)
    if DEFAULT_TRANSCRIPT not in known.values():
        known["default"] = DEFAULT_TRANSCRIPT
    chosen = list(known) if names is None else [BASELINE, *(n for n in names if n != BASELINE)]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return {name: known[name] for name in chosen}


def default_name(formats: Mapping[str, TranscriptFormat]) -> str | None:
    """The name under which the shipped default transcript runs, if it runs."""
    return next((name for name, fmt in formats.items() if fmt == DEFAULT_TRANSCRIPT), None)


def sample_items(seed: int, per_category: int) -> list[CalibrationItem]:
    """A stratified sample of the set ``hybrid calibrate`` asks by default.

    Args:
        seed: Seeds the set (as ``hybrid calibrate --seed``) and the draw from each category.
        per_category: Items drawn from each category (all of them at the calibrate default).

    Returns:
        ``per_category`` items of every category, in the set's order.
    """
    items = calibration_set(seed, per_category=max(per_category, DEFAULT_PER_CATEGORY))
    by_category: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_category.setdefault(item.category, []).append(index)
    rng = Random(seed)
    chosen = sorted(
        index
        for indices in by_category.values()
        for index in rng.sample(indices, min(per_category, len(indices)))
    )
    return [items[index] for index in chosen]


def copies_of_examples(fmt: TranscriptFormat, answers: Sequence[ItemAnswer]) -> int:
    """Wrong answers that repeat one of the format's example answers or questions."""
    shown = {_plain(text) for example in fmt.examples for text in example}
    long = [text for text in shown if len(text) >= _COPY_MIN_CHARS]

    def copies(text: str) -> bool:
        said = _plain(text)
        return said in shown or any(example in said for example in long)

    return sum(
        any(copies(text) for text in answer.texts) for answer in answers if not answer.correct
    )


def _plain(text: str) -> str:
    return text.strip().rstrip(".").casefold()


async def measure(
    backend: Backend,
    name: str,
    fmt: TranscriptFormat,
    items: Sequence[CalibrationItem],
    *,
    max_tokens: int,
    ending_per_category: int,
    count_tokens: Callable[[str], int],
    clock: Callable[[], float] = time.monotonic,
) -> FormatResult:
    """Ask one format's backend the sample and the ending check.

    Args:
        backend: The local model's backend, built with ``fmt``.
        name: The format's name, for the progress bar.
        fmt: The format the backend was built with.
        items: The sample.
        max_tokens: Output cap per graded answer.
        ending_per_category: Items of each category also asked with serve's own stops.
        count_tokens: The model's tokenizer (tokens in a text, no BOS).
        clock: Seconds.

    Returns:
        The format's figures.
    """
    started = clock()
    bar = ProgressBar(sys.stderr, f"{name:<15}", clock=clock)
    answers = await answer_items(backend, items, max_tokens=max_tokens, progress=bar)
    bar.finish()
    clean = 0
    ending = _ending_items(items, ending_per_category)
    for item in ending:
        request = GenerationRequest(
            request_id=f"ending-{item.id}",
            messages=item.messages,
            params=SamplingParams(max_tokens=ENDING_MAX_TOKENS, temperature=0.0, seed=ANSWER_SEED),
        )
        completion = await backend.complete(request)
        clean += completion.done.finish_reason == "stop"
    return FormatResult(
        name=name,
        header_tokens=count_tokens(fmt.header()),
        answers=tuple(answers),
        copies=copies_of_examples(fmt, answers),
        clean_endings=clean,
        ending_asked=len(ending),
        seconds=clock() - started,
    )


def _ending_items(items: Sequence[CalibrationItem], per_category: int) -> list[CalibrationItem]:
    taken: dict[str, int] = {}
    chosen = []
    for item in items:
        if taken.get(item.category, 0) < per_category:
            taken[item.category] = taken.get(item.category, 0) + 1
            chosen.append(item)
    return chosen


async def run_formats(
    settings: Settings,
    formats: Mapping[str, TranscriptFormat],
    items: Sequence[CalibrationItem],
    *,
    max_tokens: int,
    ending_per_category: int,
) -> list[FormatResult]:
    """Load the local model once per format, as ``hybrid serve`` does, and measure it.

    Raises:
        SystemExit: The model failed to load, or it has a chat template (no transcript).
    """
    from hybrid.local.runtime import LocalRuntime

    results = []
    for name, fmt in formats.items():
        runtime = LocalRuntime.for_settings(settings, transcript=fmt)
        await runtime.load()
        try:
            if runtime.loaded is None:
                raise SystemExit(f"the local model failed to load: {runtime.error}")
            if runtime.loaded.info.chat_template:
                raise SystemExit(
                    f"{runtime.loaded.path.name} has a chat template: it is prompted through "
                    "it, not through a transcript"
                )
            backend = runtime.backend()
            result = await measure(
                backend,
                name,
                fmt,
                items,
                max_tokens=max_tokens,
                ending_per_category=ending_per_category,
                count_tokens=backend.count_tokens,
            )
        finally:
            await runtime.close()
        results.append(result)
    return results


def bootstrap_indices(
    items: Sequence[CalibrationItem], resamples: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Stratified bootstrap draws.

    Returns:
        Per category: the indices of its items in ``items``, and ``(resamples, n)`` indices
        redrawn from them with replacement.
    """
    rng = np.random.default_rng(seed)
    by_category: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_category.setdefault(item.category, []).append(index)
    strata = {}
    for category, indices in by_category.items():
        members = np.asarray(indices)
        strata[category] = (
            members,
            members[rng.integers(0, len(members), (resamples, len(members)))],
        )
    return strata


def interval(
    values: np.ndarray, members: np.ndarray, draws: np.ndarray
) -> tuple[float, float, float]:
    """The mean of ``values`` over ``members``, and the 95 % percentile interval of the mean
    over the bootstrap ``draws``."""
    means = values[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values[members].mean()), float(low), float(high)


def verdict(results: Sequence[FormatResult], draws: np.ndarray) -> str:
    """The most accurate format that rarely copies an example, and whether it beats the
    baseline beyond the bootstrap's noise."""
    baseline = results[0]
    eligible = [r for r in results if r.copies <= MAX_COPY_SHARE * len(r.answers)]
    excluded = [r.name for r in results if r not in eligible]
    note = (
        f" ({', '.join(excluded)} not eligible: copies an example in over "
        f"{MAX_COPY_SHARE:.0%} of items)"
        if excluded
        else ""
    )
    best = max(eligible, key=lambda result: (result.correct.mean(), -result.header_tokens))
    if best is baseline:
        return f"Best: {baseline.name}; no eligible format beats it{note}."
    everything = np.arange(draws.shape[1])
    diff, low, high = interval(best.correct - baseline.correct, everything, draws)
    beyond = "beyond noise" if low > 0 else "within noise: keep the baseline"
    return (
        f"Best: {best.name}, {diff * 100:+.1f} points over {baseline.name} "
        f"(paired 95 % CI {low * 100:+.1f} to {high * 100:+.1f}): {beyond}{note}."
    )


def _pct(mean: float, low: float, high: float, *, digits: int = 1) -> str:
    return f"{mean:.{digits}%} ({low:.{digits}%}-{high:.{digits}%})"


def render(
    results: Sequence[FormatResult],
    items: Sequence[CalibrationItem],
    *,
    default: str | None,
    resamples: int,
    seed: int,
) -> str:
    """The report: a table per format, a table per category, the verdict."""
    strata = bootstrap_indices(items, resamples, seed)
    everything = np.arange(len(items))
    draws = np.concatenate([stratum_draws for _, stratum_draws in strata.values()], axis=1)
    baseline = results[0]
    lines = [
        "| format | header tokens (+ vs plain) | accuracy (95% CI) | vs plain (paired 95% CI) "
        "| wrong answers copying an example | clean endings | time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        label = result.name + (" (default)" if result.name == default else "")
        added = result.header_tokens - baseline.header_tokens
        if result is baseline:
            versus = "baseline"
        else:
            diff, low, high = interval(result.correct - baseline.correct, everything, draws)
            versus = f"{diff * 100:+.1f} ({low * 100:+.1f} to {high * 100:+.1f})"
        lines.append(
            f"| {label} | {result.header_tokens} ({added:+d}) | "
            f"{_pct(*interval(result.correct, everything, draws))} | {versus} | {result.copies} | "
            f"{result.clean_endings}/{result.ending_asked} | {result.seconds:.0f} s |"
        )
    lines += [
        "",
        "| category | n | " + " | ".join(result.name for result in results) + " |",
        "|---|---:|" + "---:|" * len(results),
    ]
    for category, (members, category_draws) in strata.items():
        cells = [
            _pct(*interval(result.correct, members, category_draws), digits=0) for result in results
        ]
        lines.append(f"| {category} | {len(members)} | " + " | ".join(cells) + " |")
    lines += ["", verdict(results, draws)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--per-category",
        type=int,
        default=DEFAULT_SAMPLE_PER_CATEGORY,
        help=f"items drawn per category (default {DEFAULT_SAMPLE_PER_CATEGORY}; "
        f"{DEFAULT_PER_CATEGORY} is the whole calibration set)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="set and sample seed")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="CPU threads")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the one serve loads)")
    parser.add_argument(
        "--formats",
        help=f"comma-separated formats (default: all of {', '.join(formats_to_run(None))})",
    )
    parser.add_argument(
        "--ending-per-category",
        type=int,
        default=DEFAULT_ENDING_PER_CATEGORY,
        help="items per category also asked with serve's own stops (default "
        f"{DEFAULT_ENDING_PER_CATEGORY})",
    )
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES)
    parser.add_argument("--answers", type=Path, help="write every answer here (JSON)")
    args = parser.parse_args()
    if args.per_category < 1 or args.threads < 1 or args.resamples < 1:
        parser.error("--per-category, --threads and --resamples must be at least 1")

    formats = formats_to_run(args.formats.split(",") if args.formats else None)
    cli: dict[str, object] = {
        "local.n_threads": args.threads,
        # The bandwidth probe only predicts speed; it changes nothing measured here.
        "probe.measure_bandwidth": False,
    }
    if args.model:
        cli["local.model"] = args.model
    settings = load_settings(cli=cli).settings
    items = sample_items(args.seed, args.per_category)
    prompts = sum(len(item.presentations) for item in items)
    results = asyncio.run(
        run_formats(
            settings,
            formats,
            items,
            max_tokens=args.max_tokens,
            ending_per_category=args.ending_per_category,
        )
    )
    if args.answers:
        record = {
            result.name: {answer.item_id: answer.to_json() for answer in result.answers}
            for result in results
        }
        args.answers.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(
        f"Sample: {len(items)} items ({args.per_category} per category, seed {args.seed}) of "
        f"`hybrid calibrate`'s set, {prompts} prompts per format (a multiple-choice item is "
        "asked in every option order and is right only when all are); greedy, "
        f"{args.max_tokens} tokens, {args.threads} thread(s). 95 % CIs: bootstrap stratified "
        f"by category, {args.resamples} resamples.\n"
    )
    print(
        render(
            results,
            items,
            default=default_name(formats),
            resamples=args.resamples,
            seed=args.seed,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
