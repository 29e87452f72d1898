"""Personal-data detectors, and the user's own patterns and paths.

E-mail addresses (:class:`EmailDetector`), payment cards, phone numbers, IBANs and national IDs
(:class:`NumberDetector`, by shape and checksum), and whatever the user's ``routing.privacy``
patterns and paths describe.  The secret detectors live in :mod:`hybrid.routing.privacy.secrets`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path

from hybrid.errors import ConfigError
from hybrid.routing.privacy.checksums import (
    IBAN_LENGTHS,
    gb_nino_valid,
    iban_valid,
    phone_e164_valid,
)
from hybrid.routing.privacy.shapes import (
    E164_PATTERN,
    LETTERS_PATTERN,
    NUMBER_SHAPES,
    STRICT_SHAPE_TABLE,
    NumberRule,
    number_pattern,
)
from hybrid.routing.privacy.text import Detector, PrivacyHit, ScanText, keywords

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

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class EmailDetector(Detector):
    """E-mail addresses; a ``user:password@`` in a URL is reported as a credential instead."""

    def __init__(self, enabled: Collection[str]) -> None:
        self._email = "email" in enabled
        self._credential = "secret:credential" in enabled

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        data = text.ascii
        at = data.find(b"@")
        while at != -1:
            hit = self._address(text, at)
            if hit is not None:
                yield hit
            at = data.find(b"@", at + 1)

    def _address(self, text: ScanText, at: int) -> PrivacyHit | None:
        data = text.ascii
        # The local part: up to 64 address characters before the "@" (C-speed rstrip, so
        # that a text full of "@" stays linear), never starting with a dot.
        before = data[max(0, at - 64) : at]
        local = before[len(before.rstrip(EMAIL_LOCAL_CHARS)) :].lstrip(b".")
        if not local:
            return None
        start = at - len(local)
        if data[start - 1 : start] == b"?":  # maybe a non-ASCII letter: "jürgen@..."
            start = self._international_start(text.text, start, at)
        if data[start - 1 : start] == b":":  # https://user:password@host
            before = data[max(0, start - 65) : start - 1]
            user = start - 1 - (len(before) - len(before.rstrip(EMAIL_LOCAL_CHARS)))
            if data[user - 2 : user] == b"//":
                # "user:pass@" and "joe:password@" are how documentation writes it.
                password = data[start:at]
                real = self._credential and not password.isalpha()
                return PrivacyHit("secret:credential", user, at) if real else None
        domain = EMAIL_DOMAIN_PATTERN.match(data, at + 1)
        if not self._email or domain is None or domain["tld"].lower() in FILE_EXTENSIONS:
            return None
        end = domain.end()
        if data[end : end + 1] == b":" and data[end + 1 : end + 2] not in (b"", b" ", b"\n"):
            return None  # git@github.com:owner/repo.git is an SSH remote
        return PrivacyHit("email", start, end)

    @staticmethod
    def _international_start(source: str, start: int, at: int) -> int:
        while start > 0 and at - start < 64:
            char = source[start - 1]
            if not (char.isalnum() or (char.isascii() and char in "._%+-")):
                break
            start -= 1
        return start


class NumberDetector(Detector):
    """Payment cards, phone numbers, IBANs and national IDs, found by shape and validated.

    Offsets in ``ScanText.shapes`` are one past those in the text (it starts with a space).
    """

    _SEPARATORS = b" -.()/+"
    _PHONE_CHARS = b"0123456789 -.()+"

    def __init__(self, enabled: Collection[str]) -> None:
        rules: dict[bytes, tuple[NumberRule, ...]] = {}
        for shape, shape_rules in NUMBER_SHAPES.items():
            kept = tuple(rule for rule in shape_rules if rule.detector in enabled)
            if kept:
                rules[shape.encode()] = kept
        self._rules = rules
        # A weak shape (a bare run of digits, as in JSON ids) needs a keyword just before it;
        # ids are common, so look for the keyword first, before any other work.
        self._weak = {
            shape: keywords(*(word for rule in kept for word in rule.context))
            for shape, kept in rules.items()
            if all(rule.context for rule in kept)
        }
        self._contexts = {
            rule: keywords(*rule.context)
            for kept in rules.values()
            for rule in kept
            if rule.context
        }
        # Only the enabled shapes: a scanner for cards alone does less work per digit.
        plain = [s.decode() for s in rules if not s.startswith(b"(")]
        parens = [s.decode() for s in rules if s.startswith(b"(")]
        self._plain = number_pattern(plain) if plain else None
        self._parens = number_pattern(parens) if parens else None
        self._phone = "phone" in enabled
        self._iban = "iban" in enabled
        self._nino = "national_id:gb_nino" in enabled

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        if self._plain is not None:
            # The match includes the space before the number: text offsets [start, end).
            for match in self._plain.finditer(text.shapes):
                hit = self._number(text, match.start(), match.end() - 1)
                if hit is not None:
                    yield hit
        if self._parens is not None and b"(" in text.ascii:
            # The match starts at the "(": text offsets [start - 1, end - 1).
            for match in self._parens.finditer(text.shapes):
                hit = self._number(text, match.start() - 1, match.end() - 1)
                if hit is not None:
                    yield hit
        if self._phone and b"+" in text.ascii:
            for match in E164_PATTERN.finditer(text.shapes):
                start, end = match.start() - 1, match.end() - 1
                raw = text.ascii[start:end]
                digits = raw.translate(None, self._SEPARATORS).decode()
                last_group = len(raw) - len(raw.rstrip(b"0123456789"))
                if (
                    not raw.translate(None, self._PHONE_CHARS)  # real spaces only
                    and raw.count(b"(") == raw.count(b")") <= 1
                    and last_group >= 2  # "+35236450.6" is a decimal number
                    and digits.isdigit()
                    and phone_e164_valid(digits)
                ):
                    yield PrivacyHit("phone", start, end)
        if self._iban or self._nino:
            for match in LETTERS_PATTERN.finditer(text.shapes):
                hit = self._letters(text.ascii, match)
                if hit is not None:
                    yield hit

    def _number(self, text: ScanText, start: int, end: int) -> PrivacyHit | None:
        shape = text.shapes[start + 1 : end + 1]
        weak = self._weak.get(shape)
        if weak is not None and not text.preceded_by(start, weak):
            return None
        rules = self._rules.get(shape)
        raw = text.ascii[start:end]
        # The shape text turns every punctuation mark into a space: "4111,1111,..." must not
        # pass for "4111 1111 ...".
        if rules is None or raw.translate(STRICT_SHAPE_TABLE) != shape:
            return None
        compact = raw.translate(None, self._SEPARATORS).decode()
        for rule in rules:
            if rule.context and not text.preceded_by(start, self._contexts[rule]):
                continue
            if rule.check(compact):
                return PrivacyHit(rule.detector, start, end)
        return None

    def _letters(self, data: bytes, match: re.Match[bytes]) -> PrivacyHit | None:
        start, end = match.start() - 1, match.end() - 1
        raw = data[start:end].decode()
        compact = raw.replace(" ", "")
        if not compact.isalnum():
            return None  # separated by something other than real spaces
        if match.lastgroup == "nino":
            valid = self._nino and gb_nino_valid(compact)
            return PrivacyHit("national_id:gb_nino", start, end) if valid else None
        expected = IBAN_LENGTHS.get(compact[:2], 0)
        if not self._iban or len(compact) < expected:
            return None
        if len(compact) > expected:
            # A spaced IBAN may be followed by another group of digits: cut at its length.
            cut, seen = 0, 0
            while seen < expected:
                seen += raw[cut] != " "
                cut += 1
            if raw[cut] != " ":
                return None
            compact, end = compact[:expected], start + cut
        return PrivacyHit("iban", start, end) if iban_valid(compact) else None


class UserPatternDetector(Detector):
    """The user's own regular expressions, each reported as ``user_pattern:<name>``."""

    def __init__(self, patterns: Mapping[str, str]) -> None:
        compiled: list[tuple[str, re.Pattern[str]]] = []
        for name, source in patterns.items():
            if not _NAME.fullmatch(name):
                raise ConfigError(
                    f"privacy pattern name {name!r} is not allowed; use letters, digits, "
                    f"'_', '.' and '-' only, since the name appears in routing reasons."
                )
            try:
                pattern = re.compile(source)
            except re.error as exc:
                raise ConfigError(
                    f"privacy pattern {name!r} is not a valid regular expression ({exc}); "
                    f"fix it or remove it from the config."
                ) from exc
            if pattern.search(""):
                raise ConfigError(
                    f"privacy pattern {name!r} matches empty text, so it would keep every "
                    f"request local; make it match at least one character."
                )
            compiled.append((f"user_pattern:{name}", pattern))
        self.names = tuple(detector for detector, _ in compiled)
        self._patterns = tuple(compiled)

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        for detector, pattern in self._patterns:
            for match in pattern.finditer(text.text):
                if match.end() > match.start():
                    yield PrivacyHit(detector, *match.span())


