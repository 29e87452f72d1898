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
    "email",
    "phone",
    "payment_card",
    "iban",
    "national_id:us_ssn",
    "national_id:gb_nino",
    "national_id:es_dni",
    "national_id:nl_bsn",
    "national_id:in_aadhaar",
    "national_id:br_cpf",
    "national_id:cn_resident_id",
    "national_id:fr_nir",
    "api_key:openai",
    "api_key:anthropic",
    "api_key:aws",
    "api_key:github",
    "api_key:gitlab",
    "api_key:slack",
    "api_key:stripe",
    "api_key:google",
    "api_key:huggingface",
    "api_key:npm",
    "api_key:pypi",
    "api_key:jwt",
    "api_key:bearer",
    "secret:high_entropy",
    "secret:credential",
    "private_key",
)
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
        """Digits as ``0``, upper case as ``A``, lower case as ``a``; see ``SHAPE_TABLE``."""
        return self.ascii.translate(p.SHAPE_TABLE)

    @cached_property
    def tokens(self) -> bytes:
        """Token characters (base64/base64url) as ``t``, everything else as a space."""
        return self.ascii.translate(p.TOKEN_TABLE)

    def preceded_by(self, start: int, words: Sequence[bytes], window: int = 32) -> bool:
        """Whether one of the lower-case ``words`` occurs in the ``window`` bytes before."""
        before = self.lower[max(0, start - window) : start]
        return any(word in before for word in words)


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

    _NOT_DIGITS = bytes(c for c in range(256) if not 48 <= c <= 57)
    _NOT_LETTERS = bytes(c for c in range(256) if not chr(c).isascii() or not chr(c).isalpha())
    _PIECE = re.compile(rb"[A-Za-z0-9_-]+")
    _WORD_PIECE = re.compile(rb"[A-Za-z]+[0-9]*|[0-9]+")
    _SEPARATORS = re.compile(rb"[-_/+]")
    _AWS_SECRET = re.compile(rb"[A-Za-z0-9/+]{40}")
    _AWS_WORDS = (b"aws_secret", b"aws secret", b"secret_access_key", b"secretaccesskey")

    def __init__(
        self, enabled: Collection[str], *, entropy_threshold: float, min_secret_length: int
    ) -> None:
        self._enabled = frozenset(enabled)
        self._formats = tuple(f for f in p.KEY_FORMATS if f.detector in self._enabled)
        self._prefixes = tuple(x for f in self._formats for x in f.prefixes)
        self._threshold = entropy_threshold
        self._min_secret = min_secret_length
        # Every provider key and JWT header is at least 16 characters long.
        self._min_run = min(16, min_secret_length)

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        runs, needle = text.tokens, b"t" * self._min_run
        start = runs.find(needle)
        while start != -1:
            end = runs.find(b" ", start + self._min_run)
            end = len(runs) if end == -1 else end
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
        if "secret:high_entropy" in self._enabled and self._is_secret(data, start, token):
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

    def _is_secret(self, data: bytes, start: int, token: bytes) -> bool:
        # Cheap C-level rejections first: most long tokens are identifiers in one case.
        if not self._min_secret <= len(token) <= _MAX_SECRET_LENGTH:
            return False
        if token.islower() or token.isupper() or not token.translate(None, self._NOT_DIGITS):
            return False
        if not token.translate(None, self._NOT_LETTERS) or data.endswith(b"base64,", 0, start):
            return False
        wordy = sum(len(word) for word in p.WORDY_PATTERN.findall(token))
        if wordy * 2 >= len(token):
            return False
        pieces = [piece for piece in self._SEPARATORS.split(token) if piece]
        if len(pieces) > 1 and all(self._WORD_PIECE.fullmatch(piece) for piece in pieces):
            return False  # a path or a dashed identifier: "v1/projects/Demo42/locations"
        return p.shannon_entropy(token) > self._threshold


def _random(value: bytes) -> bool:
    """Whether a key or credential value is not an obvious placeholder: it has a digit too."""
    lowered = value.lower()
    return (
        any(48 <= c <= 57 for c in value)
        and any(c.isalpha() for c in value.decode("ascii", "replace"))
        and not any(word in lowered for word in p.PLACEHOLDER_WORDS)
    )


class CredentialDetector(Detector):
    """Credentials assigned to a telling name (``password=...``) and bearer tokens."""

    _NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")

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
                if b"://" not in value and _random(value) and not _wordy(value):
                    yield PrivacyHit("secret:credential", start, end)

    def _assigned_name(self, lower: bytes, keyword_start: int, keyword_end: int) -> bytes:
        start = keyword_start
        while start > 0 and lower[start - 1] in self._NAME_CHARS:
            start -= 1
        return lower[start:keyword_end]


def _wordy(value: bytes) -> bool:
    """Whether ``value`` is mostly words: a variable (``token_v2``), not a random credential."""
    return sum(len(word) for word in p.WORDY_PATTERN.findall(value.lower())) * 2 >= len(value)


