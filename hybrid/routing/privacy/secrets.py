"""Secret detectors: API keys, tokens, webhook URLs, passwords and private keys.

Formats come from :mod:`hybrid.routing.privacy.formats`; the entropy test, credential names and
placeholders from :mod:`hybrid.routing.privacy.tokens`.  Each detector is one of the
:class:`~hybrid.routing.privacy.text.Detector` s a :class:`~hybrid.routing.privacy.PrivacyScanner`
runs.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

from hybrid.routing.privacy.formats import (
    BEFORE_REACH,
    DELIMITED_FORMATS,
    DELIMITED_REACH,
    DISCORD_BOT_PATTERN,
    JWT_PATTERN,
    KEY_FORMATS,
    PLACEHOLDER_WORDS,
    SECRET_PATTERNS,
    KeyFormat,
    holds_word,
    placeholder_key,
)
from hybrid.routing.privacy.text import Detector, PrivacyHit, ScanText, keywords
from hybrid.routing.privacy.tokens import (
    AUTH_SCHEME_PATTERN,
    CREDENTIAL_PATTERNS,
    CREDENTIAL_PLACEHOLDER_WORDS,
    HASH_LABELS_BEFORE,
    IDENTIFIER_PATTERN,
    URL_CREDENTIAL_PATTERN,
    basic_auth_password,
    names_a_variable,
    random_token,
    shannon_entropy,
)

MAX_SECRET_LENGTH = 256
"""Longest token judged by entropy: longer base64 is file content (an image, a binary)."""
# A credential of letters only counts when it is as random as a generated key.
_LETTERS_ONLY_ENTROPY = 3.5
_CAPITAL_PAIR = re.compile(rb"[A-Z]{2}")


class PrivateKeyDetector(Detector):
    """Private keys: PEM blocks (``-----BEGIN [RSA|EC|OPENSSH|DSA|PGP|ENCRYPTED] PRIVATE
    KEY-----``, SSH2's ``---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----``) and PuTTY key files.
    (An age key is one token: :class:`TokenDetector` finds it.)"""

    _MARK = re.compile(rb"P(?:RIVATE KEY|uTTY-User-Key-File-)")
    _BEGIN = re.compile(rb"-{4,5} ?BEGIN (?:[A-Z0-9]+ ){0,2}PRIVATE KEY(?: BLOCK)? ?-{4,5}")
    _END = re.compile(rb"-{4,5} ?END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
    _PUTTY = re.compile(rb"PuTTY-User-Key-File-[0-9]: ")
    _PUTTY_END = re.compile(rb"Private-MAC: [0-9a-f]+")

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        data = text.ascii
        mark = self._MARK.search(data)
        if mark is None:
            return
        for begin in self._BEGIN.finditer(data, max(0, mark.start() - 48)):
            end = self._END.search(data, begin.end())
            yield PrivacyHit("private_key", begin.start(), end.end() if end else begin.end())
        for begin in self._PUTTY.finditer(data, mark.start()):
            end = self._PUTTY_END.search(data, begin.end())
            yield PrivacyHit("private_key", begin.start(), end.end() if end else begin.end())


class TokenDetector(Detector):
    """Everything found from a long run of token characters: provider API keys, webhook URLs
    and dotted tokens (from one of their runs), JWTs, Discord bot tokens, AWS secret keys, age
    keys and standalone high-entropy secrets."""

    _PIECE = re.compile(rb"[A-Za-z0-9_-]+")
    _AWS_SECRET = re.compile(rb"[A-Za-z0-9/+]{40}")
    _AWS_WORDS = keywords(b"aws_secret", b"aws secret", b"secret_access_key", b"secretaccesskey")

    def __init__(
        self, enabled: Collection[str], *, entropy_threshold: float, min_secret_length: int
    ) -> None:
        self._enabled = frozenset(enabled)
        self._formats = tuple(f for f in KEY_FORMATS if f.detector in self._enabled)
        self._prefixes = tuple(x for f in self._formats for x in f.prefixes)
        self._lower_prefixes = tuple(x for x in self._prefixes if x.islower())
        # Their first two bytes: one set lookup turns away almost every lower-case run.
        self._lower_heads = frozenset(x[:2] for x in self._lower_prefixes)
        self._delimited = tuple(f for f in DELIMITED_FORMATS if f.detector in self._enabled)
        self._lead_ends = frozenset(lead[-1:] for f in self._delimited for lead in f.leads)
        self._discord = "api_key:discord" in self._enabled
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
            if start and data[start - 1] == 0x5C and data[start] in b"nrt":
                start += 1  # "\nsk-..." in an escaped JSON string: the "n" is the escape's
            # Logs and code hold many long lower-case runs (hex ids, snake_case); a random
            # secret of 20+ base64 characters without a capital letter is vanishingly rare, so
            # one C call skips them, unless the run starts like a key whose body may be
            # lower-case hex (sk-proj-, dop_v1_, sntryu_ ...).
            token = data[start:end]
            if not token.islower() or (
                token[:2] in self._lower_heads and token.startswith(self._lower_prefixes)
            ):
                hit = self._classify(text, start, end)
                if hit is not None:
                    yield hit
                    end = max(end, hit.end)
            start = runs.find(needle, end)

    def _classify(self, text: ScanText, start: int, end: int) -> PrivacyHit | None:
        data = text.ascii
        token = data[start:end]
        if data[start - 1 : start] in self._lead_ends:
            hit = self._delimited_key(data, start, end)
            if hit:
                return hit
        if token.startswith(b"eyJ") and "api_key:jwt" in self._enabled:
            jwt = JWT_PATTERN.match(data, start)
            if jwt:
                return PrivacyHit("api_key:jwt", start, jwt.end())
        if self._discord and data[end : end + 1] == b"." and token[:1] in b"MNO":
            bot = DISCORD_BOT_PATTERN.match(data, start)
            if bot:
                return PrivacyHit("api_key:discord", start, bot.end())
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
            and not placeholder_key(token)
        ):
            return PrivacyHit("api_key:aws", start, end)
        if "secret:high_entropy" in self._enabled and self._is_secret(text, start, end):
            return PrivacyHit("secret:high_entropy", start, end)
        return None

    def _provider_key(self, data: bytes, start: int, end: int) -> PrivacyHit | None:
        """The provider key that starts at ``start``, unless it is a placeholder."""
        piece = self._PIECE.match(data, start, end)
        if piece is None:
            return None
        for key_format in self._formats:
            key = data[start:end] if key_format.base64 else piece.group()
            if key.startswith(key_format.prefixes) and key_format.pattern.fullmatch(key):
                if placeholder_key(key[len(_prefix(key, key_format)) :]):
                    return None
                return PrivacyHit(key_format.detector, start, start + len(key))
        return None

    def _delimited_key(self, data: bytes, start: int, end: int) -> PrivacyHit | None:
        """The delimited secret (webhook URL, dotted token) the run at ``start`` belongs to."""
        window = max(0, start - DELIMITED_REACH)
        for key_format in self._delimited:
            if not data.endswith(key_format.leads, window, start):
                continue
            position = window
            while (
                match := key_format.pattern.search(data, position, end + DELIMITED_REACH)
            ) is not None and match.end() <= start:
                position = match.end()  # one that ended before this run was reported then
            if match is None or match.start() > start:
                continue
            named = "secret" in key_format.pattern.groupindex
            if not placeholder_key(match["secret"] if named else match.group()):
                return PrivacyHit(key_format.detector, match.start(), match.end())
        return None

    def _is_secret(self, text: ScanText, start: int, end: int) -> bool:
        if not self._min_secret <= end - start <= MAX_SECRET_LENGTH:
            return False  # longer base64 is file content (an image, a binary), not a key
        if text.ascii.endswith(b"base64,", 0, start) or self._wrapped(text, start, end):
            return False  # a data: URI, or one line of a wrapped base64 block (MIME, PEM)
        if text.ascii.endswith(HASH_LABELS_BEFORE, 0, start):
            return False  # a content digest: "h1:<base64>" in go.sum
        return random_token(text.ascii[start:end], self._threshold)

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


def _prefix(key: bytes, key_format: KeyFormat) -> bytes:
    """The longest of the format's prefixes that ``key`` starts with (``sk-proj-``, not ``sk-``)."""
    return max((x for x in key_format.prefixes if key.startswith(x)), key=len)


class SecretPatternDetector(Detector):
    """Secrets that may have no long run of token characters (Azure client secrets and SAS
    signatures, Braintree tokens), each by its own regex, in texts that hold its rare byte."""

    def __init__(self, enabled: Collection[str]) -> None:
        self._patterns = tuple(x for x in SECRET_PATTERNS if x.detector in enabled)

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        data = text.ascii
        for secret in self._patterns:
            if secret.gate not in data:
                continue
            for match in secret.pattern.finditer(data):
                start = match.start()
                if secret.before is not None:
                    before = secret.before.search(data, max(0, start - BEFORE_REACH), start)
                    if before is None:
                        continue
                    start = before.start()
                named = "secret" in secret.pattern.groupindex
                if not placeholder_key(match["secret"] if named else match.group()):
                    yield PrivacyHit(secret.detector, start, match.end())


def _random(value: bytes, placeholders: tuple[bytes, ...] = PLACEHOLDER_WORDS) -> bool:
    """Whether a credential is not an obvious placeholder: no "your", and letters with a digit
    or letters as random as a generated key's (``correcthorsebatterystaple`` is neither)."""
    letters = sum(c.isalpha() for c in value.decode("ascii", "replace"))
    if not letters or holds_word(value, placeholders):
        return False
    if any(48 <= c <= 57 for c in value):
        return True
    # Random letters put capitals side by side; words in camelCase do not.
    return (
        letters >= 16
        and not placeholder_key(value)  # sk-abcdefghijklmnopqrstuvwxyzABCD
        and len(_CAPITAL_PAIR.findall(value)) >= 2
        and any(97 <= c <= 122 for c in value)
        and shannon_entropy(value) > _LETTERS_ONLY_ENTROPY
    )


class CredentialDetector(Detector):
    """Credentials assigned to a telling name (``password=...``), passwords in URLs
    (``postgres://app:pw@db``), HTTP Basic credentials and bearer tokens."""

    _NAME_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789_.-"

    def __init__(self, enabled: Collection[str]) -> None:
        self._assigned = "secret:credential" in enabled
        self._bearer = "api_key:bearer" in enabled
        self._rules = tuple(
            (pattern, re.compile(rb"(?:[a-z0-9_.-]*[_.-])?" + rule.encode()))
            for pattern, rule in CREDENTIAL_PATTERNS
        )
        # Names that merely end in these are still credentials ("accesstoken", "dbpassword").
        self._loose_suffix = re.compile(rb"[a-z0-9_.-]*(?:token|secret|password|passwd|phrase)")

    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        if self._bearer or self._assigned:
            for match in AUTH_SCHEME_PATTERN.finditer(text.lower):
                hit = self._auth_scheme(text, match)
                if hit is not None:
                    yield hit
        if not self._assigned:
            return
        if b"@" in text.ascii:
            yield from self._in_urls(text)
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
                    or (
                        IDENTIFIER_PATTERN.fullmatch(value) is not None
                        and not value.isalnum()
                        and names_a_variable(value)
                    )
                )
                if (
                    not reference
                    and b"://" not in value
                    and _random(value, CREDENTIAL_PLACEHOLDER_WORDS)
                ):
                    yield PrivacyHit("secret:credential", start, end)

    def _auth_scheme(self, text: ScanText, match: re.Match[bytes]) -> PrivacyHit | None:
        """A bearer token, or the base64 of ``user:password`` after ``Basic``."""
        if match["bearer"] is not None:
            start, end = match.span("bearer")
            real = self._bearer and _random(text.ascii[start:end])
            return PrivacyHit("api_key:bearer", start, end) if real else None
        start, end = match.span("basic")
        password = basic_auth_password(text.ascii[start:end])
        real = password is not None and _random(password, CREDENTIAL_PLACEHOLDER_WORDS)
        return PrivacyHit("secret:credential", start, end) if self._assigned and real else None

    @staticmethod
    def _in_urls(text: ScanText) -> Iterator[PrivacyHit]:
        """``scheme://user:password@host``."""
        for match in URL_CREDENTIAL_PATTERN.finditer(text.ascii):
            password = match["password"]
            # "$DB_PASSWORD" is filled in from the environment: a reference, not the password.
            if not password.startswith(b"$") and _random(password, CREDENTIAL_PLACEHOLDER_WORDS):
                yield PrivacyHit("secret:credential", match.start("user"), match.end("password"))

    def _assigned_name(self, lower: bytes, keyword_start: int, keyword_end: int) -> bytes:
        before = lower[max(0, keyword_start - 64) : keyword_start]
        return before[len(before.rstrip(self._NAME_CHARS)) :] + lower[keyword_start:keyword_end]
