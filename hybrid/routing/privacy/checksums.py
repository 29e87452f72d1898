"""Checksums and issuing rules: what makes a number a payment card, an IBAN or a national ID.

Every function takes the compact form of a candidate (digits, plus a trailing letter where the
format has one) that a number shape in :mod:`hybrid.routing.privacy.shapes` matched, and says
whether it can be real.  Everything here is a pure function or an immutable table.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType


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
