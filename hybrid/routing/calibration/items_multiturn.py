"""Multi-turn conversations whose last question needs an earlier turn.

A running count, a variable set two turns ago, a correction that overrides what was said
first, an item of a list given earlier, a format rule laid down at the start: the last message
alone does not hold the answer.  Assistant turns are short and do not always repeat the fact,
so the model must look past its own last reply.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from hybrid.generation import Message
from hybrid.routing.calibration.facts import ANIMALS, CAPITALS, DAYS, FRUITS, NAMES, ORDINALS
from hybrid.routing.calibration.item import (
    CalibrationItem,
    Check,
    Constraint,
    Number,
    Words,
    ask,
    draft,
)
from hybrid.routing.calibration.items_tables import COLOURS

_ALL_CAPITALS = tuple(spellings[0] for _, spellings in CAPITALS)
_FILLER = (
    ("By the way, what is 2 + 2?", "2 + 2 is 4."),
    ("Can you say hello?", "Hello!"),
    ("What colour is grass?", "Grass is green."),
    ("Is the sun a star?", "Yes, the Sun is a star."),
)


def _turns(*pairs: tuple[str, str]) -> tuple[Message, ...]:
    return tuple(
        message
        for user, assistant in pairs
        for message in (Message("user", user), Message("assistant", assistant))
    )


def _count(rng: Random) -> CalibrationItem:
    fruit = rng.choice(FRUITS)
    have, change = rng.randint(3, 12), rng.randint(1, 9)
    history = _turns((f"I have {have} {fruit}s in a bowl.", "Okay, noted."))
    if rng.random() < 0.5:
        question, value = (
            f"I put {change} more in. How many {fruit}s are in the bowl now?",
            have + change,
        )
    else:
        change = min(change, have - 1)
        question, value = f"I eat {change} of them. How many {fruit}s are left?", have - change
    return draft(ask(question, history=history), Number(value), "number")


def _variable(rng: Random) -> CalibrationItem:
    name = rng.choice("xyzabn")
    value, factor = rng.randint(2, 15), rng.randint(2, 9)
    history = _turns((f"Let {name} be {value}.", f"Okay, {name} = {value}."))
    if rng.random() < 0.5:
        history += _turns(rng.choice(_FILLER))
    if rng.random() < 0.5:
        question, result = f"What is {name} times {factor}?", value * factor
    else:
        question, result = f"What is {name} plus {factor}?", value + factor
    return draft(ask(question, history=history), Number(result), "number")


def _correction(rng: Random) -> CalibrationItem:
    said, meant = rng.sample(DAYS, 2)
    thing = rng.choice(("flight", "dentist appointment", "exam", "party", "interview"))
    history = _turns(
        (f"My {thing} is on {said}.", f"Noted: your {thing} is on {said}."),
        (f"Sorry, I got that wrong: it is on {meant}.", "No problem, I have updated it."),
    )
    rivals = tuple(day for day in DAYS if day != meant)
    question = rng.choice((f"Which day is my {thing}?", f"Remind me, when is my {thing}?"))
    return draft(ask(question, history=history), Words((meant,), rivals), "word")


def _list_item(rng: Random) -> CalibrationItem:
    things = rng.sample((*FRUITS, *ANIMALS), 4)
    index = rng.randrange(len(things))
    history = _turns((f"Here is my list: {', '.join(things)}.", "Got it."))
    if rng.random() < 0.5:
        history += _turns(rng.choice(_FILLER))
    question = f"What was the {ORDINALS[index]} item on my list?"
    rivals = tuple(t for t in things if t != things[index])
    answer = Words((things[index],), rivals, first_mention=True)
    return draft(ask(question, history=history), answer, "word")


def _standing_rule(rng: Random) -> CalibrationItem:
    country, spellings = rng.choice(CAPITALS)
    if rng.random() < 0.5:
        rule, check, example = "capital letters only", Check("upper"), spellings[0].upper()
    else:
        rule, check, example = "one word only", Check("one_word"), spellings[0]
    history = _turns((f"From now on, answer in {rule}.", "OK."))
    rivals = tuple(city for city in _ALL_CAPITALS if city not in spellings)
    answer = Constraint((check,), Words(spellings, rivals), example=example)
    question = f"What is the capital of {country}?"
    return draft(ask(question, history=history), answer, "constraint")


def _preference(rng: Random) -> CalibrationItem:
    name, colour = rng.choice(NAMES), rng.choice(COLOURS)
    history = _turns(
        (f"I'm {name} and my favourite colour is {colour}.", "Nice to meet you!"),
        rng.choice(_FILLER),
    )
    rivals = tuple(c for c in COLOURS if c != colour)
    return draft(
        ask("What is my favourite colour?", history=history), Words((colour,), rivals), "word"
    )


def _pet(rng: Random) -> CalibrationItem:
    name, animal = rng.choice(NAMES), rng.choice(ANIMALS)
    pet = rng.choice(("Biscuit", "Pepper", "Ziggy", "Nemo", "Luna", "Max"))
    history = _turns((f"{name} has a {animal} called {pet}.", "That sounds lovely."))
    rivals = tuple(a for a in ANIMALS if a != animal)
    if rng.random() < 0.5:
        question, answer = f"What kind of animal is {pet}?", Words((animal,), rivals)
    else:
        question, answer = f"What is the name of {name}'s {animal}?", Words((pet,), (name,))
    return draft(ask(question, history=history), answer, "word")


def _area(rng: Random) -> CalibrationItem:
    length, width = rng.randint(2, 9), rng.randint(2, 9)
    history = _turns((f"My room is {length} metres long and {width} metres wide.", "Okay, thanks."))
    question = "What is its area in square metres?"
    return draft(ask(question, history=history), Number(length * width), "number")


_KINDS: tuple[Callable[[Random], CalibrationItem], ...] = (
    _count,
    _variable,
    _correction,
    _list_item,
    _standing_rule,
    _preference,
    _pet,
    _area,
)


def multiturn(rng: Random) -> CalibrationItem:
    """A conversation whose last question depends on an earlier turn."""
    return rng.choice(_KINDS)(rng)
