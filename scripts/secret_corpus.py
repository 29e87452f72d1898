"""Generated corpora for the privacy scanner: real-format secrets, and ordinary code and logs.

``secrets(rng)`` makes random secrets in each provider's real format (alphabet, length, fixed
parts and checksums as the provider issues them) and ``placed(rng)`` writes each into the kinds
of text a prompt carries them in: an ``export``, a JSON body, a sentence, a log line, an echoed
error, an escaped JSON string.  ``ordinary(rng)`` makes text that holds no secret but looks
random: lockfiles with their integrity digests, hashes, UUIDs, base64 images, minified
JavaScript, git and docker output, request and trace ids, documented placeholder keys.

Nothing here is a real credential: every secret is drawn from the seeded generator it is given.
Used by ``scripts/bench_privacy.py`` and ``tests/hardening/test_secret_corpus.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import string
import urllib.parse
import uuid
from collections.abc import Callable

DIGITS = string.digits
HEX = "0123456789abcdef"
UPPER_HEX = HEX.upper()
ALNUM = string.ascii_letters + string.digits
LETTERS = string.ascii_letters
BASE64 = ALNUM + "+/"
BASE64URL = ALNUM + "-_"
BASE32 = string.ascii_uppercase + "234567"
UPPER_ALNUM = string.ascii_uppercase + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"


def draw(rng: random.Random, alphabet: str, size: int) -> str:
    """``size`` characters drawn uniformly from ``alphabet``."""
    return "".join(rng.choice(alphabet) for _ in range(size))


def b64(data: bytes, *, url: bool = False, pad: bool = True) -> str:
    text = (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()
    return text if pad else text.rstrip("=")


def base62(number: int, width: int) -> str:
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = ALNUM[rest] + digits
    return digits.rjust(width, "0")


def github_token(rng: random.Random, prefix: str) -> str:
    """``ghp_`` and friends: 30 random base62 characters, then their CRC32 in base62."""
    body = draw(rng, ALNUM, 30)
    return prefix + body + base62(binascii.crc32(body.encode()), 6)


def jwt(rng: random.Random, alg: str = "HS256") -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode(), url=True, pad=False)
    claims = {
        "sub": str(rng.randint(10**6, 10**9)),
        "name": rng.choice(["Jane Doe", "svc-billing", "ci"]),
        "iat": rng.randint(1_600_000_000, 1_800_000_000),
        "scope": "read write",
    }
    payload = b64(json.dumps(claims).encode(), url=True, pad=False)
    key = rng.randbytes(32)
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    if alg != "HS256":
        signature = rng.randbytes(256)
    return f"{header}.{payload}.{b64(signature, url=True, pad=False)}"


def pem(rng: random.Random, kind: str) -> str:
    label = f"{kind} PRIVATE KEY".strip()
    body = b64(rng.randbytes(rng.choice((121, 270, 1190))))
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


def password(rng: random.Random) -> str:
    """A generated password: letters, digits and URL-safe symbols, with a digit."""
    return draw(rng, ALNUM + "!*-_.~", rng.randint(12, 24)) + rng.choice(DIGITS)


def uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def expand(rng: random.Random, template: str) -> str:
    """Fill a template: ``{hex:32}`` is 32 random hex digits; see :data:`ALPHABETS`."""
    return _FIELD.sub(lambda m: draw(rng, ALPHABETS[m[1]], int(m[2])), template)


ALPHABETS = {
    "digits": DIGITS, "hex": HEX, "HEX": UPPER_HEX, "alnum": ALNUM, "letters": LETTERS,
    "b64": BASE64, "b64url": BASE64URL, "b32": BASE32, "ALNUM": UPPER_ALNUM,
    "lalnum": LOWER_ALNUM, "bech32": BECH32, "azure": ALNUM + "_~.-",
}  # fmt: skip
_FIELD = re.compile(r"\{(\w+):(\d+)\}")

Maker = str | Callable[[random.Random], str]

FORMATS: list[tuple[str, Maker, bool]] = [
    # AI providers
    ("openai legacy", "sk-{alnum:20}T3BlbkFJ{alnum:20}", False),
    ("openai project", "sk-proj-{b64url:74}T3BlbkFJ{b64url:74}", False),
    ("openai service account", "sk-svcacct-{b64url:58}T3BlbkFJ{b64url:58}", False),
    ("openai admin", "sk-admin-{b64url:58}T3BlbkFJ{b64url:58}", False),
    ("openai project, hex", "sk-proj-{hex:48}", False),
    ("openai-compatible (DeepSeek, DashScope)", "sk-{hex:32}", False),
    ("openrouter", "sk-or-v1-{hex:64}", False),
    ("anthropic api", "sk-ant-api03-{b64url:93}AA", False),
    ("anthropic admin", "sk-ant-admin01-{b64url:93}AA", False),
    ("anthropic oauth", "sk-ant-oat01-{b64url:93}AA", False),
    ("google api (gemini)", "AIza{b64url:35}", False),
    ("google oauth client secret", "GOCSPX-{b64url:28}", False),
    ("google oauth access token", "ya29.{b64url:150}", False),
    ("google oauth refresh token", "1//0{b64url:99}", False),
    ("huggingface", "hf_{letters:34}", False),
    ("huggingface org", "api_org_{letters:34}", False),
    ("groq", "gsk_{alnum:52}", False),
    ("perplexity", "pplx-{alnum:48}", False),
    ("xai", "xai-{alnum:80}", False),
    ("replicate", "r8_{alnum:37}", False),
    ("langsmith", "lsv2_pt_{hex:32}_{hex:10}", False),
    ("mistral", "{alnum:32}", True),
    ("cohere", "{alnum:40}", True),
    ("azure openai", "{hex:32}", True),
    ("together", "{hex:64}", True),
    # Cloud providers
    ("aws access key id", "AKIA{b32:16}", False),
    ("aws temporary key id", "ASIA{b32:16}", False),
    ("aws secret access key", "{b64:40}", True),
    (
        "aws bedrock api key",
        lambda r: (
            "ABSK"
            + b64(expand(r, "BedrockAPIKey-{lalnum:4}-at-{digits:12}:").encode() + r.randbytes(60))
        ),
        False,
    ),
    ("azure ad client secret", "{alnum:3}{digits:1}Q~{azure:34}", False),
    ("alibaba", "LTAI{alnum:20}", False),
    ("digitalocean", "dop_v1_{hex:64}", False),
    ("heroku", "HRKU-AA{b64url:58}", False),
    ("cloudflare api token", "{b64url:40}", True),
    ("vault", "hvs.CAESI{b64url:90}", False),
    ("databricks", "dapi{hex:32}", False),
    ("terraform cloud", "{alnum:14}.atlasv1.{alnum:67}", False),
    ("supabase", "sbp_{hex:40}", False),
    ("pulumi", "pul-{hex:40}", False),
    ("doppler", "dp.pt.{alnum:43}", False),
    ("fly.io", "fo1_{b64url:43}", False),
    ("tailscale", "tskey-auth-k{alnum:10}-{alnum:33}", False),
    ("sentry", "sntryu_{hex:64}", False),
    ("grafana", "glsa_{alnum:32}_{hex:8}", False),
    ("new relic", "NRAK-{ALNUM:27}", False),
    ("datadog", "{hex:32}", True),
    ("linear", "lin_api_{alnum:40}", False),
    ("notion", "ntn_{digits:11}{alnum:35}", False),
    ("postman", "PMAK-{hex:24}-{hex:34}", False),
    ("twilio api key", "SK{hex:32}", False),
    ("sendgrid", "SG.{b64url:22}.{b64url:43}", False),
    ("mailchimp", "{hex:32}-us{digits:1}", True),
    ("brevo", "xkeysib-{hex:64}-{alnum:16}", False),
    # Code hosts and package registries
    ("github classic pat", lambda r: github_token(r, "ghp_"), False),
    ("github oauth", lambda r: github_token(r, "gho_"), False),
    ("github app", lambda r: github_token(r, "ghs_"), False),
    ("github fine-grained pat", "github_pat_11{ALNUM:20}_{alnum:59}", False),
    ("gitlab pat", "glpat-{b64url:20}", False),
    ("gitlab runner", "glrt-{b64url:20}", False),
    ("gitlab deploy", "gldt-{b64url:20}", False),
    ("bitbucket app password", "ATBB{alnum:32}{HEX:8}", False),
    ("npm", "npm_{alnum:36}", False),
    ("pypi", "pypi-AgEIcHlwaS5vcmc{b64url:140}", False),
    ("rubygems", "rubygems_{hex:48}", False),
    ("docker hub", "dckr_pat_{b64url:27}", False),
    ("jfrog", "AKCp{alnum:69}", False),
    # Chat
    ("slack bot", "xoxb-{digits:13}-{digits:13}-{alnum:24}", False),
    ("slack user", "xoxp-{digits:12}-{digits:12}-{digits:13}-{hex:32}", False),
    ("slack app", "xapp-1-A0{ALNUM:9}-{digits:13}-{hex:64}", False),
    ("slack webhook", "https://hooks.slack.com/services/T{ALNUM:10}/B{ALNUM:10}/{alnum:24}", False),
    (
        "slack workflow webhook",
        "https://hooks.slack.com/workflows/T{ALNUM:10}/A{ALNUM:10}/{digits:18}/{alnum:24}",
        False,
    ),
    ("discord webhook", "https://discord.com/api/webhooks/{digits:19}/{b64url:68}", False),
    (
        "discord bot token",
        lambda r: (
            b64(str(r.randint(10**17, 10**19)).encode(), pad=False)
            + expand(r, ".{b64url:6}.{b64url:38}")
        ),
        False,
    ),
    (
        "teams webhook",
        lambda r: (
            f"https://contoso.webhook.office.com/webhookb2/{uuid4(r)}@{uuid4(r)}"
            + expand(r, "/IncomingWebhook/{hex:32}/")
            + uuid4(r)
        ),
        False,
    ),
    (
        "telegram bot",
        lambda r: str(r.randint(10**8, 10**10 - 1)) + expand(r, ":AA{b64url:33}"),
        False,
    ),
    # Payments
    ("stripe live secret", "sk_live_51{alnum:97}", False),
    ("stripe test secret", "sk_test_{alnum:24}", False),
    ("stripe restricted", "rk_live_{alnum:24}", False),
    ("stripe webhook secret", "whsec_{alnum:32}", False),
    ("square access token", "EAAA{b64url:60}", False),
    ("square oauth secret", "sq0csp-{b64url:43}", False),
    ("braintree", "access_token$production${lalnum:16}${hex:32}", False),
    ("plaid", lambda r: "access-production-" + uuid4(r), False),
    # Private keys
    ("rsa private key", lambda r: pem(r, "RSA"), False),
    ("openssh private key", lambda r: pem(r, "OPENSSH"), False),
    ("pkcs8 private key", lambda r: pem(r, ""), False),
    ("encrypted private key", lambda r: pem(r, "ENCRYPTED"), False),
    ("ec private key", lambda r: pem(r, "EC"), False),
    ("pgp private key", lambda r: pem(r, "PGP").replace("KEY-----", "KEY BLOCK-----"), False),
    (
        "putty private key",
        lambda r: (
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\n"
            + b64(r.randbytes(48))
            + expand(r, "\nPrivate-MAC: {hex:64}")
        ),
        False,
    ),
    ("age secret key", "AGE-SECRET-KEY-1{bech32:58}", False),
    (
        "gcp service account json",
        lambda r: json.dumps(
            {
                "type": "service_account",
                "private_key_id": expand(r, "{hex:40}"),
                "private_key": pem(r, "") + "\n",
            }
        ),
        False,
    ),
    # Tokens and credentials
    ("jwt hs256", lambda r: jwt(r), False),
    ("jwt rs256", lambda r: jwt(r, "RS256"), False),
    ("postgres url", lambda r: f"postgres://app:{password(r)}@db.internal:5432/app", False),
    ("mysql url", lambda r: f"mysql://root:{password(r)}@127.0.0.1:3306/shop", False),
    (
        "mongodb url",
        lambda r: f"mongodb+srv://admin:{password(r)}@cluster0.a1b2c.mongodb.net/?w=majority",
        False,
    ),
    ("redis url", lambda r: f"redis://:{password(r)}@cache:6379/0", False),
    ("amqp url", lambda r: f"amqp://worker:{password(r)}@mq.internal:5672/", False),
    (
        "odbc connection string",
        lambda r: f"Server=tcp:sql.internal,1433;Database=app;User Id=sa;Password={password(r)};",
        False,
    ),
    (
        "azure storage connection string",
        lambda r: (
            "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey="
            + b64(r.randbytes(64))
            + ";EndpointSuffix=core.windows.net"
        ),
        False,
    ),
    (
        "azure sas url",
        lambda r: (
            "https://acme.blob.core.windows.net/backups?sv=2022-11-02&sp=rl&sig="
            + urllib.parse.quote(b64(r.randbytes(32)), safe="")
        ),
        False,
    ),
    (
        "basic auth header",
        lambda r: "Authorization: Basic " + b64(f"deploy:{password(r)}".encode()),
        False,
    ),
    ("bearer token", "Authorization: Bearer {b64url:40}", False),
    ("database password", password, True),
    ("oauth client secret", "{b64url:40}", True),
]
"""Every secret format the scanner must find: name, template or generator, and whether it
only means something assigned to a name (a bare 32-character Mistral key is just a string)."""


def make(rng: random.Random, maker: Maker) -> str:
    """One secret from a template or generator."""
    return expand(rng, maker) if isinstance(maker, str) else maker(rng)


ASSIGNED_NAMES = ("API_KEY", "client_secret", "DB_PASSWORD", "aws_secret_access_key", "token")

# Where a secret appears in a prompt.  "{s}" is the secret, "{n}" an assignment's name.
CONTEXTS = {
    "export": "export {n}={s}\n",
    "dotenv quoted": '{n}="{s}"',
    "json": '{{"{n}": "{s}", "model": "gpt-4o"}}',
    "yaml": "  {n}: {s}\n",
    "python": 'client = Client({n}="{s}")',
    "prose": "Here is what I use: {s} - why does the API say it is invalid?",
    "end of sentence": "I pasted {s}.",
    "markdown": "Put `{s}` in the header.",
    "parentheses": "(see {s})",
    "log line": "2024-05-01T12:00:00Z DEBUG calling upstream with {s} now",
    "echoed error": "Error: Incorrect API key provided: {s}. You can find it in the dashboard.",
    "escaped json": '{{"content": "my credentials:\\n{s}\\nthanks"}}',
    "cjk prose": "我的密钥是{s}\uff0c请帮我看看",
}
ASSIGNED_CONTEXTS = ("export", "dotenv quoted", "json", "yaml", "python")


def placed(rng: random.Random, per_format: int = 3) -> list[tuple[str, str, str, str]]:
    """Every format, ``per_format`` fresh secrets each, in every context that suits it.

    Returns:
        ``(format, context, secret, text)`` rows.
    """
    rows = []
    for name, maker, assigned in FORMATS:
        for _ in range(per_format):
            secret = make(rng, maker)
            for context, template in CONTEXTS.items():
                if assigned and context not in ASSIGNED_CONTEXTS:
                    continue
                variable = rng.choice(ASSIGNED_NAMES)
                if name.startswith("aws secret"):
                    variable = "aws_secret_access_key"
                text = template.format(n=variable, s=secret)
                rows.append((name, context, secret, text))
    return rows


# --- ordinary text ----------------------------------------------------------------------------

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
