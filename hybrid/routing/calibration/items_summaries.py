"""Short passages to summarise in one line: the key facts in, the distractor out.

A passage states a piece of news, in one sentence or across three (so that copying its first
sentence is not enough), mostly beside one unrelated detail.  A right one-line summary names every
key fact and leaves the detail out.  Whether a sentence *summarises* is more than the facts it
names, so every item carries a rubric for a cloud judge (``hybrid calibrate --judge``); the key
facts are the automatic approximation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random

from hybrid.routing.calibration.facts import ANIMALS, DAYS, FRUITS, MONTHS, NAMES
from hybrid.routing.calibration.item import CalibrationItem, KeyFacts, ask, draft
from hybrid.routing.calibration.items_tables import CITIES, COLOURS


@dataclass(frozen=True)
class _News:
    """A passage's main point: its sentences, key facts (each with its spellings), and a
    right one-line summary."""

    sentences: tuple[str, ...]
    facts: tuple[tuple[str, ...], ...]
    summary: str
    gist: str


@dataclass(frozen=True)
class _Aside:
    """An unrelated detail: its sentence, and the words a summary that repeats it uses."""

    sentence: str
    words: tuple[str, ...]
    topic: str


def _closure(rng: Random) -> _News:
    place = rng.choice(("library", "swimming pool", "museum", "post office", "bakery"))
    day, reopen = rng.sample(DAYS, 2)
    reason = rng.choice(("repairs", "a power cut", "staff training", "a burst pipe"))
    return _News(
        (
            f"Notice to all visitors of the {place}.",
            f"Because of {reason}, the building will be closed on {day}.",
            f"Normal opening hours resume on {reopen}.",
        ),
        ((place,), ("closed", "close", "closes", "closing", "shut"), (day,)),
        f"The {place} is closed on {day} because of {reason}.",
        f"the {place} is closed on {day}",
    )


def _price(rng: Random) -> _News:
    city = rng.choice(CITIES)
    old = rng.randint(15, 30) * 10
    new = old + rng.randint(2, 8) * 10
    month = rng.choice(MONTHS)
    return _News(
        (
            f"The transport office of {city} has announced new fares.",
            f"From {month}, a single bus ticket will cost {new} cents.",
            f"Until then it stays at {old} cents.",
        ),
        (("bus",), (str(new),), (month,)),
        f"From {month}, a bus ticket in {city} costs {new} cents.",
        f"a bus ticket in {city} will cost {new} cents from {month}",
    )


def _lost(rng: Random) -> _News:
    name, colour = rng.choice(NAMES), rng.choice(COLOURS)
    thing = rng.choice(("umbrella", "backpack", "scarf", "wallet", "jacket"))
    city, day = rng.choice(CITIES), rng.choice(DAYS)
    return _News(
        (
            f"Message from {name}.",
            f"On {day} I left my {colour} {thing} on the train to {city}.",
            "If you find it, please call me; there is a reward.",
        ),
        ((name, "someone"), (thing,), ("lost", "left", "lose", "missing", "forgot")),
        f"{name} lost a {colour} {thing} on the train to {city}.",
        f"{name} lost a {colour} {thing} on the train",
    )


def _moved(rng: Random) -> _News:
    team = rng.choice(("sales", "design", "support", "finance", "research"))
    day = rng.choice(DAYS[:5])
    hour = rng.randint(9, 16)
    clock = f"{hour}:00" if hour < 13 else f"{hour - 12} pm"
    return _News(
        (
            f"An update for the {team} team.",
            f"The weekly meeting has a new slot: from now on it is held every {day}.",
            f"It starts at {clock} in the main room.",
        ),
        (("meeting",), (day,)),
        f"The {team} team's weekly meeting is now every {day} at {clock}.",
        f"the {team} team's weekly meeting is now on {day}s",
    )


def _weather(rng: Random) -> _News:
    city, day = rng.choice(CITIES), rng.choice(DAYS)
    kind = rng.choice(("snow", "rain", "wind"))
    advice = {
        "snow": "Drivers should carry chains.",
        "rain": "Rivers may flood low roads.",
        "wind": "Ferries may be cancelled.",
    }[kind]
    return _News(
        (
            f"Weather service bulletin for {city}.",
            f"Heavy {kind} is expected on {day}.",
            advice,
        ),
        ((kind, "snowfall", "rainfall", "storm", "windy", "snowy", "rainy"), (day,)),
        f"Heavy {kind} is expected in {city} on {day}.",
        f"heavy {kind} is expected in {city} on {day}",
    )


def _aside(rng: Random) -> _Aside:
    pick = rng.randrange(4)
    if pick == 0:
        fruit = rng.choice(FRUITS)
        return _Aside(f"The café next door sells {fruit} cake.", (fruit, "cake", "café"), "cake")
    if pick == 1:
        animal, pet = rng.choice(ANIMALS), rng.choice(("Biscuit", "Pepper", "Ziggy", "Nemo"))
        return _Aside(
            f"By the way, the caretaker's {animal} is called {pet}.", (pet, "caretaker"), "a pet"
        )
    if pick == 2:
        colour = rng.choice(COLOURS)
        return _Aside(
            f"The new printer on the second floor is {colour}.", ("printer",), "the printer"
        )
    return _Aside(
        "Last year the garden won a prize for its roses.", ("prize", "roses", "garden"), "a prize"
    )


_NEWS: tuple[Callable[[Random], _News], ...] = (_closure, _price, _lost, _moved, _weather)
_ASKS = (
    "Summarise this in one line:\n{p}",
    "Give a one-sentence summary of the following text.\n\n{p}",
    "{p}\n\nSum up the message above in one short sentence.",
    "Read the note and write a one-line summary of its main point.\n\n{p}",
)


def summarising(rng: Random) -> CalibrationItem:
    """A short passage to summarise in one line, with an unrelated detail to leave out."""
    news, aside = rng.choice(_NEWS)(rng), _aside(rng)
    # Three levels: the point alone in one sentence (copying it is a fair summary), the point
    # beside the detail, and the point spread over sentences around the detail.
    level = rng.random()
    if level < 0.3:
        sentences, aside = [news.summary], _Aside("", (), "anything else")
    elif level < 0.55:
        sentences = [news.summary, aside.sentence]
    else:
        sentences = list(news.sentences)
        sentences.insert(rng.randint(1, len(sentences)), aside.sentence)
    text = rng.choice(_ASKS).format(p=" ".join(sentences))
    answer = KeyFacts(news.facts, forbidden=aside.words, example=news.summary)
    rubric = (
        f"A one-line summary whose main point is that {news.gist}; it must not bring up "
        f"{aside.topic}, which is beside the point."
    )
    return draft(ask(text), answer, "facts", rubric=rubric)
