"""Rewriting with a known result: tense, person, a replaced word, order, translation, spelling.

Each transformation has one right result (or a few spellings of it), which the answer must
hold as a run of whole words; the form it replaces is rejected, so that a hedge naming both
("recieve or receive") fails.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from hybrid.routing.calibration.facts import ANIMALS, FRUITS, NAMES, WORDS
from hybrid.routing.calibration.item import CalibrationItem, Text, Words, ask, draft
from hybrid.routing.calibration.items_tables import FEELINGS, MISSPELLINGS, PHRASES, VERBS

_SUBJECTS = (*NAMES, "She", "He")


def _tense(rng: Random) -> CalibrationItem:
    present, past, future, objects = rng.choice(VERBS)
    subject, rest = rng.choice(_SUBJECTS), rng.choice(objects)
    source = f"{subject} {present} {rest}."
    if rng.random() < 0.6:
        tense, target = "past", f"{subject} {past} {rest}"
    else:
        tense, target = "future", f"{subject} {future} {rest}"
    template = rng.choice(
        (
            "Rewrite this sentence in the {t} tense: {s}",
            "Change the sentence to the {t} tense and write it out: {s}",
            'Put "{s}" into the {t} tense.',
        )
    )
    answer = Text((target,), rejected=(present,))
    return draft(ask(template.format(t=tense, s=source)), answer, "text")


def _person(rng: Random) -> CalibrationItem:
    name, feeling = rng.choice(NAMES), rng.choice(FEELINGS)
    template = rng.choice(
        (
            "Rewrite 'I am {f}' so that it is about {n} instead of me.",
            "Change 'I am {f}' to the third person, about {n}.",
        )
    )
    answer = Text((f"{name} is {feeling}",), rejected=("I am",))
    return draft(ask(template.format(f=feeling, n=name)), answer, "text")


def _replace_word(rng: Random) -> CalibrationItem:
    old, new = rng.sample(ANIMALS, 2)
    place = rng.choice(("mat", "sofa", "grass", "bed", "floor", "step"))
    verb = rng.choice(("sat", "slept", "lay", "waited"))
    source = f"The {old} {verb} on the {place}."
    template = rng.choice(
        (
            "Replace the word '{o}' with '{n}' in this sentence: {s}",
            "In the sentence \"{s}\", change '{o}' to '{n}'. Write the new sentence.",
        )
    )
    answer = Text((f"The {new} {verb} on the {place}",), rejected=(old,))
    return draft(ask(template.format(o=old, n=new, s=source)), answer, "text")


def _reorder(rng: Random) -> CalibrationItem:
    words = rng.sample((*FRUITS, *ANIMALS), rng.randint(3, 4))
    if words == sorted(words):  # the answer must differ from the question
        words.reverse()
    if rng.random() < 0.6:
        text = f"Put these words in alphabetical order: {', '.join(words)}."
        target = sorted(words)
    else:
        text = f"Write these words in reverse order: {' '.join(words)}"
        target = words[::-1]
    return draft(ask(text), Text((" ".join(target),)), "text")


def _translate(rng: Random) -> CalibrationItem:
    english, by_language = rng.choice(PHRASES)
    language = rng.choice(sorted(by_language))
    accepted = by_language[language]
    rivals = tuple(
        word
        for other, words in by_language.items()
        if other != language
        for word in words
        if word.casefold() not in {a.casefold() for a in accepted}
    )
    template = rng.choice(
        (
            "Translate '{e}' into {l}.",
            "How do you say '{e}' in {l}?",
            "What is the {l} for '{e}'? Answer with the {l} words only.",
        )
    )
    return draft(ask(template.format(e=english, l=language)), Words(accepted, rivals), "word")


def _spelling(rng: Random) -> CalibrationItem:
    wrong, right = rng.choice(MISSPELLINGS)
    template = rng.choice(
        (
            "Fix the spelling of this word: {w}",
            "The word '{w}' is misspelt. Write it correctly.",
            "Correct the spelling: {w}",
        )
    )
    return draft(ask(template.format(w=wrong)), Text((right,), rejected=(wrong,)), "text")


def _backwards(rng: Random) -> CalibrationItem:
    word = rng.choice((*WORDS, *FRUITS))
    template = rng.choice(
        ("Write the word '{w}' backwards.", "Spell '{w}' in reverse, as one word.")
    )
    reversed_word = word[::-1]
    return draft(ask(template.format(w=word)), Text((reversed_word,), rejected=(word,)), "text")


_KINDS: tuple[Callable[[Random], CalibrationItem], ...] = (
    _tense,
    _tense,
    _person,
    _replace_word,
    _reorder,
    _translate,
    _translate,
    _spelling,
    _backwards,
)


def rewriting(rng: Random) -> CalibrationItem:
    """A sentence or word to transform into a known result."""
    return rng.choice(_KINDS)(rng)
