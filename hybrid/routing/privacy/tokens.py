"""What a secret token and an assigned credential look like: the tables behind the secret detectors.

A standalone secret is a random-looking run of token characters (:func:`random_token`); a
credential is a value assigned to a credential name (:data:`CREDENTIAL_PATTERNS`), written after
an HTTP auth scheme (:data:`AUTH_SCHEME_PATTERN`) or inside a URL
(:data:`URL_CREDENTIAL_PATTERN`).  Provider key formats live in
:mod:`hybrid.routing.privacy.formats`.  Everything here is a pure function or an immutable table.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import re
from collections import Counter

from hybrid.routing.privacy.formats import PLACEHOLDER_WORDS, holds_word

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
