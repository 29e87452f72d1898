"""Instructions with verifiable format rules: one word, capitals, JSON, exactly N items, ...

Each item pairs a rule the answer's form must follow (:class:`Check`) with content that must be
right (a fruit, the capital asked for), so that neither a well-formed wrong answer nor a right
answer in the wrong form passes.  Free-writing items ("a sentence about cats without commas")
carry a rubric for a cloud judge: their checks see the form, not whether the sentence is good.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from hybrid.routing.calibration.facts import ANIMALS, CAPITALS, FRUITS, NAMES, WORDS
from hybrid.routing.calibration.item import (
    CalibrationItem,
    Check,
    Constraint,
    Number,
    Words,
    ask,
    draft,
)
from hybrid.routing.calibration.items_tables import CITIES, COLOURED, COLOURS, KINDS, LEGS

_ALL_CAPITALS = tuple(spellings[0] for _, spellings in CAPITALS)


def _singular(kind: str) -> str:
    return {"days of the week": "day of the week", "months of the year": "month of the year"}.get(
        kind, kind.removesuffix("s")
    )


def _one_word_capitals(rng: Random) -> CalibrationItem:
    kind, members = rng.choice(KINDS)
    template = rng.choice(
        (
            "Name a {k} in one word, written in capital letters.",
            "Reply with one {k}, in one word, all in capital letters.",
            "Give me any {k}. Use a single word in CAPITAL LETTERS.",
        )
    )
    answer = Constraint(
        (Check("one_word"), Check("upper")), Words(members), example=members[0].upper()
    )
    return draft(ask(template.format(k=_singular(kind))), answer, "constraint")


_FORMATS: tuple[tuple[str, tuple[Check, ...], Callable[[str], str]], ...] = (
    ("Answer in lowercase letters only.", (Check("lower"),), str.lower),
    ("Answer in capital letters only.", (Check("upper"),), str.upper),
    ("Answer with one word.", (Check("one_word"),), str.strip),
    ("Answer in at most three words.", (Check("max_words", number=3),), str.strip),
    ("Start your answer with the word 'Answer'.", (Check("starts_with", "Answer"),),
     lambda city: f"Answer: {city}"),
    ("End your answer with an exclamation mark.", (Check("ends_with", "!"),),
     lambda city: f"{city}!"),
)  # fmt: skip


def _formatted_capital(rng: Random) -> CalibrationItem:
    country, spellings = rng.choice(CAPITALS)
    rule, checks, shape = rng.choice(_FORMATS)
    rivals = tuple(city for city in _ALL_CAPITALS if city not in spellings)
    answer = Constraint(checks, Words(spellings, rivals), example=shape(spellings[0]))
    return draft(ask(f"What is the capital of {country}? {rule}"), answer, "constraint")


def _json_record(rng: Random) -> CalibrationItem:
    name = rng.choice(NAMES)
    if rng.random() < 0.5:
        age = rng.randint(18, 80)
        text = (
            f'Reply with only a JSON object with the keys "name" and "age" for a person '
            f"called {name} who is {age} years old."
        )
        check = Check("json", keys=("name", "age"), values=(name, str(age)))
        example = f'{{"name": "{name}", "age": {age}}}'
    else:
        city = rng.choice(CITIES)
        text = (
            f'Write a JSON object with exactly two keys, "name" and "city", for {name}, who '
            f"lives in {city}. Output the JSON only."
        )
        check = Check("json", keys=("name", "city"), values=(name, city))
        example = f'{{"name": "{name}", "city": "{city}"}}'
    return draft(ask(text), Constraint((check,), example=example), "constraint")


def _exact_list(rng: Random) -> CalibrationItem:
    kind, members = rng.choice(KINDS)
    n = rng.randint(2, 5)
    template = rng.choice(
        (
            "List exactly {n} {k}, separated by commas.",
            "Name {n} {k}. Write them on one line, separated by commas, and nothing else.",
        )
    )
    answer = Constraint((Check("items", number=n, values=members),), example=", ".join(members[:n]))
    return draft(ask(template.format(n=n, k=kind)), answer, "constraint")


def _no_commas(rng: Random) -> CalibrationItem:
    topic = rng.choice((*ANIMALS, *FRUITS))
    text = f"Write one sentence about a {topic} without using any commas."
    checks = (Check("no_char", ","), Check("min_words", number=4))
    answer = Constraint(checks, Words((topic,)), example=f"The {topic} is very nice to see.")
    rubric = f"One sentence about a {topic}, written without any comma."
    return draft(ask(text), answer, "constraint", rubric=rubric)


def _starting_word(rng: Random) -> CalibrationItem:
    topic = rng.choice((*ANIMALS, *FRUITS))
    first = rng.choice(("Today", "Yesterday", "Sometimes", "Once", "Suddenly", "Outside"))
    text = f"Write a short sentence about a {topic} that starts with the word '{first}'."
    checks = (Check("starts_with", first), Check("min_words", number=3))
    example = f"{first} I saw a {topic} in the garden."
    rubric = f"One short sentence about a {topic} whose first word is '{first}'."
    answer = Constraint(checks, Words((topic,)), example=example)
    return draft(ask(text), answer, "constraint", rubric=rubric)


def _few_words(rng: Random) -> CalibrationItem:
    thing, colour = rng.choice(COLOURED)
    n = rng.randint(2, 5)
    text = f"In at most {n} words: what colour is {thing}?"
    rivals = tuple(c for c in COLOURS if c != colour)
    answer = Constraint(
        (Check("max_words", number=n),), Words((colour,), rivals), example=colour.capitalize()
    )
    return draft(ask(text), answer, "constraint")


def _exact_word(rng: Random) -> CalibrationItem:
    word = rng.choice((*WORDS, *FRUITS, *ANIMALS))
    template = rng.choice(
        (
            "Reply with only the word '{w}', in capital letters.",
            "Write the word {w} in upper case and nothing else.",
        )
    )
    answer = Constraint((Check("one_word"), Check("upper")), Words((word,)), example=word.upper())
    return draft(ask(template.format(w=word)), answer, "constraint")


def _yes_no_lower(rng: Random) -> CalibrationItem:
    n = rng.randint(2, 99)
    even = n % 2 == 0
    text = f"Is {n} an even number? Answer yes or no, in lower case, with one word."
    right, wrong = ("yes", "no") if even else ("no", "yes")
    answer = Constraint(
        (Check("one_word"), Check("lower")), Words((right,), (wrong,)), example=right
    )
    return draft(ask(text), answer, "constraint")


def _only_number(rng: Random) -> CalibrationItem:
    animal, legs = rng.choice(LEGS)
    template = rng.choice(
        (
            "Answer with only a number: how many legs does {a} have?",
            "How many legs does {a} have? Reply with the number alone, in digits.",
        )
    )
    answer = Constraint((Check("one_word"),), Number(legs), example=str(legs))
    return draft(ask(template.format(a=animal)), answer, "constraint")


_KINDS: tuple[Callable[[Random], CalibrationItem], ...] = (
    _one_word_capitals,
    _formatted_capital,
    _formatted_capital,
    _json_record,
    _exact_list,
    _no_commas,
    _starting_word,
    _few_words,
    _exact_word,
    _yes_no_lower,
    _only_number,
)


def instructions(rng: Random) -> CalibrationItem:
    """An instruction whose answer must follow a format rule and say the right thing."""
    return rng.choice(_KINDS)(rng)
