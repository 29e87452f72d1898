"""Writing code: a one-line Python function or expression, graded by running it on tests.

The expected values are computed here by reference implementations, never by running what a
model wrote in this process; the model's line runs in a confined interpreter of its own
(:mod:`hybrid.routing.calibration.sandbox`).  The tasks are everyday one-liners (a sum, a
filter, a string operation) whose numbers and letters vary, so the set has hundreds of them;
the easiest fix one wrong operator in a given line, or write a sum of two given numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any, Literal

from hybrid.routing.calibration.facts import FRUITS, WORDS
from hybrid.routing.calibration.item import CalibrationItem, Code, ask, draft


@dataclass(frozen=True)
class _Task:
    """One thing to write: what is asked, a right line, how to compute it, and the inputs."""

    asked: str
    example: str
    reference: Callable[..., Any]
    inputs: Sequence[tuple[Any, ...]]


_NUMBERS = ((0,), (5,), (-3,), (12,))
_LISTS = (([3, 8, 1],), ([10],), ([4, -2, 7, 7],))
_STRINGS = (("banana",), ("Python",), ("a",))


def _function_task(rng: Random) -> tuple[str, tuple[str, ...], _Task]:
    """A function name, its parameters, and the task."""
    n, k = rng.randint(2, 20), rng.randint(2, 9)
    letter = rng.choice("aeiou")
    word = rng.choice((*FRUITS, *WORDS))
    tasks: tuple[tuple[str, tuple[str, ...], _Task], ...] = (
        ("add", ("x",), _Task(f"returns x plus {n}", f"def add(x): return x + {n}",
                             lambda x: x + n, _NUMBERS)),
        ("times", ("x",), _Task(f"returns x multiplied by {n}", f"def times(x): return x * {n}",
                               lambda x: x * n, _NUMBERS)),
        ("is_multiple", ("x",), _Task(
            f"returns True when x is divisible by {k}, and False otherwise",
            f"def is_multiple(x): return x % {k} == 0",
            lambda x: x % k == 0, ((0,), (k,), (k + 1,), (3 * k,), (7 * k - 1,)))),
        ("cap", ("x",), _Task(f"returns x, but never more than {n}",
                             f"def cap(x): return min(x, {n})", lambda x: min(x, n),
                             ((0,), (n,), (n + 5,), (-4,)))),
        ("square", ("x",), _Task("returns the square of x", "def square(x): return x * x",
                                lambda x: x * x, _NUMBERS)),
        ("last", ("items",), _Task("returns the last element of the list items",
                                  "def last(items): return items[-1]", lambda items: items[-1],
                                  _LISTS)),
        ("total", ("items",), _Task("returns the sum of the numbers in the list items",
                                   "def total(items): return sum(items)", sum, _LISTS)),
        ("evens", ("items",), _Task(
            "returns a list of the even numbers in the list items, in order",
            "def evens(items): return [x for x in items if x % 2 == 0]",
            lambda items: [x for x in items if x % 2 == 0], _LISTS)),
        ("shout", ("s",), _Task("returns the string s in upper case",
                               "def shout(s): return s.upper()", str.upper, _STRINGS)),
        ("flip", ("s",), _Task("returns the string s reversed", "def flip(s): return s[::-1]",
                              lambda s: s[::-1], _STRINGS)),
        ("count", ("s",), _Task(
            f"returns how many times the letter '{letter}' occurs in the string s",
            f"def count(s): return s.count('{letter}')", lambda s: s.count(letter),
            ((word,), ("",), (letter * 3,)))),
        ("start", ("s",), _Task(f"returns the first {k} characters of the string s",
                               f"def start(s): return s[:{k}]", lambda s: s[:k],
                               ((word,), ("abcdefghij",), ("",)))),
        ("greet", ("name",), _Task(
            "returns the string 'Hello, ' followed by name (so greet('Ann') is 'Hello, Ann')",
            "def greet(name): return 'Hello, ' + name", lambda name: "Hello, " + name,
            (("Ann",), ("Bo",)))),
    )  # fmt: skip
    return rng.choice(tasks)


def _expression_task(rng: Random) -> tuple[tuple[str, ...], _Task]:
    """The variables an expression uses, and the task."""
    n = rng.randint(2, 20)
    tasks: tuple[tuple[tuple[str, ...], _Task], ...] = (
        (("xs",), _Task("the number of items in the list xs", "len(xs)", len, _LISTS)),
        (("xs",), _Task("the largest number in the list xs", "max(xs)", max, _LISTS)),
        (("xs",), _Task("the list xs sorted from largest to smallest",
                        "sorted(xs, reverse=True)", lambda xs: sorted(xs, reverse=True),
                        _LISTS)),
        (("xs",), _Task("the first element of the list xs", "xs[0]", lambda xs: xs[0], _LISTS)),
        (("s",), _Task("the last character of the string s", "s[-1]", lambda s: s[-1],
                       _STRINGS)),
        (("s",), _Task(f"the string s repeated {n} times", f"s * {n}", lambda s: s * n,
                       _STRINGS)),
        (("x",), _Task(f"x squared plus {n}", f"x ** 2 + {n}", lambda x: x**2 + n, _NUMBERS)),
        (("x",), _Task(f"whether x is greater than {n} (True or False)", f"x > {n}",
                       lambda x: x > n, ((0,), (n,), (n + 1,), (50,)))),
        (("x",), _Task(f"the remainder of x divided by {n}", f"x % {n}", lambda x: x % n,
                       ((0,), (n + 3,), (7 * n,), (100,)))),
        (("a", "b"), _Task("the average of the numbers a and b", "(a + b) / 2",
                           lambda a, b: (a + b) / 2, ((2, 4), (1, 2), (-6, 0)))),
    )  # fmt: skip
    return rng.choice(tasks)


def _bug_fix(rng: Random) -> tuple[str, tuple[str, ...], _Task, str]:
    """A function with one wrong operator: its name, parameters, the task, and the buggy line."""
    n = rng.randint(2, 20)
    tasks: tuple[tuple[str, tuple[str, ...], _Task, str], ...] = (
        ("add", ("x",), _Task(f"adds {n} to x", f"def add(x): return x + {n}",
                             lambda x: x + n, _NUMBERS), f"def add(x): return x - {n}"),
        ("times", ("x",), _Task(f"multiplies x by {n}", f"def times(x): return x * {n}",
                               lambda x: x * n, _NUMBERS), f"def times(x): return x + {n}"),
        ("below", ("x",), _Task(f"tells whether x is below {n}", f"def below(x): return x < {n}",
                               lambda x: x < n, ((0,), (n,), (n + 3,))),
         f"def below(x): return x > {n}"),
        ("square", ("x",), _Task("returns x squared", "def square(x): return x * x",
                                lambda x: x * x, _NUMBERS), "def square(x): return x * 2"),
        ("last", ("items",), _Task("returns the last item", "def last(items): return items[-1]",
                                  lambda items: items[-1], _LISTS),
         "def last(items): return items[0]"),
        ("shout", ("s",), _Task("returns s in upper case", "def shout(s): return s.upper()",
                               str.upper, _STRINGS), "def shout(s): return s.lower()"),
    )  # fmt: skip
    return rng.choice(tasks)


def _constant(rng: Random) -> _Task:
    """An expression over numbers given in the task (its value is a fair answer too)."""
    a, b = rng.randint(2, 40), rng.randint(2, 12)
    asked, example, value = rng.choice(
        (
            (f"the sum of {a} and {b}", f"{a} + {b}", a + b),
            (f"{a} times {b}", f"{a} * {b}", a * b),
            (f"{a} minus {b}", f"{a} - {b}", a - b),
            (f"{b} squared", f"{b} ** 2", b**2),
        )
    )
    return _Task(asked, example, lambda: value, ((),))


def _quoted(params: tuple[str, ...]) -> str:
    return " and ".join(f"`{p}`" for p in params)


def coding(rng: Random) -> CalibrationItem:
    """A one-line Python function or expression to write, graded by running its tests."""
    level = rng.random()
    form: Literal["function", "expression"]
    if level < 0.2:
        name, params, task, buggy = _bug_fix(rng)
        text = f"Fix the bug in this Python function so that it {task.asked}: {buggy}"
        form = "function"
    elif level < 0.35:
        name, params, task = "", (), _constant(rng)
        text = f"Write a Python expression for {task.asked}."
        form = "expression"
    elif level < 0.75:
        name, params, task = _function_task(rng)
        template = rng.choice(
            (
                "Write a one-line Python function {sig} that {a}. Reply with the code only.",
                "In Python, write a function {sig} that {a}. Give it on one line, no explanation.",
            )
        )
        text = template.format(sig=f"`{name}({', '.join(params)})`", a=task.asked)
        form = "function"
    else:
        params, task = _expression_task(rng)
        name = ""
        template = rng.choice(
            (
                "Write a Python expression for {a}. Reply with the expression only.",
                "Give a one-line Python expression, using {v}, that computes {a}.",
            )
        )
        text = template.format(a=task.asked, v=_quoted(params))
        form = "expression"
    tests = tuple((repr(args), repr(task.reference(*args))) for args in task.inputs)
    answer = Code(form, name, params, tests, task.example)
    return draft(ask(text), answer, "code")
