"""The privacy scanner: runs the enabled detectors over a prompt and merges their hits.

See :mod:`hybrid.routing.privacy` for what is detected and the judgement calls behind it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from hybrid.errors import ConfigError
from hybrid.routing.privacy.detectors import (
    EmailDetector,
    NumberDetector,
    PathDetector,
    UserPatternDetector,
)
from hybrid.routing.privacy.formats import DELIMITED_FORMATS, KEY_FORMATS, SECRET_PATTERNS
from hybrid.routing.privacy.secrets import (
    MAX_SECRET_LENGTH,
    CredentialDetector,
    PrivateKeyDetector,
    SecretPatternDetector,
    TokenDetector,
)
from hybrid.routing.privacy.text import Detector, PrivacyHit, ScanText

__all__ = ["BUILTIN_DETECTORS", "PrivacyScanner"]

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
