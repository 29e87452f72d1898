"""Generators of the verbal categories: facts, code, multiple choice, chat, other languages."""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from hybrid.generation import Message
from hybrid.routing.calibration.facts import (
    ANIMALS,
    CAPITALS,
    ELEMENTS,
    FOREIGN_CAPITALS,
    FOREIGN_SUMS,
    FOREIGN_WEEK,
    FRUITS,
    MONTHS,
    NAMES,
    ORDINALS,
    PLANETS,
    SIMPLE_FACTS,
    WORDS,
)
from hybrid.routing.calibration.item import (
    Answer,
    CalibrationItem,
    Choice,
    GraderKind,
    Literal,
    Number,
    Words,
    ask,
    draft,
)

_ALL_CAPITALS = tuple(spellings[0] for _, spellings in CAPITALS)
_LETTERS = "ABCD"


def _fact_answer(answer: str, rivals: tuple[str, ...]) -> tuple[Answer, GraderKind]:
    if answer.isdigit():
        return Number(int(answer)), "number"
    return Words((answer,), rivals), "word"


def _capital(rng: Random) -> CalibrationItem:
    country, spellings = rng.choice(CAPITALS)
    template = rng.choice(
        (
            "What is the capital of {c}?",
            "Name the capital city of {c}.",
            "Which city is the capital of {c}?",
        )
    )
    rivals = tuple(city for city in _ALL_CAPITALS if city not in spellings)
    return draft(ask(template.format(c=country)), Words(spellings, rivals), "word")


def _element(rng: Random) -> CalibrationItem:
    name, symbol = rng.choice(ELEMENTS)
    if rng.random() < 0.6:
        text = rng.choice(
            ("What is the chemical symbol for {n}?", "Which chemical symbol stands for {n}?")
        )
        answer = Words((symbol,), case_sensitive=True)
        return draft(ask(text.format(n=name)), answer, "word")
    rivals = tuple(other for other, _ in ELEMENTS if other != name)
    text = f"Which chemical element has the symbol {symbol}?"
    return draft(ask(text), Words((name,), rivals), "word")


def _ordinal(rng: Random) -> CalibrationItem:
    if rng.random() < 0.5:
        index = rng.randrange(len(PLANETS))
        text = f"Which planet is the {ORDINALS[index]} planet from the Sun?"
        return draft(ask(text), Words((PLANETS[index],), PLANETS), "word")
    index = rng.randrange(len(MONTHS))
    text = f"What is the {ORDINALS[index]} month of the year?"
    return draft(ask(text), Words((MONTHS[index],), MONTHS), "word")


def _simple_fact(rng: Random) -> CalibrationItem:
    question, answer, rivals = rng.choice(SIMPLE_FACTS)
    grade, kind = _fact_answer(answer, rivals)
    return draft(ask(question), grade, kind)


_FACTS: tuple[Callable[[Random], CalibrationItem], ...] = (
    _capital,
    _capital,
    _element,
    _ordinal,
    _simple_fact,
    _simple_fact,
)


def facts(rng: Random) -> CalibrationItem:
    """Factual recall: capitals, chemical symbols, planets and months, one-line facts."""
    return rng.choice(_FACTS)(rng)


