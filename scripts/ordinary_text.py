"""Ordinary text that looks random but holds no secret: what the privacy scanner must let pass.

Lockfiles with their integrity digests, hashes, UUIDs, base64 images, minified JavaScript, git
and docker output, request and trace ids, documented placeholder keys.  :data:`ORDINARY` names
each kind with its generator; :func:`ordinary` draws samples of all of them.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable

from random_strings import ALNUM, BASE64, LOWER_ALNUM, b64, draw, uuid4

PACKAGES = (
    "react", "lodash", "express", "typescript", "webpack", "@babel/core", "@types/node",
    "eslint", "axios", "chalk", "debug", "ms", "semver", "uuid", "zod", "vite", "esbuild",
)  # fmt: skip


def _version(rng: random.Random) -> str:
    return f"{rng.randint(0, 18)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}"


def _integrity(rng: random.Random) -> str:
    return "sha512-" + b64(rng.randbytes(64))


def npm_lock(rng: random.Random) -> str:
    name, version = rng.choice(PACKAGES), _version(rng)
    return (
        f'    "node_modules/{name}": {{\n      "version": "{version}",\n'
        f'      "resolved": "https://registry.npmjs.org/{name}/-/{name.split("/")[-1]}-{version}.tgz",\n'
        f'      "integrity": "{_integrity(rng)}",\n      "dev": true\n    }},'
    )


def yarn_lock(rng: random.Random) -> str:
    name, version = rng.choice(PACKAGES), _version(rng)
    return (
        f'"{name}@^{version}":\n  version "{version}"\n'
        f'  resolved "https://registry.yarnpkg.com/{name}/-/{name.split("/")[-1]}-{version}.tgz'
        f'#{rng.randbytes(20).hex()}"\n  integrity {_integrity(rng)}\n'
    )


def pnpm_lock(rng: random.Random) -> str:
    name, version = rng.choice(PACKAGES), _version(rng)
    return f"  /{name}@{version}:\n    resolution: {{integrity: {_integrity(rng)}}}\n    dev: true"


def go_sum(rng: random.Random) -> str:
    repo = rng.choice(("github.com/spf13/cobra", "golang.org/x/net", "google.golang.org/grpc"))
    version = "v" + _version(rng)
    return (
        f"{repo} {version} h1:{b64(rng.randbytes(32))}\n"
        f"{repo} {version}/go.mod h1:{b64(rng.randbytes(32))}"
    )


def cargo_lock(rng: random.Random) -> str:
    name = rng.choice(("serde", "tokio", "rand", "regex"))
    return (
        f'[[package]]\nname = "{name}"\nversion = "{_version(rng)}"\n'
        f'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
        f'checksum = "{rng.randbytes(32).hex()}"'
    )


def pip_hashes(rng: random.Random) -> str:
    name = rng.choice(("requests", "numpy", "pydantic", "httpx"))
    return f"{name}=={_version(rng)} \\\n    --hash=sha256:{rng.randbytes(32).hex()}"


def wheel_record(rng: random.Random) -> str:
    path = rng.choice(("pkg/__init__.py", "pkg/core.py", "pkg/_native.so", "pkg/py.typed"))
    digest = b64(rng.randbytes(32), url=True, pad=False)
    return f"{path},sha256={digest},{rng.randint(0, 90000)}"


def sri_tag(rng: random.Random) -> str:
    name = rng.choice(("bootstrap", "jquery", "htmx.org", "alpinejs"))
    return (
        f'<script src="https://cdn.jsdelivr.net/npm/{name}@{_version(rng)}/dist/{name}.min.js" '
        f'integrity="sha384-{b64(rng.randbytes(48))}" crossorigin="anonymous"></script>'
    )


def hashes(rng: random.Random) -> str:
    size = rng.choice((16, 20, 32, 64))
    line = rng.choice(
        (
            f"{rng.randbytes(size).hex()}  dist/app-{_version(rng)}.tar.gz",
            f"SHA256 ({rng.choice(('a.iso', 'b.zip'))}) = {rng.randbytes(32).hex()}",
            f'etag: W/"{rng.randbytes(16).hex()}"',
            f"Digest: sha-256={b64(rng.randbytes(32))}",
            f"oid sha256:{rng.randbytes(32).hex()}\nsize {rng.randint(100, 10**8)}",
        )
    )
    return line


def uuids(rng: random.Random) -> str:
    value = uuid4(rng)
    return rng.choice(
        (
            f'{{"id": "{value}", "parent": "{uuid4(rng)}"}}',
            f"x-amzn-requestid: {value}",
            f"[{value.upper()}] order accepted",
            f"GUID {{{value.upper()}}}",
        )
    )


_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ")
_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
_GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00"
_WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 "


def images(rng: random.Random) -> str:
    head, mime = rng.choice(((_PNG, "png"), (_JPEG, "jpeg"), (_GIF, "gif"), (_WEBP, "webp")))
    data = b64(head + rng.randbytes(rng.choice((40, 150, 600, 3000))))
    return rng.choice(
        (
            f'<img src="data:image/{mime};base64,{data}">',
            f'{{"type": "image_url", "image_url": {{"url": "data:image/{mime};base64,{data}"}}}}',
            f'{{"b64_json": "{data}"}}',
            f".icon{{background:url(data:image/{mime};base64,{data})}}",
            f'{{"type": "image", "source": {{"type": "base64", "media_type": "image/{mime}", "data": "{data}"}}}}',  # noqa: E501
        )
    )


def _identifier(rng: random.Random) -> str:
    return rng.choice(string.ascii_letters + "_$") + draw(rng, ALNUM, rng.randint(0, 2))


def minified_js(rng: random.Random) -> str:
    names = [_identifier(rng) for _ in range(8)]
    chunks = ",".join(f'{rng.randint(10, 999)}:"{rng.randbytes(8).hex()}"' for _ in range(6))
    return (
        f"!function({names[0]}){{var {names[1]}={{}};function {names[2]}({names[3]}){{if("
        f"{names[1]}[{names[3]}])return {names[1]}[{names[3]}].exports;var {names[4]}="
        f"{names[1]}[{names[3]}]={{i:{names[3]},l:!1,exports:{{}}}};return {names[0]}"
        f"[{names[3]}].call({names[4]}.exports,{names[4]},{names[4]}.exports,{names[2]}),"
        f'{names[4]}.exports}}{names[2]}.p="/static/js/"+({{{chunks}}})[{names[5]}]+'
        f'".chunk.js";var _0x{rng.randbytes(3).hex()}=["\\x48\\x65\\x6c\\x6c\\x6f"];}}([]);\n'
        f"//# sourceMappingURL=main.{rng.randbytes(4).hex()}.js.map"
    )


def source_map(rng: random.Random) -> str:
    segments = ",".join(
        draw(rng, "ACEGIKMOQSUWYgikmoqsuwy", rng.randint(4, 6)) for _ in range(rng.randint(8, 30))
    )
    return f'{{"version":3,"sources":["src/app.ts"],"names":[],"mappings":"{segments};AAAA"}}'


def git_output(rng: random.Random) -> str:
    sha = rng.randbytes(20).hex()
    return rng.choice(
        (
            f"commit {sha}\nDate:   Wed May 1 12:00:00 2024 +0200\n\n    Fix the retry loop",
            f"{sha[:7]} Merge pull request #{rng.randint(1, 9999)} from acme/feature-x",
            f"Merge: {sha[:7]} {rng.randbytes(20).hex()[:7]}",
            f"index {sha[:12]}..{rng.randbytes(20).hex()[:12]} 100644",
            f"HEAD is now at {sha[:8]} bump version",
        )
    )


def docker_output(rng: random.Random) -> str:
    digest = rng.randbytes(32).hex()
    return rng.choice(
        (
            f"docker pull nginx@sha256:{digest}",
            f"Digest: sha256:{digest}\nStatus: Downloaded newer image for python:3.11-slim",
            f'{rng.randbytes(6).hex()}   redis:7   "docker-entrypoint.s…"   2 hours ago   Up',
            f"image: ghcr.io/acme/api@sha256:{digest}",
            f"pod/web-{rng.randbytes(5).hex()[:9]}-{draw(rng, LOWER_ALNUM, 5)} 1/1 Running",
        )
    )


def _ulid(rng: random.Random) -> str:
    return draw(rng, "0123456789ABCDEFGHJKMNPQRSTVWXYZ", 26)


def request_ids(rng: random.Random) -> str:
    return rng.choice(
        (
            f"traceparent: 00-{rng.randbytes(16).hex()}-{rng.randbytes(8).hex()}-01",
            f'{{"level":"info","trace_id":"{rng.randbytes(16).hex()}","span_id":"'
            f'{rng.randbytes(8).hex()}","msg":"request done"}}',
            f"x-request-id: req_{rng.randbytes(16).hex()}",
            f"id: chatcmpl-{draw(rng, ALNUM, 29)} model gpt-4o-mini",
            f"tool_use id toolu_01{draw(rng, ALNUM, 22)} and msg_01{draw(rng, ALNUM, 22)}",
            f"event {_ulid(rng)} stored",
            f"cf-ray: {rng.randbytes(8).hex()}-AMS",
            f'{{"_id": {{"$oid": "{rng.randbytes(12).hex()}"}}}}',
            f"customer cus_{draw(rng, ALNUM, 14)} paid pi_{draw(rng, ALNUM, 24)}",
            f"GitHub node MDQ6VXNlcj{b64(str(rng.randint(1, 10**8)).encode(), pad=False)}",
        )
    )


def access_log(rng: random.Random) -> str:
    ip = ".".join(str(rng.randint(1, 254)) for _ in range(4))
    path = rng.choice(("/api/v1/items", "/static/css/main.css", "/health", "/login"))
    return (
        f'{ip} - - [01/May/2024:12:{rng.randint(0, 59):02d}:00 +0000] "GET {path}?page='
        f'{rng.randint(1, 50)} HTTP/1.1" {rng.choice((200, 304, 404))} {rng.randint(100, 99999)} '
        f'"-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
        f'Chrome/124.0.0.0 Safari/537.36"'
    )


def public_keys(rng: random.Random) -> str:
    body = b64(rng.randbytes(270))
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return rng.choice(
        (
            f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{draw(rng, BASE64, 43)} me@laptop",
            f"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ{draw(rng, BASE64, 300)} ci@build",
            f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----",
            f"-----BEGIN PUBLIC KEY-----\n{lines}\n-----END PUBLIC KEY-----",
        )
    )


def placeholders(rng: random.Random) -> str:
    return rng.choice(
        (
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "OPENAI_API_KEY=sk-...",
            "export OPENAI_API_KEY=sk-your-key-here",
            "ANTHROPIC_API_KEY=sk-ant-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "SLACK_WEBHOOK=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "Authorization: Bearer $TOKEN",
            "DATABASE_URL=postgres://postgres:postgres@localhost:5432/app",
            "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app",
            "api_key: YOUR_API_KEY",
        )
    )


def cursors(rng: random.Random) -> str:
    cursor = b64(json.dumps({"id": rng.randint(1, 10**6), "ts": rng.randint(1, 10**9)}).encode())
    return f'{{"has_more": true, "next_cursor": "{cursor}"}}'


ORDINARY: dict[str, Callable[[random.Random], str]] = {
    "npm lockfile": npm_lock,
    "yarn lockfile": yarn_lock,
    "pnpm lockfile": pnpm_lock,
    "go.sum": go_sum,
    "cargo lockfile": cargo_lock,
    "pip hashes": pip_hashes,
    "wheel RECORD": wheel_record,
    "subresource integrity": sri_tag,
    "hashes": hashes,
    "uuids": uuids,
    "base64 images": images,
    "minified js": minified_js,
    "source maps": source_map,
    "git output": git_output,
    "docker output": docker_output,
    "request and trace ids": request_ids,
    "access logs": access_log,
    "public keys and certificates": public_keys,
    "documented placeholders": placeholders,
    "pagination cursors": cursors,
}
"""Kinds of ordinary text that look random but hold no secret, each a generator of samples."""


def ordinary(rng: random.Random, per_kind: int = 100) -> list[tuple[str, str]]:
    """``per_kind`` samples of each kind of ordinary text, as ``(kind, text)`` rows."""
    return [(kind, make(rng)) for kind, make in ORDINARY.items() for _ in range(per_kind)]
