"""Number shapes: how the privacy detectors find numbers before they validate them.

Everything here is a pure function or an immutable table.  Numbers are recognised by their
*shape*: the text is first translated so that every digit becomes ``0``, every upper-case
letter ``A`` and every lower-case letter ``a``; ``4111 1111 1111 1111`` then has the shape
``0000 0000 0000 0000`` and ``2024-01-15`` the shape ``0000-00-00``.  Only shapes listed in
:data:`NUMBER_SHAPES` are ever validated, so dates, times, versions, IP addresses and prices never
reach Python code at all; the listed ones must then pass their checksum or format rules
(:mod:`hybrid.routing.privacy.checksums`).

A *weak* shape (a bare run of 9, 11 or 12 digits, which order numbers and timestamps also have)
only counts when one of its keywords (``ssn``, ``cpf``, ...) appears just before the number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from hybrid.routing.privacy.checksums import (
    br_cpf_valid,
    card_valid,
    cn_resident_id_valid,
    es_dni_valid,
    fr_nir_valid,
    in_aadhaar_valid,
    nl_bsn_valid,
    phone_nanp_valid,
    phone_trunk_valid,
    us_ssn_valid,
)


@dataclass(frozen=True)
class NumberRule:
    """One way a number of a given shape can be sensitive.

    Attributes:
        detector: The detector name a hit carries (``phone``, ``national_id:us_ssn``, ...).
        check: Validates the compact form: the digits, plus a trailing letter where the shape
            has one (Spanish DNI, Chinese ``X``).
        context: When not empty, the shape is weak: one of these lower-case keywords must occur
            in the few characters before the number.
    """

    detector: str
    check: Callable[[str], bool]
    context: tuple[bytes, ...] = ()


_SSN_WORDS = (b"ssn", b"social security", b"ss#", b"ss no")
_BSN_WORDS = (b"bsn", b"burgerservicenummer", b"sofinummer", b"sofi")
_CPF_WORDS = (b"cpf",)
_AADHAAR_WORDS = (b"aadhaar", b"aadhar", b"uidai")

_CARD = NumberRule("payment_card", card_valid)
_NANP = NumberRule("phone", phone_nanp_valid)
_TRUNK = NumberRule("phone", phone_trunk_valid)


def _groups(sizes: tuple[int, ...], separator: str) -> str:
    return separator.join("0" * size for size in sizes)


def _number_shapes() -> dict[str, tuple[NumberRule, ...]]:
    """Every recognised shape, mapped to the rules tried on it in order."""
    table: dict[str, list[NumberRule]] = {}

    def add(shape: str, *rules: NumberRule) -> None:
        table.setdefault(shape, []).extend(rules)

    for length in range(13, 20):
        add("0" * length, _CARD)
    for sep in " -":
        for sizes in ((4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)):
            add(_groups(sizes, sep), _CARD)
    add("000-00-0000", NumberRule("national_id:us_ssn", us_ssn_valid))
    add("000 00 0000", NumberRule("national_id:us_ssn", us_ssn_valid))
    add(
        "0" * 9,
        NumberRule("national_id:us_ssn", us_ssn_valid, _SSN_WORDS),
        NumberRule("national_id:nl_bsn", nl_bsn_valid, _BSN_WORDS),
    )
    add("0000.00.000", NumberRule("national_id:nl_bsn", nl_bsn_valid))
    for shape in ("00000000A", "00000000-A", "00000000 A", "00.000.000-A", "00.000.000A"):
        add(shape, NumberRule("national_id:es_dni", es_dni_valid))
    for sep in " -":
        add(_groups((4, 4, 4), sep), NumberRule("national_id:in_aadhaar", in_aadhaar_valid))
    add("0" * 12, NumberRule("national_id:in_aadhaar", in_aadhaar_valid, _AADHAAR_WORDS))
    add("000.000.000-00", NumberRule("national_id:br_cpf", br_cpf_valid))
    add("0" * 11, NumberRule("national_id:br_cpf", br_cpf_valid, _CPF_WORDS))
    cn_id = NumberRule("national_id:cn_resident_id", cn_resident_id_valid)
    for shape in ("0" * 18, "0" * 17 + "A", "0" * 17 + "a", "000000 00000000 0000"):
        add(shape, cn_id)
    add("0" * 15, NumberRule("national_id:fr_nir", fr_nir_valid))
    add("0 00 00 00 000 000 00", NumberRule("national_id:fr_nir", fr_nir_valid))
    # Phones: only with separators, so that bare digit runs (ids, timestamps) never count.
    for shape in ("(000) 000-0000", "(000)000-0000", "(000) 000 0000", "(000) 000.0000"):
        add(shape, _NANP)
    for sep in "-. ":
        add(_groups((3, 3, 4), sep), _NANP)
    trunk_sizes = (
        (3, 4, 4), (4, 3, 4), (3, 3, 4), (4, 3, 3), (5, 3, 3), (2, 4, 4), (5, 6), (5, 5),
        (4, 6), (4, 7), (3, 7), (3, 8), (2, 8),
    )  # fmt: skip
    for sep in " -":
        for trunk in trunk_sizes:
            add(_groups(trunk, sep), _TRUNK)
    for sep in " .-":
        add(_groups((2, 2, 2, 2, 2), sep), _TRUNK)
    return {shape: tuple(rules) for shape, rules in table.items()}


NUMBER_SHAPES: Mapping[str, tuple[NumberRule, ...]] = MappingProxyType(_number_shapes())
"""Shape (digits as ``0``, letters as ``A``/``a``) -> the rules tried on it, in order."""

# --- regular expressions over the shape-translated text --------------------------------------


def _shape_table(other: int) -> bytes:
    table = bytearray([other]) * 256
    for code in range(256):
        char = chr(code)
        if "0" <= char <= "9":
            table[code] = ord("0")
        elif "A" <= char <= "Z":
            table[code] = ord("A")
        elif "a" <= char <= "z":
            table[code] = ord("a")
        elif char in " -./()+":
            table[code] = code
    return bytes(table)


SHAPE_TABLE = _shape_table(ord(" "))
"""``bytes.translate`` table to the shape text the number regexes search.