def _expression(rng: Random) -> tuple[str, object]:
    """A short Python expression and its value, computed here rather than by ``eval``."""
    word = rng.choice(WORDS)
    a, b = rng.randint(2, 30), rng.randint(2, 9)
    numbers = rng.sample(range(1, 20), rng.randint(3, 5))
    if numbers == sorted(numbers):  # sorting must change the list, or an echo would pass
        numbers.reverse()
    index = rng.randrange(len(word))
    letter = rng.choice(sorted(set(word)))
    probe = rng.choice("abcdefghijklmnopqrstuvwxyz")
    choices: tuple[Callable[[], tuple[str, object]], ...] = (
        lambda: (f'len("{word}")', len(word)),
        lambda: (f'"{word}".upper()', word.upper()),
        lambda: (f'"{word}"[::-1]', word[::-1]),
        lambda: (f'"{word}"[{index}]', word[index]),
        lambda: (f'"{word}".count("{letter}")', word.count(letter)),
        lambda: (f"{a} // {b}", a // b),
        lambda: (f"{a} % {b}", a % b),
        lambda: (f"{b} ** 2", b**2),
        lambda: (f"max({numbers})", max(numbers)),
        lambda: (f"min({numbers})", min(numbers)),
        lambda: (f"sum({numbers})", sum(numbers)),
        lambda: (f"len({numbers})", len(numbers)),
        lambda: (f"sorted({numbers})", sorted(numbers)),
        lambda: (f"{numbers}[-1]", numbers[-1]),
        lambda: (f"[x * 2 for x in {numbers[:3]}]", [x * 2 for x in numbers[:3]]),
        lambda: (f"{a} > {b * 3}", a > b * 3),
        lambda: (f'"{probe}" in "{word}"', probe in word),
        lambda: (f"list(range({b}))", list(range(b))),
        lambda: (f"abs(-{a})", a),
        lambda: (f"{a} + {b} * 2", a + b * 2),
    )
    return rng.choice(choices)()


def _snippet(rng: Random) -> tuple[str, object]:
    """A few lines of Python with a loop or a function, and what they print."""
    start, stop, step = rng.randint(0, 5), rng.randint(3, 8), rng.randint(1, 3)
    factor = rng.randint(2, 5)
    choices: tuple[Callable[[], tuple[str, object]], ...] = (
        lambda: (
            f"total = {start}\nfor i in range({stop}):\n    total += i\nprint(total)",
            start + sum(range(stop)),
        ),
        lambda: (
            f"def f(x):\n    return x * {factor} + 1\n\nprint(f({stop}))",
            stop * factor + 1,
        ),
        lambda: (
            f"items = list(range({start}, {start + stop}, {step}))\nprint(len(items))",
            len(range(start, start + stop, step)),
        ),
        lambda: (
            f"x = {stop}\nwhile x > {start}:\n    x -= {step}\nprint(x)",
            _count_down(stop, start, step),
        ),
    )
    return rng.choice(choices)()


def _count_down(x: int, floor: int, step: int) -> int:
    while x > floor:
        x -= step
    return x


def _value_answer(value: object) -> tuple[Answer, GraderKind]:
    if isinstance(value, bool):
        return Words((str(value),), (str(not value),), first_mention=True), "word"
    if isinstance(value, int):
        return Number(value), "number"
    if isinstance(value, str):
        return Literal(repr(value), bare=value), "literal"
    return Literal(repr(value)), "literal"


def code(rng: Random) -> CalibrationItem:
    """What a Python expression evaluates to, or what a short snippet prints."""
    if rng.random() < 0.25:
        source, value = _snippet(rng)
        text = f"What does this Python code print?\n```python\n{source}\n```"
    else:
        source, value = _expression(rng)
        template = rng.choice(
            (
                "What does the Python expression `{e}` evaluate to?",
                "In Python, what is the value of {e}?",
                "What does this print in Python: print({e})",
            )
        )
        text = template.format(e=source)
    answer, kind = _value_answer(value)
    return draft(ask(text), answer, kind)


def _choice_question(rng: Random) -> tuple[str, str, list[str]]:
    """A question, its right option and three wrong ones."""
    pick = rng.randrange(4)
    if pick == 0:
        country, spellings = rng.choice(CAPITALS)
        wrong = rng.sample([c for c in _ALL_CAPITALS if c not in spellings], 3)
        return f"What is the capital of {country}?", spellings[0], wrong
    if pick == 1:
        name, symbol = rng.choice(ELEMENTS)
        wrong = rng.sample([s for _, s in ELEMENTS if s != symbol], 3)
        return f"What is the chemical symbol for {name}?", symbol, wrong
    if pick == 2:
        index = rng.randrange(len(PLANETS))
        wrong = rng.sample([p for p in PLANETS if p != PLANETS[index]], 3)
        return f"Which planet is the {ORDINALS[index]} from the Sun?", PLANETS[index], wrong
    a, b = rng.randint(3, 30), rng.randint(3, 12)
    right = a * b
    near = [right + d for d in (-b, b, -1, 1, 10, -10, 2 * b) if right + d > 0]
    return f"What is {a} times {b}?", str(right), [str(n) for n in rng.sample(near, 3)]


def _choice_prompt(question: str, options: tuple[str, ...]) -> tuple[Message, ...]:
    lines = [question, *(f"{_LETTERS[i]}) {option}" for i, option in enumerate(options))]
    lines.append("Answer with the letter of the correct option.")
    return ask("\n".join(lines))


def choice(rng: Random) -> CalibrationItem:
    """A four-option question, presented in all four rotations of its options.

    In the four rotations the right option sits once under each letter, so a model that always
    answers the same letter, whatever the question, is right in exactly one of them; the item
    counts as right only when every presentation is answered right.
    """
    question, right, wrong = _choice_question(rng)
    options = [right, *wrong]
    rng.shuffle(options)
    rotations = tuple(tuple(options[i:] + options[:i]) for i in range(len(options)))
    letters = tuple(_LETTERS[rotation.index(right)] for rotation in rotations)
    prompts = tuple(_choice_prompt(question, rotation) for rotation in rotations)
    answer = Choice(letters, rotations)
    return draft(prompts[0], answer, "choice", alternates=prompts[1:])


# (request, accepted words): what any assistant worth its name gets right.
_CHAT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Say hello.", ("hello", "hi")),
    ("Say hi to me.", ("hello", "hi")),
    ("Greet me.", ("hello", "hi", "greetings", "welcome", "good")),
    ("Good morning!", ("morning", "hello", "hi")),
    ("Say goodbye.", ("goodbye", "bye")),
    ("Say thank you.", ("thank", "thanks")),
    ("How are you?", ("good", "fine", "well", "great", "okay", "ok", "thanks")),
    ("Reply with the word yes.", ("yes",)),
    ("Reply with the word no.", ("no",)),
    ("What colour is the sky on a clear day?", ("blue",)),
    ("What colour is grass?", ("green",)),
    ("What colour is snow?", ("white",)),
    ("What colour is a banana?", ("yellow",)),
    ("What sound does a dog make?", ("woof", "bark", "barks")),
    ("What sound does a cat make?", ("meow", "miaow", "purr")),
    ("Which animal says moo?", ("cow", "cows")),
    ("What do you call a baby cat?", ("kitten",)),
    ("What is the capital of France?", ("Paris",)),
    ("Name a fruit.", FRUITS),
    ("Name an animal.", ANIMALS),
    ("Tell me a colour.", ("red", "blue", "green", "yellow", "black", "white", "orange", "purple")),
)
_CHAT_PREFIXES = ("", "Please: ", "Hi! ", "Quick question. ", "Hey there. ")
_CHAT_SYSTEM = "You are a friendly assistant."


