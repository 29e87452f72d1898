"""Privacy detectors: personal and secret data that must never leave the machine.

A :class:`PrivacyScanner` finds e-mail addresses, phone numbers, payment cards, IBANs, national
ID numbers, API keys, tokens, passwords, private keys, and anything the user's own patterns or
paths describe.  A hit names its detector and a span; it never carries the matched text, so a
routing reason built from it cannot leak what it protects.

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
  a ``data:`` URI is file content (images), not a secret.
* Provider keys and assigned credentials that look like documentation placeholders
  (``sk-xxxxxxxx...``, ``your-api-key``, no digit at all) are not hits.
* ``git@github.com:owner/repo`` is an SSH remote, not an e-mail address; ``icon@2x.png`` is a
  file name.  ``https://user:pass@host`` is a credential, not an e-mail address.

Scanning works on an ASCII image of the text (every other character becomes ``?``, so offsets
stay the same); non-ASCII addresses and digits are not recognised.  User patterns and paths are
matched on the original text.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from hybrid.errors import ConfigError
from hybrid.routing import privacy_patterns as p

BUILTIN_DETECTORS: tuple[str, ...] = (
    "email", "phone", "payment_card", "iban",
    *(f"national_id:{kind}" for kind in (
        "us_ssn", "gb_nino", "es_dni", "nl_bsn", "in_aadhaar", "br_cpf", "cn_resident_id", "fr_nir"
    )),
    *dict.fromkeys(key.detector for key in p.KEY_FORMATS), "api_key:jwt", "api_key:bearer",
    "secret:high_entropy", "secret:credential", "private_key",
)  # fmt: skip
"""Every built-in detector.  ``api_key``, ``national_id`` and ``secret`` name whole families."""

_SECRET_FAMILIES = ("private_key", "api_key:", "secret:")
_MAX_SECRET_LENGTH = 256
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class PrivacyHit:
    """Sensitive data found in a text.

    Attributes:
        detector: What was found (``email``, ``api_key:openai``, ``user_pattern:<name>``, ...);
            safe to log and to put in a routing reason.
        start: Offset of the first character of the match in the scanned text.
        end: Offset just past the match.  The span is for tests and tools (redaction); it must
            never be logged or put in a reason.
    """

    detector: str
    start: int
    end: int


class ScanText:
    """One text and the forms derived from it that detectors share, each computed once."""

    def __init__(self, text: str) -> None:
        self.text = text
        # "replace" maps each non-ASCII character to one "?", so offsets match the str.
        self.ascii = text.encode("ascii", "replace")

    @cached_property
    def lower(self) -> bytes:
        """The ASCII image in lower case."""
        return self.ascii.lower()

    @cached_property
    def shapes(self) -> bytes:
        """A space, then the text as shapes (see ``SHAPE_TABLE``): offset ``i`` is text ``i-1``.

        The leading space lets a number at the very start match the same ``" 0"`` prefix.
        """
        return b" " + self.ascii.translate(p.SHAPE_TABLE)

    @cached_property
    def tokens(self) -> bytes:
        """Token characters (base64/base64url) as ``t``, everything else as a space."""
        return self.ascii.translate(p.TOKEN_TABLE)

    def preceded_by(self, start: int, keywords: re.Pattern[bytes], window: int = 32) -> bool:
        """Whether ``keywords`` (see ``privacy_patterns.keywords``) occur in the bytes before.

        Args:
            start: Offset of what the keywords must precede.
            keywords: A pattern over lower-cased text.
            window: How many bytes before ``start`` to search.
        """
        return keywords.search(self.lower, max(0, start - window), start) is not None


class Detector(ABC):
    """Finds one family of sensitive data in a text."""

    @abstractmethod
    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        """Yield the hits in ``text`` (in any order; each detector's own order is by position).

        Args:
            text: The text to scan, with its shared derived forms.

        Returns:
            An iterator that does the work lazily, so that a caller can stop at the first hit.
        """


class PrivateKeyDetector(Detector):
    """PEM private keys: ``-----BEGIN [RSA|EC|OPENSSH|DSA|PGP|ENCRYPTED] PRIVATE KEY-----``."""

    _BEGIN = re.compile(
        rb"-----BEGIN (?:(?:RSA|EC|OPENSSH|DSA|PGP|ENCRYPTED) )?PRIVATE KEY(?: BLOCK)?-----"
    )
    _END = re.compile(rb"-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----")

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        if b"PRIVATE KEY" not in text.ascii:
            return
        for begin in self._BEGIN.finditer(text.ascii):
            end = self._END.search(text.ascii, begin.end())
            yield PrivacyHit("private_key", begin.start(), end.end() if end else begin.end())


class TokenDetector(Detector):
    """Provider API keys, JWTs, AWS secret keys and standalone high-entropy secrets."""

    _PIECE = re.compile(rb"[A-Za-z0-9_-]+")
    _AWS_SECRET = re.compile(rb"[A-Za-z0-9/+]{40}")
    _AWS_WORDS = p.keywords(b"aws_secret", b"aws secret", b"secret_access_key", b"secretaccesskey")

    def __init__(
        self, enabled: Collection[str], *, entropy_threshold: float, min_secret_length: int
    ) -> None:
        self._enabled = frozenset(enabled)
        self._formats = tuple(f for f in p.KEY_FORMATS if f.detector in self._enabled)
        self._prefixes = tuple(x for f in self._formats for x in f.prefixes)
        self._threshold = entropy_threshold
        self._min_secret = min_secret_length
        # The shortest provider key (AKIA + 16) and any real JWT header are 20+ characters.
        self._min_run = min(20, min_secret_length)

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        runs, data, needle = text.tokens, text.ascii, b"t" * self._min_run
        start = runs.find(needle)
        while start != -1:
            end = runs.find(b" ", start + self._min_run)
            end = len(runs) if end == -1 else end
            # Logs and code hold many long lower-case runs (hex ids, snake_case); a random key
            # of 20+ base64 characters without a capital letter is vanishingly rare, and every
            # provider format has one (AKIA, eyJ, or a random body), so one C call skips them.
            if not data[start:end].islower():
                hit = self._classify(text, start, end)
                if hit is not None:
                    yield hit
                    end = max(end, hit.end)
            start = runs.find(needle, end)

    def _classify(self, text: ScanText, start: int, end: int) -> PrivacyHit | None:
        data = text.ascii
        token = data[start:end]
        if token.startswith(b"eyJ") and "api_key:jwt" in self._enabled:
            jwt = p.JWT_PATTERN.match(data, start)
            if jwt:
                return PrivacyHit("api_key:jwt", start, jwt.end())
        if self._prefixes:
            if token.startswith(self._prefixes):
                hit = self._provider_key(data, start, end)
                if hit:
                    return hit
            if b"/" in token or b"+" in token:
                for piece in self._PIECE.finditer(data, start, end):
                    if piece.group().startswith(self._prefixes):
                        hit = self._provider_key(data, *piece.span())
                        if hit:
                            return hit
        if (
            "api_key:aws" in self._enabled
            and self._AWS_SECRET.fullmatch(token)
            and text.preceded_by(start, self._AWS_WORDS, window=64)
        ):
            return PrivacyHit("api_key:aws", start, end)
        if "secret:high_entropy" in self._enabled and self._is_secret(text, start, end):
            return PrivacyHit("secret:high_entropy", start, end)
        return None

    def _provider_key(self, data: bytes, start: int, end: int) -> PrivacyHit | None:
        piece = self._PIECE.match(data, start, end)
        if piece is None:
            return None
        key = piece.group()
        for key_format in self._formats:
            if key.startswith(key_format.prefixes) and key_format.pattern.fullmatch(key):
                return PrivacyHit(key_format.detector, start, piece.end()) if _random(key) else None
        return None

    def _is_secret(self, text: ScanText, start: int, end: int) -> bool:
        if not self._min_secret <= end - start <= _MAX_SECRET_LENGTH:
            return False  # longer base64 is file content (an image, a binary), not a key
        if text.ascii.endswith(b"base64,", 0, start) or self._wrapped(text, start, end):
            return False  # a data: URI, or one line of a wrapped base64 block (MIME, PEM)
        return p.random_token(text.ascii[start:end], self._threshold)

    @staticmethod
    def _wrapped(text: ScanText, start: int, end: int) -> bool:
        """Whether the line before or after this token is also a long base64 run."""
        if end - start < 40:
            return False
        block = b"t" * 40
        after = text.tokens.find(block, end, end + 60)
        before = text.tokens.rfind(block, max(0, start - 60), start)
        return (after != -1 and b"\n" in text.ascii[end:after]) or (
            before != -1 and b"\n" in text.ascii[before:start]
        )


def _random(value: bytes, placeholders: tuple[bytes, ...] = p.PLACEHOLDER_WORDS) -> bool:
    """Whether a key or credential is not an obvious placeholder: letters, a digit, no "your"."""
    lowered = value.lower()
    return (
        any(48 <= c <= 57 for c in value)
        and any(c.isalpha() for c in value.decode("ascii", "replace"))
        and not any(word in lowered for word in placeholders)
    )


class CredentialDetector(Detector):
    """Credentials assigned to a telling name (``password=...``) and bearer tokens."""

    _NAME_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789_.-"

    def __init__(self, enabled: Collection[str]) -> None:
        self._assigned = "secret:credential" in enabled
        self._bearer = "api_key:bearer" in enabled
        self._rules = tuple(
            (pattern, re.compile(rb"(?:[a-z0-9_.-]*[_.-])?" + rule.encode()))
            for pattern, rule in p.CREDENTIAL_PATTERNS
        )
        # Names that merely end in these are still credentials ("accesstoken", "dbpassword").
        self._loose_suffix = re.compile(rb"[a-z0-9_.-]*(?:token|secret|password|passwd|phrase)")

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        if self._bearer and b"bearer" in text.lower:
            for match in p.BEARER_PATTERN.finditer(text.lower):
                start, end = match.span("value")
                if _random(text.ascii[start:end]):
                    yield PrivacyHit("api_key:bearer", start, end)
        if not self._assigned:
            return
        for pattern, rule in self._rules:
            for match in pattern.finditer(text.lower):
                name = self._assigned_name(text.lower, match.start(), match.end("kw"))
                if not (rule.fullmatch(name) or self._loose_suffix.fullmatch(name)):
                    continue
                start, end = match.span("value")
                value = text.ascii[start:end]
                quoted = text.ascii[start - 1 : start] in (b'"', b"'")
                # Unquoted, "token=token_v2" and "password=self.pw2" name a variable, and
                # "token = b64encode(...)" calls a function.
                reference = not quoted and (
                    text.ascii[end : end + 1] in (b"(", b"[")
                    or (p.IDENTIFIER_PATTERN.fullmatch(value) and not value.isalnum())
                )
                if (
                    not reference
                    and b"://" not in value
                    and _random(value, p.CREDENTIAL_PLACEHOLDER_WORDS)
                ):
                    yield PrivacyHit("secret:credential", start, end)

    def _assigned_name(self, lower: bytes, keyword_start: int, keyword_end: int) -> bytes:
        before = lower[max(0, keyword_start - 64) : keyword_start]
        return before[len(before.rstrip(self._NAME_CHARS)) :] + lower[keyword_start:keyword_end]


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
        if not 8 <= min_secret_length <= _MAX_SECRET_LENGTH:
            raise ConfigError(
                f"privacy min secret length {min_secret_length} is out of range; use 8 to "
                f"{_MAX_SECRET_LENGTH} characters (24 is a good default)."
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
                (*_members("api_key"), "secret:high_entropy"),
                TokenDetector(enabled, entropy_threshold=threshold, min_secret_length=min_length),
            ),
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
            raise ConfigError(
                f"unknown privacy detector {name!r}; use one of {', '.join(BUILTIN_DETECTORS)} "
                f"or a family: {', '.join(_FAMILIES)}."
            )
    return frozenset(enabled)
