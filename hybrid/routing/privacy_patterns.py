"""The tables and checksums behind the privacy detectors in :mod:`hybrid.routing.privacy`.

Everything here is a pure function or an immutable table.  Numbers are recognised by their
*shape*: the text is first translated so that every digit becomes ``0``, every upper-case
letter ``A`` and every lower-case letter ``a``; ``4111 1111 1111 1111`` then has the shape
``0000 0000 0000 0000`` and ``2024-01-15`` the shape ``0000-00-00``.  Only shapes listed in
:data:`NUMBER_SHAPES` are ever validated, so dates, times, versions, IP addresses and prices never
reach Python code at all; the listed ones must then pass their checksum or format rules.

A *weak* shape (a bare run of 9, 11 or 12 digits, which order numbers and timestamps also have)
only counts when one of its keywords (``ssn``, ``cpf``, ...) appears just before the number.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from hybrid.routing.secret_formats import PLACEHOLDER_WORDS, holds_word

# --- checksums and format rules --------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn (mod 10) check used by payment cards.

    Args:
        digits: Only the characters ``0``-``9``; at least two of them.

    Returns:
        True when the weighted digit sum is a multiple of ten.
    """
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return len(digits) > 1 and total % 10 == 0


def card_valid(digits: str) -> bool:
    """Whether ``digits`` can be a payment card number.

    The issuer prefix must belong to a card network and the length be one it issues (Visa 4:
    13/16/19; Amex 34/37: 15; Mastercard 51-55 and 2221-2720: 16; Diners, JCB, Discover,
    UnionPay, Mir: 14/16-19; Maestro 50/56-69: 16), the digits must not all be the same and
    the Luhn check digit must be right.  Bare 18-digit hashes and ids pass Luhn one time in ten,
    so the network rules matter.
    """
    size = len(digits)
    if not 13 <= size <= 19 or digits == digits[0] * size:
        return False
    two, three, four = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":
        lengths: Collection[int] = (13, 16, 19)
    elif two in (34, 37):
        lengths = (15,)
    elif 51 <= two <= 55 or 2221 <= four <= 2720:
        lengths = (16,)
    elif two in (36, 38, 39) or 300 <= three <= 305:
        lengths = range(14, 20)
    elif 3528 <= four <= 3589 or four == 6011 or 644 <= three <= 649 or two in (62, 65):
        lengths = range(16, 20)
    elif 2200 <= four <= 2204:
        lengths = range(16, 20)
    elif two == 50 or 56 <= two <= 69:
        lengths = (16,)
    else:
        return False
    return size in lengths and luhn_valid(digits)


IBAN_LENGTHS: Mapping[str, int] = MappingProxyType(
    {
        "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
        "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
        "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
        "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
        "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
        "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
        "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
        "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
        "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
        "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
        "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
    }
)  # fmt: skip
"""Length of a full IBAN per country (the SWIFT IBAN registry)."""