def _repeat(rng: Random) -> CalibrationItem:
    word = rng.choice((*FRUITS, *ANIMALS, *WORDS))
    text = rng.choice(("Repeat the word '{w}'.", "Say the word {w}.", "Repeat after me: {w}"))
    return draft(ask(text.format(w=word)), Words((word,)), "word")


def _remember_name(rng: Random) -> CalibrationItem:
    name = rng.choice(NAMES)
    history = (
        Message("user", f"Hi, my name is {name}."),
        Message("assistant", f"Nice to meet you, {name}! How can I help?"),
    )
    rivals = tuple(other for other in NAMES if other != name)
    return draft(ask("What is my name?", history=history), Words((name,), rivals), "word")


def _greeting(rng: Random) -> CalibrationItem:
    request, accepted = rng.choice(_CHAT)
    text = rng.choice(_CHAT_PREFIXES) + request
    messages = ask(text)
    if rng.random() < 0.3:
        messages = (Message("system", _CHAT_SYSTEM), *messages)
    return draft(messages, Words(accepted), "word")


_CHAT_KINDS: tuple[Callable[[Random], CalibrationItem], ...] = (
    _greeting,
    _greeting,
    _greeting,
    _repeat,
    _remember_name,
)


def chat(rng: Random) -> CalibrationItem:
    """Easy conversational requests that a small model answers acceptably."""
    return rng.choice(_CHAT_KINDS)(rng)


def multilingual(rng: Random) -> CalibrationItem:
    """Capitals, sums and calendar facts asked in French, Spanish, German, Japanese, ..."""
    pick = rng.random()
    if pick < 0.45:
        _, question, accepted = rng.choice(FOREIGN_CAPITALS)
        return draft(ask(question), Words(accepted), "word")
    if pick < 0.8:
        _, template = rng.choice(FOREIGN_SUMS)
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return draft(ask(template.format(a=a, b=b)), Number(a + b), "number")
    _, question, answer = rng.choice(FOREIGN_WEEK)
    return draft(ask(question), Number(int(answer)), "number")
