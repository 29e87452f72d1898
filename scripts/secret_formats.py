"""Random secrets in each provider's real format: alphabet, length, fixed parts and checksums
as the provider issues them.

:data:`FORMATS` lists every format the privacy scanner must find, as a template for
:func:`random_strings.expand` or a generator; :func:`make` draws one secret from either.  Nothing
here is a real credential: every secret is drawn from the seeded generator it is given.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import random
import urllib.parse
from collections.abc import Callable

from random_strings import ALNUM, DIGITS, b64, base62, draw, expand, uuid4


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
