"""Privacy detectors: personal and secret data that must never leave the machine.

A :class:`PrivacyScanner` finds e-mail addresses, phone numbers, payment cards, IBANs, national
ID numbers, API keys, tokens, passwords, private keys, and anything the user's own patterns or
paths describe.  A hit names its detector and a span; it never carries the matched text, so a
routing reason built from it cannot leak what it protects.  The personal-data detectors live
here; the secret detectors in :mod:`hybrid.routing.secret_detectors`.

Precision matters as much as recall (a false hit keeps a request on the small local model), so
candidates are validated: Luhn and issuer prefixes for cards, mod 97 and per-country lengths for
IBANs, the checksum or issuing rules of each national ID.  Numbers are matched by shape (see
:mod:`hybrid.routing.privacy_patterns`): dates, times, versions, IP addresses, prices and
UUIDs have no listed shape and are never considered.  Judgement calls, each tested:

* Phones need separators (``(555) 123-4567``, ``020 7946 0958``) or a leading ``+``; a bare
  digit run is an id, not a phone.  Bare 9/11/12-digit runs count as an SSN, BSN, CPF or
  Aadhaar number only right after a keyword (``SSN``, ``BSN``, ``CPF``, ``Aadhaar``).
* A standalone secret is a token of at least ``min_secret_length`` base64 characters that mixes
  upper case, lower case and digits, whose entropy per character is above the threshold, and
  that is not made of words (identifiers, URL paths, ``AWS4-HMAC-SHA256``).  Hex strings (git
  SHAs, sha256 digests, UUIDs) have one case only and are not secrets on their own; after a
  credential name (``secret: 8f14e45f...``) they are.  Base64 longer than 256 characters or in
  a ``data:`` URI is file content (images), not a secret; so is a labelled digest
  (``sha512-...`` in a lockfile, ``h1:...`` in go.sum, ``sha256=...`` in a wheel's RECORD).
* Provider keys are recognised by format (:mod:`hybrid.routing.secret_formats`), whatever their
  body's case (``sk-proj-`` and hex digits is a key), also inside an escaped JSON string
  (``\\nsk-ant-...``).  Keys that look like documentation placeholders (``sk-xxxxxxxx...``,
  ``sk-your-key-here``, AWS's ``AKIAIOSFODNN7EXAMPLE``) are not hits; assigned credentials
  need a digit too (``password: correcthorse`` is not flagged).
* ``git@github.com:owner/repo`` is an SSH remote, not an e-mail address; ``icon@2x.png`` is a
  file name.  ``postgres://app:s3cret!@db`` is a credential, not an e-mail address; so is
  ``Authorization: Basic <base64 of user:password>``.

Scanning works on an ASCII image of the text (every other character becomes ``?``, so offsets
stay the same); non-ASCII addresses and digits are not recognised.  User patterns and paths are
matched on the original text.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path

from hybrid.errors import ConfigError
from hybrid.routing import privacy_patterns as p
from hybrid.routing.privacy_text import Detector, PrivacyHit, ScanText
from hybrid.routing.secret_detectors import (
    MAX_SECRET_LENGTH,
    CredentialDetector,
    PrivateKeyDetector,
    SecretPatternDetector,
    TokenDetector,
)
from hybrid.routing.secret_formats import DELIMITED_FORMATS, KEY_FORMATS, SECRET_PATTERNS

__all__ = ["BUILTIN_DETECTORS", "Detector", "PrivacyHit", "PrivacyScanner", "ScanText"]

_FORMAT_DETECTORS = [
    *(x.detector for x in KEY_FORMATS),
    *(x.detector for x in DELIMITED_FORMATS),
    *(x.detector for x in SECRET_PATTERNS),
]

BUILTIN_DETECTORS: tuple[str, ...] = (
    "email", "phone", "payment_card", "iban",
    *(f"national_id:{kind}" for kind in (
        "us_ssn", "gb_nino", "es_dni", "nl_bsn", "in_aadhaar", "br_cpf", "cn_resident_id", "fr_nir"
    )),
    *dict.fromkeys(name for name in _FORMAT_DETECTORS if name.startswith("api_key:")),
    "api_key:jwt", "api_key:bearer",
    "secret:high_entropy", "secret:credential", "private_key",
)  # fmt: skip
"""Every built-in detector.  ``api_key``, ``national_id`` and ``secret`` name whole families."""

_SECRET_FAMILIES = ("private_key", "api_key:", "secret:")
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
        local = before[len(before.rstrip(p.EMAIL_LOCAL_CHARS)) :].lstrip(b".")
        if not local:
            return None
        start = at - len(local)
        if data[start - 1 : start] == b"?":  # maybe a non-ASCII letter: "jürgen@..."
            start = self._international_start(text.text, start, at)
        if data[start - 1 : start] == b":":  # https://user:password@host
            before = data[max(0, start - 65) : start - 1]
            user = start - 1 - (len(before) - len(before.rstrip(p.EMAIL_LOCAL_CHARS)))
            if data[user - 2 : user] == b"//":
                # "user:pass@" and "joe:password@" are how documentation writes it.
                password = data[start:at]
                real = self._credential and not password.isalpha()
                return PrivacyHit("secret:credential", user, at) if real else None
        domain = p.EMAIL_DOMAIN_PATTERN.match(data, at + 1)
        if not self._email or domain is None or domain["tld"].lower() in p.FILE_EXTENSIONS:
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
        rules: dict[bytes, tuple[p.NumberRule, ...]] = {}
        for shape, shape_rules in p.NUMBER_SHAPES.items():
            kept = tuple(rule for rule in shape_rules if rule.detector in enabled)
            if kept:
                rules[shape.encode()] = kept
        self._rules = rules
        # A weak shape (a bare run of digits, as in JSON ids) needs a keyword just before it;
        # ids are common, so look for the keyword first, before any other work.
        self._weak = {
            shape: p.keywords(*(word for rule in kept for word in rule.context))
            for shape, kept in rules.items()
            if all(rule.context for rule in kept)
        }
        self._contexts = {
            rule: p.keywords(*rule.context)
            for kept in rules.values()
            for rule in kept
            if rule.context
        }
        # Only the enabled shapes: a scanner for cards alone does less work per digit.
        plain = [s.decode() for s in rules if not s.startswith(b"(")]
        parens = [s.decode() for s in rules if s.startswith(b"(")]
        self._plain = p.number_pattern(plain) if plain else None
        self._parens = p.number_pattern(parens) if parens else None
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
            for match in p.E164_PATTERN.finditer(text.shapes):
                start, end = match.start() - 1, match.end() - 1
                raw = text.ascii[start:end]
                digits = raw.translate(None, self._SEPARATORS).decode()
                last_group = len(raw) - len(raw.rstrip(b"0123456789"))
                if (
                    not raw.translate(None, self._PHONE_CHARS)  # real spaces only
                    and raw.count(b"(") == raw.count(b")") <= 1
                    and last_group >= 2  # "+35236450.6" is a decimal number
                    and digits.isdigit()
                    and p.phone_e164_valid(digits)
                ):
                    yield PrivacyHit("phone", start, end)
        if self._iban or self._nino:
            for match in p.LETTERS_PATTERN.finditer(text.shapes):
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
        if rules is None or raw.translate(p.STRICT_SHAPE_TABLE) != shape:
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
            valid = self._nino and p.gb_nino_valid(compact)
            return PrivacyHit("national_id:gb_nino", start, end) if valid else None
        expected = p.IBAN_LENGTHS.get(compact[:2], 0)
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
        return PrivacyHit("iban", start, end) if p.iban_valid(compact) else None


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


class PrivacyScanner:
    """Finds personal and secret data in prompts; immutable and safe to share.

    Build one at startup (patterns are compiled once) and call :meth:`first` per request.
    """

    def __init__(
        self,
        *,
        detectors: Collection[str] | None = None,
        user_patterns: Mapping[str, str] | None = None,
        paths: Sequence[str] = (),
        entropy_threshold: float = 4.0,
        min_secret_length: int = 24,
        home: Path | None = None,
    ) -> None:
        """Compile the enabled detectors.

        Args:
            detectors: Built-in detectors to run, by name from :data:`BUILTIN_DETECTORS` or by
                family (``api_key``, ``national_id``, ``secret``); None runs them all and an
                empty collection none.  User patterns and paths always run.
            user_patterns: Name -> regular expression; a match is a ``user_pattern:<name>`` hit.
                Start a pattern with literal, case-sensitive text (``ACME-\\d{4}``): the regex
                engine skips to it at memory-scan speed, where a leading ``\\b``, character
                class or ``(?i)`` costs 20-50 times more on every prompt (about as much as all
                built-in detectors together; see ``scripts/bench_privacy.py``).
            paths: Path prefixes (``~/work/acme``, ``/srv/secret``); a mention of one, or of a
                path below it, is a ``path:<prefix>`` hit.  ``~`` is matched literally and as
                the home directory (and ``$HOME``).
            entropy_threshold: Bits per character above which a token is a secret (at most
                log2 of its length, so 4.0 needs 17+ characters and hex never reaches it).
            min_secret_length: Shortest token judged by entropy alone.
            home: The home directory ``~`` stands for; the current user's by default.

        Raises:
            ConfigError: A detector name is unknown, a user pattern is invalid, badly named or
                matches empty text, a path is ``/``, or a number is out of range.
        """
        enabled = _resolve(detectors)
        if not 0 < entropy_threshold <= 8:
            raise ConfigError(
                f"privacy entropy threshold {entropy_threshold} is out of range; use bits per "
                f"character between 0 and 8 (4.0 flags random base64 but not words or hex)."
            )
        if not 8 <= min_secret_length <= MAX_SECRET_LENGTH:
            raise ConfigError(
                f"privacy min secret length {min_secret_length} is out of range; use 8 to "
                f"{MAX_SECRET_LENGTH} characters (24 is a good default)."
            )
        users = UserPatternDetector(user_patterns or {})
        path_detector = PathDetector(paths, home=home)
        self._detectors: tuple[Detector, ...] = (
            *self._builtin(enabled, entropy_threshold, min_secret_length),
            *((path_detector,) if path_detector.names else ()),
            *((users,) if users.names else ()),
        )
        self._names = (
            *(name for name in BUILTIN_DETECTORS if name in enabled),
            *users.names,
            *path_detector.names,
        )

    @staticmethod
    def _builtin(enabled: frozenset[str], threshold: float, min_length: int) -> list[Detector]:
        # Cheapest first, so that first() finds a hit early; TokenDetector runs before
        # CredentialDetector so a provider key wins over "secret:credential" on the same span.
        wanted: list[tuple[tuple[str, ...], Detector]] = [
            (("private_key",), PrivateKeyDetector()),
            (("email", "secret:credential"), EmailDetector(enabled)),
            (
                ("payment_card", "phone", "iban", *_members("national_id")),
                NumberDetector(enabled),
            ),
            (
                (*_members("api_key"), "secret:high_entropy", "private_key"),
                TokenDetector(enabled, entropy_threshold=threshold, min_secret_length=min_length),
            ),
            (tuple(x.detector for x in SECRET_PATTERNS), SecretPatternDetector(enabled)),
            (("secret:credential", "api_key:bearer"), CredentialDetector(enabled)),
        ]
        return [detector for names, detector in wanted if enabled.intersection(names)]

    @property
    def detectors(self) -> tuple[str, ...]:
        """The names of every enabled detector, built-in ones first."""
        return self._names

    def scan(self, text: str) -> list[PrivacyHit]:
        """Find every hit in ``text``.

        A hit inside another one is reported once: by the outer hit when both are secrets (a
        base64 line inside a private key block, a credential that is also a provider key) or
        both come from the same detector (``+1 (415) 555-2671`` holds ``(415) 555-2671``).
        Other overlapping hits (a user pattern inside an e-mail address) are all reported.

        Args:
            text: The text to scan, of any length.

        Returns:
            The hits, ordered by start offset (the longer one first where two start together).
        """
        view = ScanText(text)
        found = [
            (hit.start, -hit.end, rank, hit)
            for rank, detector in enumerate(self._detectors)
            for hit in detector.find(view)
        ]
        found.sort(key=lambda item: item[:3])
        hits: list[PrivacyHit] = []
        reach: dict[str, int] = {}  # how far kept hits of each kind extend
        for _, _, _, hit in found:
            kind = "secret" if hit.detector.startswith(_SECRET_FAMILIES) else hit.detector
            if hit.end <= reach.get(kind, -1):
                continue
            reach[kind] = hit.end
            hits.append(hit)
        return hits

    def redact(self, text: str) -> str:
        """``text`` with every hit replaced by ``[redacted:<detector>]``.

        Overlapping hits are replaced together, under the name of the first.

        Args:
            text: The text to clean (an upstream error message, a log line).

        Returns:
            The text, unchanged where nothing was found.
        """
        parts: list[str] = []
        done = 0
        for hit in self.scan(text):
            if hit.end <= done:
                continue
            if hit.start >= done:
                parts += (text[done : hit.start], f"[redacted:{hit.detector}]")
            done = hit.end
        return "".join(parts) + text[done:] if parts else text

    def first(self, text: str) -> PrivacyHit | None:
        """Find one hit, stopping as soon as any detector has one.

        Args:
            text: The text to scan.

        Returns:
            The first hit of the first detector (cheapest first) that has any, which is not
            necessarily the earliest in the text; None when the text holds nothing sensitive.
        """
        view = ScanText(text)
        for detector in self._detectors:
            for hit in detector.find(view):
                return hit
        return None


_FAMILIES = ("api_key", "national_id", "secret")


def _members(family: str) -> tuple[str, ...]:
    return tuple(name for name in BUILTIN_DETECTORS if name.startswith(family + ":"))


def _resolve(names: Collection[str] | None) -> frozenset[str]:
    """The built-in detector names that ``names`` (names or families) enables."""
    if names is None:
        return frozenset(BUILTIN_DETECTORS)
    if isinstance(names, str):
        names = (names,)
    enabled: set[str] = set()
    for name in names:
        if name in BUILTIN_DETECTORS:
            enabled.add(name)
        elif name in _FAMILIES:
            enabled.update(_members(name))
        else:
            providers = sorted({d.partition(":")[2] for d in _members("api_key")})
            others = [d for d in BUILTIN_DETECTORS if not d.startswith("api_key:")]
            raise ConfigError(
                f"unknown privacy detector {name!r}; use one of {', '.join(others)}, "
                f"api_key:<provider> ({', '.join(providers)}) or a family: "
                f"{', '.join(_FAMILIES)}."
            )
    return frozenset(enabled)