def iban_valid(iban: str) -> bool:
    """Whether ``iban`` (upper case, no spaces) is a well-formed IBAN.

    The country must be in :data:`IBAN_LENGTHS` with exactly that length, and the ISO 7064
    mod-97 check over the rearranged number must give 1.
    """
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def us_ssn_valid(digits: str) -> bool:
    """US Social Security Number rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_NINO_FIRST_BANNED = frozenset("DFIQUV")
_NINO_SECOND_BANNED = frozenset("DFIOQUV")
_NINO_PREFIX_BANNED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def gb_nino_valid(nino: str) -> bool:
    """UK National Insurance number rules for ``AB123456C`` (no spaces, upper case).

    Neither prefix letter may be D, F, I, Q, U or V, the second not O either; BG, GB, KN, NK,
    NT, TN and ZZ are never issued; the suffix is A, B, C or D.
    """
    return (
        len(nino) == 9
        and nino[0] not in _NINO_FIRST_BANNED
        and nino[1] not in _NINO_SECOND_BANNED
        and nino[:2] not in _NINO_PREFIX_BANNED
        and nino[2:8].isdigit()
        and nino[8] in "ABCD"
    )


def es_dni_valid(dni: str) -> bool:
    """Spanish DNI: eight digits and the control letter for their value modulo 23."""
    return (
        len(dni) == 9
        and dni[:8].isdigit()
        and dni[8] == "TRWAGMYFPDXBNJZSQVHLCKE"[int(dni[:8]) % 23]
    )


def nl_bsn_valid(digits: str) -> bool:
    """Dutch BSN: nine digits passing the "11-test" (weights 9..2 and -1)."""
    if len(digits) != 9 or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    return (total - int(digits[8])) % 11 == 0


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6), (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4), (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)  # fmt: skip
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2), (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)  # fmt: skip


def verhoeff_valid(digits: str) -> bool:
    """Whether a digit string (check digit last) passes the Verhoeff check."""
    check = 0
    for index, char in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[index % 8][ord(char) - 48]]
    return check == 0


def in_aadhaar_valid(digits: str) -> bool:
    """Indian Aadhaar: twelve digits, not starting with 0 or 1, Verhoeff check digit last."""
    return len(digits) == 12 and digits[0] not in "01" and verhoeff_valid(digits)


def br_cpf_valid(digits: str) -> bool:
    """Brazilian CPF: eleven digits, not all equal, both mod-11 check digits right."""
    if len(digits) != 11 or digits == digits[0] * 11:
        return False
    values = [int(d) for d in digits]
    for size in (9, 10):
        total = sum(v * w for v, w in zip(values[:size], range(size + 1, 1, -1), strict=True))
        if (total * 10) % 11 % 10 != values[size]:
            return False
    return True


_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_resident_id_valid(number: str) -> bool:
    """Chinese resident identity card number (18 characters, the last a digit or X).

    The region code starts with 1-8, the birth date (characters 7-14) is a plausible date in
    1900-2099, and the ISO 7064 MOD 11-2 check character matches.
    """
    number = number.upper()
    if len(number) != 18 or not number[:17].isdigit() or number[0] in "09":
        return False
    year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    if not (1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _CN_WEIGHTS, strict=True))
    return number[17] == "10X98765432"[total % 11]


def fr_nir_valid(digits: str) -> bool:
    """French social security number (NIR): 13 digits and a 2-digit key, 97 - (n mod 97).

    The first digit (sex/status) must be 1, 2, 3, 4, 7 or 8 and the month 01-12 or one of the
    special values 20, 30-42, 50-99 the INSEE uses.  Corsican numbers (2A/2B) are not matched.
    """
    if len(digits) != 15 or digits[0] not in "123478":
        return False
    month = int(digits[3:5])
    if not (1 <= month <= 12 or month == 20 or 30 <= month <= 42 or month >= 50):
        return False
    return 97 - int(digits[:13]) % 97 == int(digits[13:])


def phone_nanp_valid(digits: str) -> bool:
    """North American number: the area code starts with 2-9.

    The exchange should too, but ``555-123-4567`` is how everyone writes an example number.
    """
    return len(digits) == 10 and digits[0] not in "01"


def phone_trunk_valid(digits: str) -> bool:
    """A national number written with its trunk prefix 0 (``020 7946 0958``), 10-11 digits."""
    return 10 <= len(digits) <= 11 and digits[0] == "0" and digits[1] != "0"


def phone_e164_valid(digits: str) -> bool:
    """An international number after ``+``: 8 to 15 digits in an assigned country code.

    ``+1`` must be followed by a North American number; no country code starts with 0, 28, 83
    or 89, which keeps signed numbers in code (``+281474976710656``) out.
    """
    if not 8 <= len(digits) <= 15 or digits[0] == "0" or digits[:2] in ("28", "83", "89"):
        return False
    return digits[0] != "1" or (len(digits) == 11 and phone_nanp_valid(digits[1:]))


def shannon_entropy(token: bytes) -> float:
    """Shannon entropy of ``token`` in bits per character (0 for an empty token)."""
    size = len(token)
    return -sum(n / size * math.log2(n / size) for n in Counter(token).values()) if size else 0.0


_NOT_UPPER = bytes(c for c in range(256) if not 65 <= c <= 90)
_NOT_LOWER = bytes(c for c in range(256) if not 97 <= c <= 122)
_NOT_DIGIT = bytes(c for c in range(256) if not 48 <= c <= 57)
_WORD = re.compile(rb"[A-Z]?[a-z]{3,}")
# A piece of a dashed, underscored or slashed name made of words: "Developer", "SDKs",
# "MacOSX10", "N10pem", "8x7B", "v0".  A random piece almost always has a lone letter somewhere.
_WORD_PIECE = re.compile(
    rb"(?:[A-Z]?[a-z]{2,}|[A-Z]{2,}s?(?![a-z])|[0-9]+[A-Za-z]?(?![a-z])|[A-Za-z](?=[0-9]))+|[a-z]"
)
# An API object id: a lower-case type word and one random body ("toolu_01D7FL...", "call_...",
# "chatcmpl-...", "cus_...").  Agent transcripts are full of them; they grant nothing.
_TYPED_ID = re.compile(rb"([a-z]{2,12})[_-][A-Za-z0-9]{12,}")
_SECRET_TYPE_WORDS = re.compile(
    rb"sk|rk|pk|.*(?:key|secret|token|pat|pass|pwd|auth|api|priv|access|cred).*"
)
# Base64 of public data: PNG, JPEG, GIF, WebP/RIFF, PDF, gzip, zip, binary plist and XML
# files, and SSH public keys (ssh-rsa, ssh-ed25519, ecdsa-sha2-*).
_FILE_SIGNATURES = (
    b"iVBORw0KGgo", b"/9j/", b"R0lGOD", b"UklGR", b"JVBERi0", b"H4sI", b"UEsDB", b"YnBsaXN0",
    b"PD94bWwg", b"AAAAB3NzaC1", b"AAAAC3NzaC1", b"AAAAE2VjZHNh",
)  # fmt: skip
# A content digest written with its algorithm: npm, yarn and pnpm lockfiles and subresource
# integrity ("sha512-<base64>"), Nix ("sha256-..."), go.sum ("h1:<base64>").  Public by nature.
_HASH_LABEL = re.compile(rb"(?:sha(?:1|224|256|384|512)|md5|blake2[bs]?)-")
HASH_LABELS_BEFORE = (
    b"h1:", b"sha1:", b"sha256:", b"sha384:", b"sha512:", b"md5:",
    b"sha256=", b"sha512=", b"sha-256=", b"sha-512=", b"SHA-256=", b"SHA-512=",
)  # fmt: skip
"""Text just before a base64 token that makes it a content digest: ``h1:`` in go.sum,
``sha256=`` in a wheel's RECORD, ``Digest: sha-256=`` in HTTP headers."""
_PIECE_SEPARATORS = re.compile(rb"[-_/+]")
_BASE64URL_TO_BASE64 = bytes.maketrans(b"-_", b"+/")