class EmailDetector(Detector):
    """E-mail addresses; a ``user:password@`` in a URL is reported as a credential instead."""

    def __init__(self, enabled: Collection[str]) -> None:
        self._email = "email" in enabled
        self._credential = "secret:credential" in enabled

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        data = text.ascii
        at = data.find(b"@")
        while at != -1:
            hit = self._address(data, at)
            if hit is not None:
                yield hit
            at = data.find(b"@", at + 1)

    def _address(self, data: bytes, at: int) -> PrivacyHit | None:
        start = at
        while start > 0 and at - start < 64 and data[start - 1] in p.EMAIL_LOCAL_CHARS:
            start -= 1
        while start < at and data[start] == 0x2E:  # a local part never starts with "."
            start += 1
        if start == at:
            return None
        if data[start - 1 : start] == b":":  # https://user:password@host
            user = start - 1
            while user > 0 and data[user - 1] in p.EMAIL_LOCAL_CHARS:
                user -= 1
            if data[user - 2 : user] == b"//":
                return PrivacyHit("secret:credential", user, at) if self._credential else None
        domain = p.EMAIL_DOMAIN_PATTERN.match(data, at + 1)
        if not self._email or domain is None or domain["tld"].lower() in p.FILE_EXTENSIONS:
            return None
        end = domain.end()
        if data[end : end + 1] == b":" and data[end + 1 : end + 2] not in (b"", b" ", b"\n"):
            return None  # git@github.com:owner/repo.git is an SSH remote
        return PrivacyHit("email", start, end)


class NumberDetector(Detector):
    """Payment cards, phone numbers, IBANs and national IDs, found by shape and validated."""

    _SEPARATORS = b" -.()/+"

    def __init__(self, enabled: Collection[str]) -> None:
        rules: dict[bytes, tuple[p.NumberRule, ...]] = {}
        for shape, shape_rules in p.NUMBER_SHAPES.items():
            kept = tuple(rule for rule in shape_rules if rule.detector in enabled)
            if kept:
                rules[shape.removeprefix("(").encode()] = kept
        self._rules = rules
        self._phone = "phone" in enabled
        self._iban = "iban" in enabled
        self._nino = "national_id:gb_nino" in enabled

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        if self._rules:
            yield from self._numbers(text)
        if self._phone and b"+" in text.ascii:
            for match in p.E164_PATTERN.finditer(text.shapes):
                raw = text.ascii[match.start() : match.end()]
                digits = raw.translate(None, self._SEPARATORS).decode()
                if raw.count(b"(") == raw.count(b")") <= 1 and p.phone_e164_valid(digits):
                    yield PrivacyHit("phone", *match.span())
        if self._iban or self._nino:
            for match in p.LETTERS_PATTERN.finditer(text.shapes):
                hit = self._letters(text.ascii, match)
                if hit is not None:
                    yield hit

    def _numbers(self, text: ScanText) -> Iterator[PrivacyHit]:
        shapes, data = text.shapes, text.ascii
        for match in p.NUMBER_PATTERN.finditer(shapes):
            start, end = match.span()
            rules = self._rules.get(shapes[start:end])
            if rules is None:
                continue
            compact = data[start:end].translate(None, self._SEPARATORS).decode()
            for rule in rules:
                if rule.after_paren and data[start - 1 : start] != b"(":
                    continue
                if rule.context and not text.preceded_by(start, rule.context):
                    continue
                if rule.check(compact):
                    yield PrivacyHit(rule.detector, start - rule.after_paren, end)
                    break

    def _letters(self, data: bytes, match: re.Match[bytes]) -> PrivacyHit | None:
        start, end = match.span()
        raw = data[start:end].decode()
        compact = raw.replace(" ", "")
        if match.lastgroup == "nino":
            return (
                PrivacyHit("national_id:gb_nino", start, end)
                if (self._nino and p.gb_nino_valid(compact))
                else None
            )
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

    def __init__(self, prefixes: Sequence[str], *, home: Path) -> None:
        home_text = str(home).rstrip("/")
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
        path_detector = PathDetector(paths, home=home or Path.home())
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

        A secret found inside a larger one (a base64 line inside a private key block, a
        credential that is also a provider key) is reported once, by the larger or more
        specific detector; other overlapping hits (a user pattern inside an address) are all
        reported.

        Args:
            text: The text to scan, of any length.

        Returns:
            The hits, ordered by start offset.
        """
        view = ScanText(text)
        found = [
            (hit.start, -hit.end, rank, hit)
            for rank, detector in enumerate(self._detectors)
            for hit in detector.find(view)
        ]
        found.sort(key=lambda item: item[:3])
        hits: list[PrivacyHit] = []
        secret_end = -1
        for _, _, _, hit in found:
            if hit.detector.startswith(_SECRET_FAMILIES):
                if hit.end <= secret_end:
                    continue
                secret_end = hit.end
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
