"""Extraction: a date, an amount, a name, an email address or a field out of a short text.

Every text holds a rival of the value asked for (a second date, a second address, another
row), and the first candidate the answer names decides, so that repeating the whole text is
not a right answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from random import Random

from hybrid.routing.calibration.facts import MONTHS, NAMES
from hybrid.routing.calibration.item import CalibrationItem, Number, Words, ask, draft
from hybrid.routing.calibration.items_tables import CITIES

_DOMAINS = ("example.com", "mail.test", "post.example", "office.test")
_ORDINAL_SUFFIX = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd"}


def _email(rng: Random) -> CalibrationItem:
    first, second = rng.sample(NAMES, 2)
    mine = f"{first.lower()}@{rng.choice(_DOMAINS)}"
    theirs = f"{second.lower()}.{rng.randint(2, 99)}@{rng.choice(_DOMAINS)}"
    text = (
        f"Hi, this is {first}. Please write to me at {mine}. For invoices, contact my "
        f"colleague {second} at {theirs}."
    )
    if rng.random() < 0.5:
        question, right, wrong = f"What is {first}'s email address?", mine, theirs
    else:
        question, right, wrong = f"What is {second}'s email address?", theirs, mine
    answer = Words((right,), (wrong,), first_mention=True)
    return draft(ask(f"{text}\n\n{question}"), answer, "word")


def _spellings(day: int, month: int, year: int) -> tuple[str, ...]:
    name = MONTHS[month - 1]
    suffix = _ORDINAL_SUFFIX.get(day, "th")
    return (
        f"{day} {name} {year}",
        f"{name} {day}, {year}",
        f"{name} {day} {year}",
        f"{day}{suffix} {name} {year}",
        f"{name} {day}{suffix}, {year}",
        f"{year}-{month:02d}-{day:02d}",
        f"{day:02d}/{month:02d}/{year}",
        f"{day} {name}",
        f"{name} {day}",
        f"{day}{suffix} {name}",
        f"{name} {day}{suffix}",
    )


def _date(rng: Random) -> CalibrationItem:
    year = rng.randint(2021, 2027)
    (m1, d1), (m2, d2) = sorted((rng.randint(1, 12), rng.randint(1, 28)) for _ in range(2))
    if (m1, d1) == (m2, d2):
        d2 = d2 % 28 + 1
    issued, due = _spellings(d1, m1, year), _spellings(d2, m2, year)
    text = f"Invoice {rng.randint(100, 999)} was issued on {issued[0]}. Payment is due on {due[0]}."
    if rng.random() < 0.5:
        question, right, wrong = "When is the payment due?", due, issued
    else:
        question, right, wrong = "On what date was the invoice issued?", issued, due
    answer = Words(right, wrong, first_mention=True)
    return draft(ask(f"{text}\n{question} Answer with the date."), answer, "word")


def _amount(rng: Random) -> CalibrationItem:
    total = rng.randint(1000, 20000) / 100
    shipping = rng.randint(3, 12)
    order = rng.randint(1000, 9999)
    text = (
        f"Order {order}: {rng.randint(2, 9)} items. Shipping costs ${shipping}.00 and the total "
        f"to pay is ${total:.2f}."
    )
    if rng.random() < 0.7:
        question, value = "What is the total to pay? Answer with the amount.", total
    else:
        question, value = "How much does shipping cost? Answer with the amount.", shipping
    return draft(ask(f"{text}\n{question}"), Number(value, position="first"), "number")


def _who(rng: Random) -> CalibrationItem:
    author, checker = rng.sample(NAMES, 2)
    thing = rng.choice(("report", "budget", "plan", "article", "proposal"))
    text = f"The {thing} was written by {author} and checked by {checker} before it went out."
    if rng.random() < 0.5:
        question, right, wrong = f"Who checked the {thing}?", checker, author
    else:
        question, right, wrong = f"Who wrote the {thing}?", author, checker
    answer = Words((right,), (wrong,), first_mention=True)
    return draft(ask(f"{text}\n{question}"), answer, "word")


def _json_field(rng: Random) -> CalibrationItem:
    name, city = rng.choice(NAMES), rng.choice(CITIES)
    age, code = rng.randint(18, 80), rng.randint(10, 99)
    record = {"name": name, "city": city, "age": age, "team": code}
    text = f"Here is a record: {json.dumps(record)}"
    rivals = (name, city)
    pick = rng.randrange(3)
    if pick == 0:
        question = 'What is the value of "city"?'
        answer: Words | Number = Words((city,), tuple(r for r in rivals if r != city), True)
        return draft(ask(f"{text}\n{question}"), answer, "word")
    if pick == 1:
        question = 'What is the value of "name"?'
        answer = Words((name,), tuple(r for r in rivals if r != name), True)
        return draft(ask(f"{text}\n{question}"), answer, "word")
    key, value = rng.choice((("age", age), ("team", code)))
    question = f'What is the value of "{key}"? Answer with the number.'
    return draft(ask(f"{text}\n{question}"), Number(value, position="first"), "number")


def _csv_cell(rng: Random) -> CalibrationItem:
    people = rng.sample(NAMES, 3)
    rows = [(person, rng.randint(18, 80), rng.choice(CITIES)) for person in people]
    table = "\n".join(["name,age,city", *(f"{n},{a},{c}" for n, a, c in rows)])
    person, age, city = rng.choice(rows)
    if rng.random() < 0.5:
        question = f"According to the CSV, how old is {person}? Answer with the number."
        return draft(ask(f"{table}\n\n{question}"), Number(age, position="first"), "number")
    others = tuple(c for _, _, c in rows if c != city)
    question = f"According to the CSV, in which city does {person} live?"
    return draft(ask(f"{table}\n\n{question}"), Words((city,), others, True), "word")


_KINDS: tuple[Callable[[Random], CalibrationItem], ...] = (
    _email,
    _date,
    _amount,
    _who,
    _json_field,
    _csv_cell,
)


def extraction(rng: Random) -> CalibrationItem:
    """A value to pull out of a short text, a JSON record or a CSV table."""
    return rng.choice(_KINDS)(rng)