def random_token(token: bytes, entropy_threshold: float) -> bool:
    """Whether a base64-alphabet token looks like a random secret.

    It must mix at least two upper-case letters, two lower-case letters and a digit, and have
    more than ``entropy_threshold`` bits of entropy per character.  It must not be made of
    words (``RecvmsgRFC3542AncillaryUDPLITE6Test``, ``N10pem_ctx_st4DOLLAR_16E``,
    ``dk/i18n/charmaps/HP-ROMAN8``), hold a run of ascending characters (``...xyz0123...``),
    decode from base64 to readable text (a MIME body, an XML plist: content, not a key), start
    like a base64 file (PNG, gzip ...) or SSH public key, be a labelled content digest
    (``sha512-...`` in a lockfile), hold a placeholder word (AWS's documented
    ``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY``), or be an API object id (``toolu_...``,
    ``call_...``: a type word, unless it says key, token, secret ..., and a random body).
    Random keys of 24 characters fail these tests about 4 % of the time, of 48 under 1 %.

    Args:
        token: Characters from ``TOKEN_CHARS``.
        entropy_threshold: Bits per character a secret must exceed.
    """
    if (
        len(token.translate(None, _NOT_UPPER)) < 2
        or len(token.translate(None, _NOT_LOWER)) < 2
        or not token.translate(None, _NOT_DIGIT)
    ):
        return False
    if sum(len(word) for word in _WORD.findall(token)) * 2 >= len(token):
        return False
    typed = _TYPED_ID.fullmatch(token)
    if typed and not _SECRET_TYPE_WORDS.fullmatch(typed[1]):
        return False
    pieces = [piece for piece in _PIECE_SEPARATORS.split(token) if piece]
    if len(pieces) > 1 and sum(bool(_WORD_PIECE.fullmatch(x)) for x in pieces) * 2 > len(pieces):
        return False
    if (
        sum(b == a + 1 for a, b in itertools.pairwise(token)) >= 6
        or token.startswith(_FILE_SIGNATURES)
        or _HASH_LABEL.match(token)
        or holds_word(token)
    ):
        return False
    return shannon_entropy(token) > entropy_threshold and not _encoded_text(token)


