"""Random strings for the generated corpora: alphabets, seeded draws, providers' encodings.

Every function takes the seeded ``random.Random`` it draws from, so the same seed gives the same
text.  Shared by ``secret_formats`` (real-format secrets) and ``ordinary_text`` (text that only
looks random); ``expand`` fills the templates of :data:`secret_formats.FORMATS`.
"""

from __future__ import annotations

import base64
import random
import re
import string
import uuid

DIGITS = string.digits
HEX = "0123456789abcdef"
UPPER_HEX = HEX.upper()
ALNUM = string.ascii_letters + string.digits
LETTERS = string.ascii_letters
BASE64 = ALNUM + "+/"
BASE64URL = ALNUM + "-_"
BASE32 = string.ascii_uppercase + "234567"
UPPER_ALNUM = string.ascii_uppercase + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"


def draw(rng: random.Random, alphabet: str, size: int) -> str:
    """``size`` characters drawn uniformly from ``alphabet``."""
    return "".join(rng.choice(alphabet) for _ in range(size))


def b64(data: bytes, *, url: bool = False, pad: bool = True) -> str:
    """``data`` in base64, URL-safe with ``url``, without ``=`` padding unless ``pad``."""
    text = (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()
    return text if pad else text.rstrip("=")


def base62(number: int, width: int) -> str:
    """``number`` in base62 (digits from :data:`ALNUM`), left-padded with ``0`` to ``width``."""
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = ALNUM[rest] + digits
    return digits.rjust(width, "0")


def uuid4(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng`` (``uuid.uuid4`` would ignore the seed)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def expand(rng: random.Random, template: str) -> str:
    """Fill a template: ``{hex:32}`` is 32 random hex digits; see :data:`ALPHABETS`."""
    return _FIELD.sub(lambda m: draw(rng, ALPHABETS[m[1]], int(m[2])), template)


ALPHABETS = {
    "digits": DIGITS, "hex": HEX, "HEX": UPPER_HEX, "alnum": ALNUM, "letters": LETTERS,
    "b64": BASE64, "b64url": BASE64URL, "b32": BASE32, "ALNUM": UPPER_ALNUM,
    "lalnum": LOWER_ALNUM, "bech32": BECH32, "azure": ALNUM + "_~.-",
}  # fmt: skip
_FIELD = re.compile(r"\{(\w+):(\d+)\}")
