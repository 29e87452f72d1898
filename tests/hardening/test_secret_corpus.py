"""The privacy scanner against corpora: every real-format secret is found, ordinary text is not.

Secrets are generated at test time in each provider's real format (``scripts/secret_corpus.py``,
which ``scripts/bench_privacy.py`` measures at scale) and written the ways prompts carry them: in
an ``export``, JSON, a sentence, a log line, an echoed error, an escaped JSON string.  A miss
lets a key leave the machine; a false hit pins an ordinary request to the small local model, so
lockfiles, digests, ids, images and minified code must pass untouched.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator
from types import ModuleType

import httpx
import pytest
from fake_cloud import FakeCloud
from scripts_import import script
from server_logs import logged_tracebacks
from soak_tally import SoakTally

from hybrid.routing.privacy import PrivacyScanner

_SECRET_FAMILIES = ("api_key:", "secret:", "private_key")


@pytest.fixture(scope="module")
def corpus() -> Iterator[ModuleType]:
    with script("secret_corpus") as module:
        yield module


@pytest.fixture(scope="module")
def scanner() -> PrivacyScanner:
    return PrivacyScanner()


def test_every_real_format_secret_is_found_wherever_it_is_written(
    scanner: PrivacyScanner, corpus: ModuleType
) -> None:
    missed = []
    for name, context, secret, text in corpus.placed(random.Random(2024), per_format=2):
        at = text.find(secret)
        hits = [hit for hit in scanner.scan(text) if hit.detector.startswith(_SECRET_FAMILIES)]
        if not any(hit.start < at + len(secret) and hit.end > at for hit in hits):
            missed.append(f"{name} in {context}: {text!r}")
    assert missed == []


def test_generated_code_and_logs_are_almost_never_pinned(
    scanner: PrivacyScanner, corpus: ModuleType
) -> None:
    samples = corpus.ordinary(random.Random(2024), per_kind=50)
    pinned = [(kind, text) for kind, text in samples if scanner.first(text) is not None]
    assert len(pinned) <= len(samples) // 100, pinned


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _digest(name: str) -> bytes:
    return hashlib.sha512(name.encode()).digest()


SHA = hashlib.sha1(b"release").hexdigest()
DIGEST = hashlib.sha256(b"nginx:1.27").hexdigest()
ORDINARY = {
    # Lockfiles and package digests.
    "npm lockfile": f'"node_modules/lodash": {{"version": "4.17.21", "integrity": "sha512-'
    f'{_b64(_digest("lodash"))}", "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.21'
    f'.tgz", "dev": true}}',
    "yarn lockfile": f'"@babel/core@^7.24.0":\n  version "7.24.5"\n  integrity sha512-'
    f"{_b64(_digest('babel'))}",
    "pnpm lockfile": f"  /react@18.3.1:\n    resolution: {{integrity: sha512-{_b64(_digest('r'))}}}"
    "\n    dev: false",
    "go.sum": f"golang.org/x/net v0.24.0 h1:{_b64(_digest('net')[:32])}\n"
    f"golang.org/x/net v0.24.0/go.mod h1:{_b64(_digest('net.mod')[:32])}",
    "cargo lockfile": f'checksum = "{hashlib.sha256(b"serde").hexdigest()}"',
    "wheel RECORD": "httpx/_client.py,sha256="
    f"{base64.urlsafe_b64encode(_digest('c')[:32]).decode()[:43]},1234",
    "subresource integrity": '<script src="https://cdn.jsdelivr.net/npm/htmx.org@2.0.0/dist/htmx.'
    f'min.js" integrity="sha384-{_b64(_digest("htmx")[:48])}" crossorigin="anonymous"></script>',
    # Hashes, ids and digests in tool output and logs.
    "git log": f"commit {SHA}\nMerge: {SHA[:7]} 4b825dc\n\n    Merge pull request #4821 from "
    "acme/fix-retries",
    "docker digests": f"docker pull nginx@sha256:{DIGEST}\nDigest: sha256:{DIGEST}",
    "http digest": f"Digest: sha-256={_b64(hashlib.sha256(b'body').digest())}",
    "uuids": "request 123e4567-e89b-42d3-a456-426614174000 took 12 ms "
    "(4BF92F3577B34DA6A3CE929D0E0E4736)",
    "trace ids": "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "ulid and object id": 'event 01HXZ5J8Q4N7ZK2M3P6R8T9VWX stored; {"_id": {"$oid": '
    '"65f1c2a9e4b0a1b2c3d4e5f6"}}',
    "api object ids": "tool_use toolu_01D7FLrfh4GYq7yT1ULFeyMV answered chatcmpl-9xKqLmN2oPqRsTuV"
    "wXyZ0aBcDeFg",
    # Images and front-end bundles.
    "base64 image": '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ'
    'AAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==">',
    "minified js": '!function(e){var t={};function n(r){if(t[r])return t[r].exports}n.p="/static/'
    'js/"+({179:"8f3a2b1c4d5e6f70",412:"0a1b2c3d4e5f6a7b"})[e]+".chunk.js"}([]);\n//# '
    "sourceMappingURL=main.8f3a2b1c.js.map",
    "source map": '{"version":3,"sources":["app.ts"],"mappings":"AAAA,SAASA,GAAG,CAAC,CAAC;AACf"}',
    # Documented example keys.
    "aws examples": "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = "
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "slack example": "SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T00000000/B00000000/"
    "XXXXXXXXXXXXXXXXXXXXXXXX",
    "placeholders": "export OPENAI_API_KEY=sk-your-key-here  # or sk-proj-..., from the dashboard",
}


@pytest.mark.parametrize("text", ORDINARY.values(), ids=ORDINARY.keys())
def test_ordinary_code_and_logs_are_not_pinned(scanner: PrivacyScanner, text: str) -> None:
    assert [(hit.detector, text[hit.start : hit.end]) for hit in scanner.scan(text)] == []


SOAK_SEEDS = range(100, 120)


def strings_in(value: object) -> list[str]:
    """Every string in a parsed JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in [key, *strings_in(item)]]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return []


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_more_seeds_and_no_secret_reaches_the_cloud(
    scanner: PrivacyScanner,
    corpus: ModuleType,
    default_server: str,
    fake: FakeCloud,
    soak_tally: SoakTally,
) -> None:
    missed = 0
    for seed in SOAK_SEEDS:
        for _, _, secret, text in corpus.placed(random.Random(seed), per_format=2):
            at = text.find(secret)
            hits = [hit for hit in scanner.scan(text) if hit.detector.startswith(_SECRET_FAMILIES)]
            missed += not any(hit.start < at + len(secret) and hit.end > at for hit in hits)

    # Through the server: each text in a request that asks for the cloud, in both APIs.
    rows = corpus.placed(random.Random(SOAK_SEEDS[0]), per_format=1)
    statuses: list[int] = []
    with (
        logged_tracebacks() as tracebacks,
        httpx.Client(base_url=default_server, timeout=60) as client,
    ):
        for index, (_, _, _, text) in enumerate(rows):
            messages = [{"role": "user", "content": text}]
            if index % 2:
                body = {"model": "cloud", "max_tokens": 16, "messages": messages}
                response = client.post("/v1/messages", json=body)
            else:
                response = client.post(
                    "/v1/chat/completions", json={"model": "cloud", "messages": messages}
                )
            statuses.append(response.status_code)
    sent = "\n".join(text for request in fake.requests for text in strings_in(request.body))
    leaked = sum(secret in sent for _, _, secret, _ in rows)

    soak_tally.add(
        "secret corpus",
        requests=len(statuses),
        server_errors=sum(status >= 500 for status in statuses),
        tracebacks=len(tracebacks),
        secrets_leaked=missed + leaked,
    )
    assert (missed, leaked) == (0, 0)
    assert set(statuses) == {200}
    assert tracebacks == []