def _encoded_text(token: bytes) -> bool:
    """Whether ``token`` is base64 (or base64url) of readable UTF-8 text."""
    body = token.translate(_BASE64URL_TO_BASE64)
    try:
        decoded = base64.b64decode(body[: len(body) // 4 * 4], validate=True)
    except binascii.Error:
        return False
    # A line cut from a longer stream may split a character at either end: allow two.
    text = decoded.decode("utf-8", "replace")
    readable = sum(char.isprintable() or char in "\n\r\t" for char in text)
    return bool(text) and readable >= 0.9 * len(text) and text.count("\ufffd") <= 2


# --- number shapes ---------------------------------------------------------------------------


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


def keywords(*words: bytes) -> re.Pattern[bytes]:
    """A pattern finding any of ``words`` (lower case) in lower-cased text."""
    return re.compile(b"|".join(re.escape(word) for word in words))


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

# --- tokens: API keys and secrets (provider formats: hybrid.routing.secret_formats) -----------

TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/"
"""Characters of a key or secret token: base64 and base64url without the ``=`` padding."""

TOKEN_TABLE = bytes(ord("t") if code in TOKEN_CHARS else ord(" ") for code in range(256))
"""``bytes.translate`` table: token characters become ``t``, everything else a space."""


IDENTIFIER_PATTERN = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
"""The shape of a variable or attribute (``token_v2``, ``self.token``)."""

# A name's digits end its words ("token_v2", "password2"); a generated value's fall anywhere.
_NAME_PART = re.compile(
    rb"_*(?:[a-z]+[0-9]*(?:_+[a-z0-9]+)*|[A-Z]+[0-9]*(?:_+[A-Z0-9]+)*"
    rb"|[A-Za-z][a-z]*(?:[A-Z][a-z]+)*[0-9]*)_*"
)


def names_a_variable(value: bytes) -> bool:
    """Whether an identifier-shaped value reads as a name (``self.password2``, ``token_v2``,
    ``settings.DB_PASSWORD``, ``config.apiKey``) rather than a generated password that fits the
    shape (``_3vaY8AnGzzE.O6``): every dotted part is snake_case, CONSTANT_CASE or camelCase."""
    return all(_NAME_PART.fullmatch(part) for part in value.split(b"."))


CREDENTIAL_PATTERNS: tuple[tuple[re.Pattern[bytes], str], ...] = tuple(
    (
        re.compile(
            rb"(?P<kw>" + keyword + rb")"
            rb"[\"']?[ \t]*(?::=|=>|[:=])[ \t]*[\"']?(?P<value>[^\s\"'`,;(){}\[\]<>]{8,256}+)"
            rb"(?![^\s\"'`,;(){}\[\]<>])"
        ),
        name_rule,
    )
    for keyword, name_rule in (
        (
            rb"key",
            r"(?:api|access|secret|private|auth|client|master|encryption|signing|account"
            r"|sharedaccess)[_-]?key",
        ),
        (rb"secret", r"secret"),
        (rb"token", r"token"),
        (rb"pass(?:word|wd|phrase)?", r"pass(?:word|wd|phrase)?"),
    )
)
"""Assignments of a credential (``password=...``, ``"api_key": "..."``) in lower-cased text.

Each regex starts with a literal keyword so that the search runs at ``str.find`` speed; the
paired rule must match the end of the assigned name (``db_password``, ``x-api-key``), which
keeps ``monkey = ...`` and ``cache_key = ...`` out.
"""

AUTH_SCHEME_PATTERN = re.compile(
    rb"b(?:earer[ \t]+(?P<bearer>[a-z0-9._~+/-]{16,}+=*+)(?![a-z0-9._~+/=-])"
    rb"|asic[ \t]+(?P<basic>[a-z0-9+/]{8,}+={0,2}+)(?![a-z0-9+/=]))"
)
"""``Authorization: Bearer <token>`` and ``Basic <base64 of user:password>`` in lower-cased
text (one regex: its literal start makes the search cost one pass, not two)."""


def basic_auth_password(value: bytes) -> bytes | None:
    """The password in an HTTP Basic credential (base64 of ``user:password``), if it is one."""
    try:
        decoded = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
    except binascii.Error:
        return None
    _, colon, password = decoded.partition(b":")
    readable = decoded.isascii() and decoded.decode().isprintable()
    return password if colon and readable else None


URL_CREDENTIAL_PATTERN = re.compile(
    rb"://(?P<user>[A-Za-z0-9._~%!$&*+,;=-]{0,64}+):(?P<password>[^\s/@?#\"'`<>\[\]{}|\\]{1,128}+)@"
    rb"(?=[A-Za-z0-9\[])"
)
"""``scheme://user:password@host`` (a database URL): the password may hold any printable
character that does not end the URL's user part."""

CREDENTIAL_PLACEHOLDER_WORDS = (*PLACEHOLDER_WORDS, b"replace", b"dummy", b"sample")
"""Placeholders in assigned credentials (``password: example123``, ``REPLACE_ME_1``)."""

# --- e-mail ----------------------------------------------------------------------------------

EMAIL_LOCAL_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"
"""Characters of an address's local part (the common subset of RFC 5322's dot-atom)."""

EMAIL_DOMAIN_PATTERN = re.compile(
    rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?P<tld>[A-Za-z]{2,63})"
    rb"(?![A-Za-z0-9-])"
)
"""The domain after ``@``: dot-separated labels and an alphabetic top-level domain."""

FILE_EXTENSIONS = frozenset(
    b"png jpg jpeg gif svg webp bmp ico tif tiff pdf js mjs cjs ts tsx jsx css scss html htm "
    b"json yaml yml toml xml md txt py rb go rs java kt swift c h cpp hpp cs php sh lock log "
    b"csv zip gz tar".split()
)
"""Top-level domains that are far more often file extensions (``icon@2x.png``, ``a@b.py``)."""
