"""Privacy detectors: personal and secret data that must never leave the machine.

A :class:`PrivacyScanner` finds e-mail addresses, phone numbers, payment cards, IBANs, national
ID numbers, API keys, tokens, passwords, private keys, and anything the user's own patterns or
paths describe.  A hit names its detector and a span; it never carries the matched text, so a
routing reason built from it cannot leak what it protects.  The personal-data detectors live
in :mod:`~hybrid.routing.privacy.detectors`; the secret detectors in
:mod:`~hybrid.routing.privacy.secrets`; :mod:`~hybrid.routing.privacy.scanner` runs them.

Precision matters as much as recall (a false hit keeps a request on the small local model), so
candidates are validated: Luhn and issuer prefixes for cards, mod 97 and per-country lengths for
IBANs, the checksum or issuing rules of each national ID.  Numbers are matched by shape (see
:mod:`hybrid.routing.privacy.shapes`): dates, times, versions, IP addresses, prices and
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
* Provider keys are recognised by format (:mod:`hybrid.routing.privacy.formats`), whatever their
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

from hybrid.routing.privacy.scanner import BUILTIN_DETECTORS, PrivacyScanner
from hybrid.routing.privacy.text import Detector, PrivacyHit, ScanText

__all__ = ["BUILTIN_DETECTORS", "Detector", "PrivacyHit", "PrivacyScanner", "ScanText"]
