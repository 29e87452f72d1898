"""Generators of the numeric categories: arithmetic, unit conversion, counting, reasoning.

Each generator draws one item from a :class:`random.Random`; difficulty is graded inside each
category (one-digit sums up to three-digit products, short lists up to long ones) so that the
difficulty model has something to learn within a category as well as across them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from random import Random

from hybrid.routing.calibration.facts import (
    ANIMALS,
    DAYS,
    FRUITS,
    MONTHS,
    NAMES,
    WORDS,
)
from hybrid.routing.calibration.item import CalibrationItem, Number, Words, ask, draft

_Level = Callable[[Random], tuple[str, float]]


def _digits(rng: Random, n: int) -> int:
    """A random number of exactly ``n`` digits, avoiding 0 and 1 (too easy to echo)."""
    return rng.randint(max(2, 10 ** (n - 1)), 10**n - 1)


def _add(rng: Random, left: int, right: int) -> tuple[str, float]:
    a, b = _digits(rng, left), _digits(rng, right)
    template = rng.choice(
        ("What is {a} + {b}?", "What is {a} plus {b}?", "Compute {a} + {b}.", "{a} + {b} = ?")
    )
    return template.format(a=a, b=b), a + b


def _subtract(rng: Random, left: int, right: int) -> tuple[str, float]:
    a, b = _digits(rng, left), _digits(rng, right)
    a, b = max(a, b), min(a, b)
    template = rng.choice(
        ("What is {a} - {b}?", "What is {a} minus {b}?", "Subtract {b} from {a}.")
    )
    return template.format(a=a, b=b), a - b


def _multiply(rng: Random, left: int, right: int) -> tuple[str, float]:
    a, b = _digits(rng, left), _digits(rng, right)
    template = rng.choice(
        (
            "What is {a} * {b}?",
            "What is {a} times {b}?",
            "Calculate {a} \u00d7 {b}.",  # the multiplication sign
            "How much is {a} multiplied by {b}?",
        )
    )
    return template.format(a=a, b=b), a * b


def _divide(rng: Random) -> tuple[str, float]:
    b, quotient = rng.randint(2, 9), rng.randint(2, 12)
    template = rng.choice(("What is {a} / {b}?", "What is {a} divided by {b}?"))
    return template.format(a=b * quotient, b=b), quotient


def _two_steps(rng: Random) -> tuple[str, float]:
    a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 9)
    if rng.random() < 0.5:
        return f"What is {a} + {b} * {c}?", a + b * c
    return f"What is ({a} + {b}) * {c}?", (a + b) * c


def _three_steps(rng: Random) -> tuple[str, float]:
    a, b, c, d = (rng.randint(2, 20) for _ in range(4))
    return (
        f"Compute {a} * {b} - {c} + {d}. First multiply, then subtract, then add.",
        a * b - c + d,
    )


_ARITHMETIC_LEVELS: tuple[_Level, ...] = (
    lambda rng: _add(rng, 1, 1),
    lambda rng: _add(rng, 2, 1),
    lambda rng: _add(rng, 2, 2),
    lambda rng: _add(rng, 3, 3),
    lambda rng: _subtract(rng, 2, 1),
    lambda rng: _subtract(rng, 3, 2),
    lambda rng: _multiply(rng, 1, 1),
    lambda rng: _multiply(rng, 2, 1),
    lambda rng: _multiply(rng, 2, 2),
    lambda rng: _multiply(rng, 3, 3),
    _divide,
    _two_steps,
    _three_steps,
)


def arithmetic(rng: Random) -> CalibrationItem:
    """An arithmetic question, from one-digit sums to three-digit products."""
    text, value = rng.choice(_ARITHMETIC_LEVELS)(rng)
    return draft(ask(text), Number(value), "number")


# (from unit, to unit, factor, whether the factor is exact)
_CONVERSIONS: tuple[tuple[str, str, float, bool], ...] = (
    ("kilometers", "meters", 1000, True),
    ("meters", "centimeters", 100, True),
    ("centimeters", "millimeters", 10, True),
    ("kilograms", "grams", 1000, True),
    ("liters", "milliliters", 1000, True),
    ("hours", "minutes", 60, True),
    ("minutes", "seconds", 60, True),
    ("days", "hours", 24, True),
    ("weeks", "days", 7, True),
    ("feet", "inches", 12, True),
    ("yards", "feet", 3, True),
    ("dozens", "items", 12, True),
    ("miles", "kilometers", 1.609344, False),
    ("inches", "centimeters", 2.54, False),
    ("pounds", "kilograms", 0.45359237, False),
    ("kilograms", "pounds", 2.20462262, False),
    ("gallons", "liters", 3.78541, False),
)


def units(rng: Random) -> CalibrationItem:
    """A unit conversion: exact factors (hours to minutes) or rounded ones (miles to km)."""
    if rng.random() < 0.12:
        celsius = rng.choice((0, 10, 20, 25, 30, 37, 40, 100))
        text = f"What is {celsius} degrees Celsius in degrees Fahrenheit?"
        return draft(ask(text), Number(celsius * 9 / 5 + 32, tolerance=0.01), "number")
    source, target, factor, exact = rng.choice(_CONVERSIONS)
    amount = rng.choice((2, 3, 4, 5, 6, 8, 10, 12, 15, 25, 40))
    template = rng.choice(
        (
            "Convert {n} {source} to {target}.",
            "How many {target} are in {n} {source}?",
            "{n} {source} is how many {target}?",
        )
    )
    text = template.format(n=amount, source=source, target=target)
    # Rounded factors accept 2 %: a model that knows 1 mile is about 1.6 km is right.
    return draft(ask(text), Number(amount * factor, tolerance=0.0 if exact else 0.02), "number")


def _letters(rng: Random) -> tuple[str, float]:
    word = rng.choice(WORDS)
    letter = rng.choice(sorted(set(word)))
    template = rng.choice(
        (
            "How many times does the letter '{c}' appear in the word '{w}'?",
            "How many {c}'s are in the word {w}?",
            "Count the letter {c} in '{w}'.",
        )
    )
    return template.format(c=letter, w=word), word.count(letter)


def _length(rng: Random) -> tuple[str, float]:
    word = rng.choice(WORDS)
    return f"How many letters are in the word '{word}'?", len(word)


def _list_items(rng: Random) -> tuple[str, float]:
    kind, pool = rng.choice((("fruits", FRUITS), ("animals", ANIMALS), ("names", NAMES)))
    chosen = rng.sample(pool, rng.randint(2, 9))
    template = rng.choice(
        ("How many {kind} are in this list: {items}?", "Count the {kind}: {items}.")
    )
    return template.format(kind=kind, items=", ".join(chosen)), len(chosen)


def _sentence_words(rng: Random) -> tuple[str, float]:
    pool = (*ANIMALS, *FRUITS, "the", "a", "big", "red")
    words = [rng.choice(pool) for _ in range(rng.randint(3, 9))]
    return f'How many words are in the sentence "{" ".join(words)}"?', len(words)


def _vowels(rng: Random) -> tuple[str, float]:
    word = rng.choice(WORDS)
    return f"How many vowels are in the word '{word}'?", sum(c in "aeiou" for c in word)


_COUNTING: tuple[_Level, ...] = (_letters, _length, _list_items, _sentence_words, _vowels)


def counting(rng: Random) -> CalibrationItem:
    """Counting letters in a word, items in a list or words in a sentence."""
    text, value = rng.choice(_COUNTING)(rng)
    return draft(ask(text), Number(value), "number")


def _sequence(rng: Random) -> CalibrationItem:
    if rng.random() < 0.7:
        start, step = rng.randint(1, 30), rng.randint(1, 12)
        terms = [start + step * i for i in range(rng.randint(4, 5))]
        following = terms[-1] + step
    else:
        start, ratio = rng.randint(1, 5), rng.choice((2, 3))
        terms = [start * ratio**i for i in range(4)]
        following = terms[-1] * ratio
    template = rng.choice(
        (
            "What is the next number in the sequence {s}, ...?",
            "Continue the pattern: {s}, ?",
            "What number comes next: {s}?",
        )
    )
    text = template.format(s=", ".join(str(t) for t in terms))
    return draft(ask(text), Number(following), "number")


def _compare(rng: Random) -> CalibrationItem:
    a, b = rng.sample(range(2, 10 ** rng.randint(1, 4)), 2)
    larger = rng.random() < 0.5
    word = "larger" if larger else "smaller"
    text = rng.choice(("Which is {w}, {a} or {b}?", "Which number is {w}: {a} or {b}?"))
    answer = max(a, b) if larger else min(a, b)
    return draft(ask(text.format(w=word, a=a, b=b)), Number(answer, position="first"), "number")


def _day_offset(rng: Random) -> CalibrationItem:
    start, offset = rng.randrange(7), rng.choice((1, 1, 2, 3, 4, 5, 9, 10, 15, 20))
    if rng.random() < 0.75:
        label = "tomorrow" if offset == 1 else f"in {offset} days"
        text = f"If today is {DAYS[start]}, what day of the week will it be {label}?"
        target = DAYS[(start + offset) % 7]
    else:
        label = "yesterday" if offset == 1 else f"{offset} days ago"
        text = f"If today is {DAYS[start]}, what day of the week was it {label}?"
        target = DAYS[(start - offset) % 7]
    return draft(ask(text), Words((target,), DAYS), "word")


def _month_offset(rng: Random) -> CalibrationItem:
    start, offset = rng.randrange(12), rng.choice((1, 1, 2, 3, 5))
    if offset == 1:
        text = f"Which month comes after {MONTHS[start]}?"
    else:
        text = f"Which month is {offset} months after {MONTHS[start]}?"
    return draft(ask(text), Words((MONTHS[(start + offset) % 12],), MONTHS), "word")


def _ordering(rng: Random) -> CalibrationItem:
    people = rng.sample(NAMES, rng.randint(2, 4))  # tallest first
    facts = [f"{a} is taller than {b}." for a, b in itertools.pairwise(people)]
    rng.shuffle(facts)
    tallest = rng.random() < 0.5
    question = "Who is the tallest?" if tallest else "Who is the shortest?"
    target = people[0] if tallest else people[-1]
    rivals = tuple(p for p in people if p != target)
    text = " ".join([*facts, question])
    return draft(ask(text), Words((target,), rivals, first_mention=True), "word")


def _ages(rng: Random) -> CalibrationItem:
    a, b = rng.sample(NAMES, 2)
    age, gap = rng.randint(3, 40), rng.randint(2, 15)
    older = rng.random() < 0.5
    relation = "older" if older else "younger"
    text = (
        f"{a} is {age + (0 if older else gap)} years old. "
        f"{b} is {gap} years {relation} than {a}. How old is {b}?"
    )
    value = age + gap if older else age
    return draft(ask(text), Number(value), "number")


def _story(rng: Random) -> CalibrationItem:
    name, fruits = rng.choice(NAMES), _plural(rng.choice(FRUITS))
    have, change = rng.randint(3, 20), rng.randint(1, 9)
    if rng.random() < 0.5:
        text = (
            f"{name} has {have} {fruits} and buys {change} more. "
            f"How many {fruits} does {name} have now?"
        )
        value = have + change
    else:
        have += change
        text = f"{name} has {have} {fruits} and eats {change}. How many {fruits} are left?"
        value = have - change
    return draft(ask(text), Number(value), "number")


def _plural(noun: str) -> str:
    if noun.endswith("y"):
        return noun[:-1] + "ies"
    if noun.endswith(("o", "ch")):
        return noun + "es"
    return noun + "s"


_REASONING: tuple[Callable[[Random], CalibrationItem], ...] = (
    _sequence,
    _compare,
    _day_offset,
    _month_offset,
    _ordering,
    _ages,
    _story,
)


def reasoning(rng: Random) -> CalibrationItem:
    """Short reasoning: sequences, comparisons, calendar offsets, orderings, small stories."""
    return rng.choice(_REASONING)(rng)
