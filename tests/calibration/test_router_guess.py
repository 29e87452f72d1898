"""The report's check of the guess rule: every collection read with and without it, and the
rule for adopting it, fixed before the development sets were read."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from scripts_import import script

from hybrid.generation import Message
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.metrics import auroc


@pytest.fixture(scope="module")
def guess() -> Iterator[ModuleType]:
    with script("router_guess") as module:
        yield module


def check(guess: ModuleType, halved: float, every_set: float = 0.0, kept: float = 0.02) -> object:
    """A collection's reading: each step's gain over (0.60, 0.62)."""
    return guess.GuessCheck(
        10,
        0.5,
        0.2,
        (0.60, 0.62),
        (0.60 + every_set, 0.62 + every_set),
        (0.60 + halved, 0.62 + halved),
        (0.60 + halved + kept, 0.62 + halved + kept),
        (0.1,),
        (0.1,),
    )


def test_both_steps_are_adopted_only_when_the_development_sets_gain_and_nothing_else_loses(
    guess: ModuleType,
) -> None:
    def adopted(dev: object, lofo: object, traffic: object) -> bool:
        checks = {
            "LOFO": lofo,
            guess.DEVELOPMENT: dev,
            "traffic": traffic,
            "external": check(guess, -0.2),  # the external check never decides
        }
        return bool(guess.adopted(checks))

    same = check(guess, 0.0, kept=0.0)
    assert adopted(check(guess, 0.02), check(guess, -0.004, kept=0.0), same)
    assert not adopted(check(guess, 0.005), same, same)  # the first step gains too little
    assert not adopted(check(guess, 0.02, kept=0.005), same, same)  # the second does
    assert not adopted(check(guess, 0.02), check(guess, -0.01), same)
    assert not adopted(check(guess, 0.02), same, check(guess, 0.0, kept=-0.01))
    # The other form ranks the development sets better: not the one shipped.
    assert not adopted(check(guess, 0.02, every_set=0.03), same, same)
    assert adopted(check(guess, 0.02, every_set=-0.01), same, same)
    assert not guess.adopted({"LOFO": check(guess, 0.1)})  # no development sets
    reading = check(guess, 0.02)
    assert reading.gain == pytest.approx(0.04)  # type: ignore[attr-defined]
    assert reading.halved_gain == pytest.approx(0.02)  # type: ignore[attr-defined]
    assert reading.kept_gain == pytest.approx(0.02)  # type: ignore[attr-defined]


def test_each_collection_is_read_without_the_rule_and_with_each_form(guess: ModuleType) -> None:
    with script("router_folds") as folds:
        items = calibration_set(0, per_category=6)
        facts = [i for i, item in enumerate(items) if item.category == "facts"]
        for i in facts[:3]:  # three facts asked as yes or no
            items[i] = dataclasses.replace(
                items[i], messages=(Message("user", f"{items[i].prompt}\nAnswer yes or no."),)
            )
        rng = np.random.default_rng(0)
        wrong = (rng.random(len(items)) < 0.5).astype(np.float64)
        data = folds.Labelled(items, wrong, rng.normal(size=(len(items), 8)))
        test = data.subset(np.arange(0, len(items), 2))
        read = folds.fit_and_read(data.subset(np.arange(1, len(items), 2)), test, seed=0)

        test = folds.Labelled(
            test.items,
            test.wrong,
            test.vectors,
            ("Yes",) * len(test.items),
            np.full(len(test.items), 0.2),
        )
        result = guess.guess_check(read, test, orders=range(3))

        shipped = test.discarded(0.35)
        weighed = guess.every_answer_weighed(test)
        plain = dataclasses.replace(read, guess=None)
        every = dataclasses.replace(read, guess=guess.every_set_factors(test.items))

        def aurocs(reader: object, flag: np.ndarray) -> tuple[float, ...]:
            return tuple(
                auroc(guess.cascaded(reader.recent(s)["two-stage+recent"], flag), test.wrong)  # type: ignore[attr-defined]
                for s in range(3)
            )

        assert result.with_rule == aurocs(read, shipped)
        assert result.halved == aurocs(read, weighed)
        assert result.without == aurocs(plain, weighed)
        assert result.every_set == aurocs(every, weighed)
        # Every answer is unsure (0.2): the weighed cascade discards each one that is an
        # answer; the shipped one keeps the answers of yes to questions asking for yes or no.
        yes_no = folds.guess_factors(test.items) < 1
        assert weighed.all() and not shipped[yes_no].any() and shipped[~yes_no].all()
        halved = folds.guess_factors(test.items) < 1
        offering = guess.every_set_factors(test.items) < 1
        assert result.two_way == pytest.approx(halved.mean()) and 0 < result.two_way
        assert result.offering == pytest.approx(offering.mean())
        assert result.offering > result.two_way
        # Only the yes-or-no items are moved by the shipped form.
        moved = read.recent(0)["two-stage+recent"] != plain.recent(0)["two-stage+recent"]
        assert moved.any() and not (moved & ~halved).any()


def test_the_section_says_whether_the_rule_met_its_adoption_rule(guess: ModuleType) -> None:
    with script("router_folds") as folds:
        items = calibration_set(0, per_category=2)[:4]
        data = folds.Labelled(items, np.array([1.0, 0.0, 1.0, 1.0]), np.zeros((4, 2)))
    sets = {"piqa": ("PIQA (validation)", "two ways to a goal", "AFL-3.0", "Bisk et al. 2020")}

    def section(dev: float) -> str:
        checks = {"LOFO": check(guess, 0.0, kept=0.0), guess.DEVELOPMENT: check(guess, dev)}
        return str(guess.guess_section(checks, data, sets))

    met, missed = section(0.02), section(0.0)
    assert "Both steps met their rule, and are on by default." in met
    assert "did **not** both meet their rule" in missed and "yes_no = false" in missed
    row = "| development | 10 | 50% | 20% | 0.610 (0.600-0.620) | 0.610 (0.600-0.620) "
    assert row + "| 0.630 (0.620-0.640) | 0.650 (0.640-0.660) | +0.040 |" in met
    assert "changed the development\nsets' figure by +0.000." in met
    assert "such questions: none)" in met  # no confidence known: no figure
    assert "| piqa | PIQA (validation) | two ways to a goal | AFL-3.0 | Bisk et al. 2020 |" in met
    family = items[0].category
    share = data.wrong[[item.category == family for item in items]].mean()
    assert f"| {family} | " in met and f"{share:.0%}" in met


def test_the_summary_gives_each_collection_without_the_rule_and_with_it(
    guess: ModuleType,
) -> None:
    line = guess.guess_summary(
        {"LOFO": check(guess, 0.0, kept=0.0), guess.DEVELOPMENT: check(guess, 0.05)}
    )
    text = " ".join(line.split())
    assert text.startswith("- A prompt asking for yes or no")
    assert "LOFO 0.610 to 0.610, development 0.610 to 0.680" in text
    assert "(#yes-or-no-a-guess-is-right-half-the-time)" in text
    assert guess.guess_summary({}) == ""