Every character that is not a letter, digit or one of ``-./()+`` becomes a space, so that a
number start (a digit after a space, ``=``, ``"``, ``:``, a newline ...) is always the two bytes
``" 0"``: a literal prefix the regex engine skips to quickly, instead of stopping at every digit
of a log line.  A shape with a space in it is then re-checked with :data:`STRICT_SHAPE_TABLE`.
"""

STRICT_SHAPE_TABLE = _shape_table(ord("_"))
"""Like :data:`SHAPE_TABLE`, but only a real space stays a space."""

# A number ends where no letter or digit follows, nor a dash, dot or slash joined to more digits
# ("123-45-6789-1" and "4111111111111111.5" are something else).
_NUMBER_END = rb"(?![0aA]|[\-./]0)"

_Trie: TypeAlias = dict[str, "_Trie"]


def _trie_pattern(shapes: list[str]) -> bytes:
    """One regex matching any of ``shapes`` followed by a number end, built as a trie.

    A trie (rather than one alternative per shape) keeps the work per candidate constant
    however many shapes there are: the regex engine never re-reads a prefix it has matched.
    Longer continuations come before the end of a shorter shape.
    """
    trie: _Trie = {}
    for shape in shapes:
        node = trie
        for char in shape:
            node = node.setdefault(char, {})
        node[""] = {}

    def render(node: _Trie) -> str:
        options = [re.escape(char) + render(child) for char, child in sorted(node.items()) if char]
        if "" in node:
            options.append(_NUMBER_END.decode())
        return options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"

    return render(trie).encode()


def number_pattern(shapes: Collection[str]) -> re.Pattern[bytes]:
    """A regex finding any of ``shapes`` in the shape text.

    The shapes either all start with ``(`` (``(555) 123-4567``: the match starts at the
    parenthesis) or none does; then the match starts at the space before the number, since a
    number right after ``-``, ``.``, ``/`` or a letter is part of something else (a version, a
    path, a serial).  The shape text starts with a space, so the first number needs no other
    case.

    Raises:
        ValueError: ``shapes`` is empty or mixes the two kinds.
    """
    parens = {shape.startswith("(") for shape in shapes}
    if len(parens) != 1:
        raise ValueError("number_pattern needs shapes that all, or none, start with '('")
    if parens.pop():
        return re.compile(rb"\(" + _trie_pattern(sorted(shape[1:] for shape in shapes)))
    return re.compile(rb" " + _trie_pattern(sorted(shapes)))


LETTERS_PATTERN = re.compile(
    rb"AA(?<![0aA]AA)"
    rb"(?:(?P<iban>00(?>(?: ?[A0]{4}){2,7})(?: ?[A0]{1,4})?)"
    rb"|(?P<nino>0{6}A| 00 00 00 A))"
    rb"(?![0aA])"
)
"""IBANs (``GB82 WEST 1234 ...``) and UK NINOs (``AB 12 34 56 C``) in the shape text."""

E164_PATTERN = re.compile(
    rb"\+(?<![0aA]\+)(?=(?:[ \-.()]{0,2}0){8})"
    rb"(?>0+(?:(?:[ \-.]|[ \-.]?\(|\)[ \-.]?)0+)*)(?![0aA])"
)
"""``+`` and at least eight digits in groups (``+44 (0)20 7946 0958``) in the shape text.

Possessive and atomic groups throughout: a long run of almost-matches never backtracks.
"""