class PathDetector(Detector):
    """Mentions of configured paths; ``~`` matches both itself and the home directory."""

    _PATH_END = re.compile(r"[^\s'\"`<>|;,()\[\]{}]*")
    _NAME_CHARS = frozenset("._-~")

    def __init__(self, prefixes: Sequence[str], *, home: Path | None) -> None:
        try:
            home_text = str(home or (Path.home() if prefixes else "")).rstrip("/")
        except RuntimeError:  # no HOME and no passwd entry: match paths as written
            home_text = ""
        needles: list[tuple[str, str]] = []
        for prefix in prefixes:
            stripped = prefix.rstrip("/")
            if not prefix.strip() or not stripped:
                raise ConfigError(
                    f"privacy path {prefix!r} would match every path; name the directory "
                    f"whose files must stay on this machine (e.g. '~/work/acme')."
                )
            needles += [(n, f"path:{prefix}") for n in _path_spellings(stripped, home_text)]
        self.names = tuple(dict.fromkeys(detector for _, detector in needles))
        self._needles = tuple(needles)

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        source = text.text
        for needle, detector in self._needles:
            index = source.find(needle)
            while index != -1:
                after = index + len(needle)
                if self._bounded(source, index, after, needle.endswith("/")):
                    end = self._PATH_END.match(source, after)
                    stop = end.end() if end else after
                    while stop > after and source[stop - 1] in ".:!?":
                        stop -= 1  # sentence punctuation after the path
                    yield PrivacyHit(detector, index, stop)
                index = source.find(needle, index + 1)

    def _bounded(self, source: str, start: int, end: int, open_end: bool) -> bool:
        if start > 0 and not source.endswith("file://", 0, start):
            before = source[start - 1]
            if before.isalnum() or before in self._NAME_CHARS or before == "/":
                return False  # "/mnt/srv/secret" is not "/srv/secret"
        if open_end or end == len(source):
            return True
        after = source[end]
        if after == ".":  # "/srv/secret." ends a sentence; "/srv/secret.d" is another name
            return end + 1 == len(source) or not source[end + 1].isalnum()
        return not (after.isalnum() or after in self._NAME_CHARS)


def _path_spellings(prefix: str, home: str) -> list[str]:
    """The ways a path may appear: as configured, and with ``~``, the home dir or ``$HOME``."""
    if prefix == "~" or prefix.startswith("~/"):
        tail = prefix[1:]
    elif home and (prefix == home or prefix.startswith(home + "/")):
        tail = prefix[len(home) :]
    else:
        return [prefix]
    bases = ("~", home, "$HOME", "${HOME}") if home else ("~", "$HOME", "${HOME}")
    return [base + (tail or "/") for base in bases]
