"""What provider keys, tokens and webhook URLs look like: the tables behind the secret detectors.

Three kinds of format, by what the detectors can search for cheaply:

* A :class:`KeyFormat` is a key made of token characters only (letters, digits, ``_``, ``-``,
  and ``+``/``/`` for base64 bodies), recognised by its literal prefix (``sk-proj-``,
  ``ghp_``, ``AKIA``) and then matched whole.
* A :class:`DelimitedFormat` joins token runs with other characters: a webhook URL
  (``hooks.slack.com/services/...``), a dotted token (``SG.xxx.yyy``, ``hvs.xxx``), a
  Telegram bot token (``123456789:AA...``).  It is found from one of its long runs and the
  literal text just before it.
* A :class:`SecretPattern` may have no long run at all (``Q~`` secrets, percent-escaped
  signatures); it has a regex pass of its own, run only when the text holds its rare byte.

The formats are those of gitleaks' and detect-secrets' rule sets that an LLM router's users
hold: AI providers, cloud providers, code hosts and package registries, chat webhooks, payment
providers, observability and deployment services.  A documented placeholder
(``AKIAIOSFODNN7EXAMPLE``, ``sk-your-key-here``, Slack's ``XXXXXXXX`` webhook) is not a key:
see :func:`placeholder_key`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KeyFormat:
    """A provider's key format.

    Attributes:
        detector: ``api_key:<provider>``.
        prefixes: Literal starts of the key.
        pattern: Must match the whole key: a maximal run of letters, digits, ``_`` and ``-``
            (or of base64 characters, ``+`` and ``/`` included, when ``base64``).
        base64: The body is standard base64, so ``+`` and ``/`` belong to the key.
    """

    detector: str
    prefixes: tuple[bytes, ...]
    pattern: re.Pattern[bytes]
    base64: bool = False


def _key(
    name: str, prefixes: tuple[bytes, ...], pattern: bytes, *, base64: bool = False
) -> KeyFormat:
    return KeyFormat(f"api_key:{name}", prefixes, re.compile(pattern), base64)


_HEX32 = rb"[0-9a-f]{32}"
_GITLAB_KINDS = (
    b"pat", b"dt", b"ft", b"soat", b"rt", b"cbt", b"imt", b"ptt", b"agent", b"oas", b"ffct",
)  # fmt: skip

KEY_FORMATS: tuple[KeyFormat, ...] = (
    # AI providers.  "sk-" is OpenAI's and the compatible APIs' (DeepSeek, Moonshot, DashScope:
    # often "sk-" and 32 hex digits), after Anthropic's and OpenRouter's own "sk-ant-"/"sk-or-".
    _key("anthropic", (b"sk-ant-",), rb"sk-ant-[A-Za-z0-9_-]{20,}"),
    _key("openrouter", (b"sk-or-v1-",), rb"sk-or-v1-[0-9a-f]{64}"),
    _key(
        "openai",
        (b"sk-proj-", b"sk-svcacct-", b"sk-admin-", b"sk-None-", b"sk-"),
        rb"sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}",
    ),
    _key("google", (b"AIza",), rb"AIza[A-Za-z0-9_-]{35}"),
    _key("google", (b"GOCSPX-",), rb"GOCSPX-[A-Za-z0-9_-]{28}"),
    _key("google", (b"1//0",), rb"1//0[A-Za-z0-9_-]{40,}", base64=True),  # OAuth refresh token
    _key("huggingface", (b"hf_",), rb"hf_[A-Za-z0-9]{30,}"),
    _key("huggingface", (b"api_org_",), rb"api_org_[A-Za-z0-9]{30,}"),
    _key("groq", (b"gsk_",), rb"gsk_[A-Za-z0-9]{48,}"),
    _key("perplexity", (b"pplx-",), rb"pplx-[A-Za-z0-9]{40,}"),
    _key("xai", (b"xai-",), rb"xai-[A-Za-z0-9]{70,}"),
    _key("replicate", (b"r8_",), rb"r8_[A-Za-z0-9]{37}"),
    _key("langsmith", (b"lsv2_pt_", b"lsv2_sk_"), rb"lsv2_(?:pt|sk)_" + _HEX32 + rb"_[0-9a-f]{10}"),
    # Cloud providers.  AWS key ids are base32 after the prefix; Bedrock keys are base64.
    _key(
        "aws",
        (b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"A3T"),
        rb"(?:A3T[A-Z0-9]|A[KS]IA|ABIA|ACCA)[A-Z2-7]{16}",
    ),
    _key("aws", (b"ABSK",), rb"ABSK[A-Za-z0-9+/]{100,}", base64=True),
    _key("alibaba", (b"LTAI",), rb"LTAI[A-Za-z0-9]{20}"),
    _key("digitalocean", (b"dop_v1_", b"doo_v1_", b"dor_v1_"), rb"do[opr]_v1_[0-9a-f]{64}"),
    _key("heroku", (b"HRKU-",), rb"HRKU-[A-Za-z0-9_-]{58,}"),
    _key("databricks", (b"dapi",), rb"dapi" + _HEX32 + rb"(?:-[0-9])?"),
    _key("supabase", (b"sbp_",), rb"sbp_[0-9a-f]{40}"),
    _key("supabase", (b"sb_secret_",), rb"sb_secret_[A-Za-z0-9_-]{20,}"),
    _key("pulumi", (b"pul-",), rb"pul-[0-9a-f]{40}"),
    _key("flyio", (b"fo1_",), rb"fo1_[A-Za-z0-9_-]{43}"),
    _key(
        "flyio", (b"fm1a_", b"fm1r_", b"fm2_"), rb"fm(?:1[ar]|2)_[A-Za-z0-9+/]{100,}", base64=True
    ),
    _key("tailscale", (b"tskey-",), rb"tskey-[a-z]+-[A-Za-z0-9]{6,}-[A-Za-z0-9]{20,}"),
    _key("sentry", (b"sntryu_",), rb"sntryu_[0-9a-f]{64}"),
    _key("sentry", (b"sntrys_",), rb"sntrys_eyJ[A-Za-z0-9+/_]{40,}", base64=True),
    _key("grafana", (b"glsa_",), rb"glsa_[A-Za-z0-9]{32}_[0-9A-Fa-f]{8}"),
    _key("grafana", (b"glc_",), rb"glc_[A-Za-z0-9+/]{32,}", base64=True),
    _key("newrelic", (b"NRAK-",), rb"NRAK-[A-Z0-9]{27}"),
    _key("linear", (b"lin_api_",), rb"lin_api_[A-Za-z0-9]{40}"),
    _key("notion", (b"ntn_",), rb"ntn_[0-9]{11}[A-Za-z0-9]{35}"),
    _key("postman", (b"PMAK-",), rb"PMAK-[0-9a-f]{24}-[0-9a-f]{34}"),
    _key("atlassian", (b"ATATT3",), rb"ATATT3[A-Za-z0-9_-]{50,}"),
    _key("twilio", (b"SK",), rb"SK" + _HEX32),
    _key(
        "brevo", (b"xkeysib-", b"xsmtpsib-"), rb"x(?:keysib|smtpsib)-[0-9a-f]{64}-[A-Za-z0-9]{16}"
    ),
    # Payments.  Stripe's publishable keys (pk_...) are public by design.
    _key(
        "stripe",
        (b"sk_live_", b"rk_live_", b"sk_test_", b"rk_test_", b"sk_prod_", b"rk_prod_"),
        rb"[sr]k_(?:live|test|prod)_[A-Za-z0-9]{16,}",
    ),
    _key("stripe", (b"whsec_",), rb"whsec_[A-Za-z0-9]{32,}"),
    _key("square", (b"sq0atp-", b"sq0csp-"), rb"sq0(?:atp|csp)-[A-Za-z0-9_-]{22,}"),
    _key("square", (b"EAAA",), rb"EAAA[A-Za-z0-9_-]{60,}"),
    _key(
        "plaid",
        (b"access-production-", b"access-development-", b"access-sandbox-"),
        rb"access-(?:production|development|sandbox)-[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}",
    ),
    # Code hosts, CI and package registries.
    _key("github", (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"), rb"gh[pousr]_[A-Za-z0-9]{36,}"),
    _key("github", (b"github_pat_",), rb"github_pat_[A-Za-z0-9_]{22,}"),
    _key(
        "gitlab",
        tuple(b"gl%s-" % kind for kind in _GITLAB_KINDS),
        rb"gl(?:" + b"|".join(_GITLAB_KINDS) + rb")-[A-Za-z0-9_-]{20,}",
    ),
    _key("gitlab", (b"GR1348941",), rb"GR1348941[A-Za-z0-9_-]{20,}"),
    _key("bitbucket", (b"ATBB",), rb"ATBB[A-Za-z0-9]{32,}"),
    _key("npm", (b"npm_",), rb"npm_[A-Za-z0-9]{36}"),
    _key("pypi", (b"pypi-",), rb"pypi-[A-Za-z0-9_-]{50,}"),
    _key("rubygems", (b"rubygems_",), rb"rubygems_[0-9a-f]{48}"),
    _key("docker", (b"dckr_pat_",), rb"dckr_pat_[A-Za-z0-9_-]{27,}"),
    _key("jfrog", (b"AKCp",), rb"AKCp[A-Za-z0-9]{69}"),
    _key("jfrog", (b"cmVmd",), rb"cmVmd[A-Za-z0-9]{59}"),
    # Chat.  Slack tokens; webhooks are URLs (DELIMITED_FORMATS).
    _key("slack", tuple(b"xox%c-" % c for c in b"abposer"), rb"xox[abposer]-[A-Za-z0-9-]{10,}"),
    _key("slack", (b"xapp-",), rb"xapp-[0-9]-[A-Za-z0-9-]{20,}"),
    _key("facebook", (b"EAAC", b"EAAM", b"EAAG"), rb"EAA[CMG][A-Za-z0-9]{80,}"),
    # An age encryption key is a private key written as one token.
    KeyFormat(
        "private_key", (b"AGE-SECRET-KEY-1",), re.compile(rb"AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}")
    ),
)
"""Provider key formats, most specific first (``sk-ant-`` before ``sk-``)."""

# Not glued to a longer token; "\n" before it is an escape in a JSON string, not a letter.
_NOT_TOKEN_BEFORE = rb"(?:(?<![A-Za-z0-9_-])|(?<=\\[nrt]))"
_TOKEN_END = rb"(?![A-Za-z0-9_-])"


@dataclass(frozen=True)
class DelimitedFormat:
    """A secret that joins runs of token characters with others: ``SG.<id>.<key>``, a webhook
    URL, ``<bot id>:AA<key>``.

    It is looked for where a long run of token characters follows one of its leads, so it
    costs no pass over the text of its own: the token detector visits those runs anyway.

    Attributes:
        detector: ``api_key:<provider>``.
        leads: Literal text that ends right where one of the secret's long runs starts
            (``SG.``, ``hooks.slack.``, the ``@`` inside a Teams webhook URL).
        pattern: The whole secret, starting at most :data:`DELIMITED_REACH` characters before
            that run; its ``secret`` group (or the whole match) is what
            :func:`placeholder_key` judges.
    """

    detector: str
    leads: tuple[bytes, ...]
    pattern: re.Pattern[bytes]


DELIMITED_REACH = 100
"""How far before the run it was found from a :class:`DelimitedFormat` may start."""

DELIMITED_FORMATS: tuple[DelimitedFormat, ...] = tuple(
    DelimitedFormat(f"api_key:{name}", leads, re.compile(pattern))
    for name, leads, pattern in (
        (
            "slack",
            (b"hooks.slack.",),
            rb"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/-]{20,})",
        ),
        (
            "discord",
            (b"discord.", b"discordapp."),
            rb"discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/(?P<secret>[A-Za-z0-9_-]{60,})",
        ),
        (
            "teams",
            (b"@",),
            rb"webhook\.office\.com/webhookb2/[0-9a-f-]{36}@(?P<secret>[A-Za-z0-9@/_-]{60,})",
        ),
        (
            "telegram",
            (b":",),
            _NOT_TOKEN_BEFORE + rb"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}" + _TOKEN_END,
        ),
        ("sendgrid", (b"SG.",), rb"SG\.[A-Za-z0-9_-]{22}\.(?P<secret>[A-Za-z0-9_-]{43})"),
        (
            "doppler",
            tuple(b"dp.%s." % kind for kind in (b"pt", b"st", b"sa", b"ct", b"scim", b"audit")),
            rb"dp\.(?:pt|st|sa|ct|scim|audit)\.(?P<secret>[A-Za-z0-9._-]{40,})",
        ),
        (
            "vault",
            (b"hvs.", b"hvb.", b"hvr."),
            _NOT_TOKEN_BEFORE + rb"hv[sbr]\.(?P<secret>[A-Za-z0-9_-]{24,})",
        ),
        ("google", (b"ya29.",), _NOT_TOKEN_BEFORE + rb"ya29\.(?P<secret>[A-Za-z0-9_-]{30,})"),
        (
            "terraform",
            (b".atlasv1.",),
            rb"[A-Za-z0-9]{14}\.atlasv1\.(?P<secret>[A-Za-z0-9_=-]{60,})",
        ),
    )
)
"""Secrets made of several token runs, found from the runs the token detector visits."""


@dataclass(frozen=True)
class SecretPattern:
    """A secret whose runs may all be short (``Q~`` and dots, percent-escapes), matched by a
    regex of its own, but only in texts that hold its rare character.

    Attributes:
        detector: ``api_key:<provider>``.
        gate: One byte every match holds and most texts do not (``~``, ``$``, ``&``): without
            it the regex does not run.
        pattern: Starts with literal text; the ``secret`` group (or the whole match) is what
            :func:`placeholder_key` judges.
        before: What must come right before the match (a regex ending in ``\\Z``, at most
            :data:`BEFORE_REACH` characters long); it becomes part of the hit.
    """

    detector: str
    gate: bytes
    pattern: re.Pattern[bytes]
    before: re.Pattern[bytes] | None = None


BEFORE_REACH = 40
"""How far before a :class:`SecretPattern` match its ``before`` part may start."""

SECRET_PATTERNS: tuple[SecretPattern, ...] = tuple(
    SecretPattern(
        f"api_key:{name}",
        gate,
        re.compile(pattern),
        re.compile(before + rb"\Z") if before else None,
    )
    for name, gate, pattern, before in (
        # Azure AD client secrets; Azure SAS tokens, Logic Apps and Teams workflow URLs.
        (
            "azure",
            b"~",
            rb"Q~(?P<secret>[A-Za-z0-9_~.-]{31,34})" + _TOKEN_END,
            rb"[A-Za-z0-9_~.]{3}[0-9]",
        ),
        ("azure", b"&", rb"sig=(?P<secret>[A-Za-z0-9%+/=_-]{40,})", rb"[?&;]"),
        (
            "braintree",
            b"$",
            rb"access_token\$production\$[a-z0-9]{16}\$(?P<secret>[0-9a-f]{32})",
            b"",
        ),
    )
)
"""Secrets matched by a regex pass of their own, when their gate byte is in the text."""

DISCORD_BOT_PATTERN = re.compile(
    rb"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}"
)
"""A Discord bot token: base64 of the bot's id, a timestamp and an HMAC, joined by dots."""

JWT_PATTERN = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
"""A JSON Web Token: base64url header and claims (both JSON objects, hence ``eyJ``), signature."""

PLACEHOLDER_WORDS = (
    b"xxxx", b"****", b"your", b"changeme", b"placeholder", b"redacted", b"example",
)  # fmt: skip
"""Lower-cased fragments that mark a documented placeholder rather than a real key
(``AKIAIOSFODNN7EXAMPLE`` is AWS's documented example key id)."""


def holds_word(value: bytes, words: tuple[bytes, ...] = PLACEHOLDER_WORDS) -> bool:
    """Whether ``value`` holds one of ``words`` in lower case, upper case or capitalised.

    ``YOUR_KEY``, ``sk-your-key`` and ``Example1`` hold a placeholder word; a random key that
    happens to hold ``XXXx`` or ``yOuR`` does not.
    """
    return any(
        word in value or word.upper() in value or word.capitalize() in value for word in words
    )


_SAME_CHARACTER_RUN = re.compile(rb"(.)\1{7}")
_PIECE_SEPARATORS = re.compile(rb"[-_]")


def placeholder_key(body: bytes) -> bool:
    """Whether a key's body (what follows its prefix) is a placeholder, not a random secret.

    A placeholder holds a placeholder word (``your``, ``xxxx``, ``example``), eight equal
    characters in a row (``00000000``), eight ascending ones (``abcdefgh``, ``12345678``), or
    is mostly lower-case words (``this-is-not-a-real-key``).  A random body of 40 characters,
    even of digits only, does any of this about once in a million.

    Args:
        body: The key without its provider prefix.
    """
    if holds_word(body) or _SAME_CHARACTER_RUN.search(body):
        return True
    run = 0
    for before, after in itertools.pairwise(body):
        run = run + 1 if after == before + 1 else 0
        if run >= 7:
            return True
    # Words: lower-case pieces between dashes that make up most of the body.  A random
    # base64url body has dashes too, but its all-lower-case pieces are few and short.
    pieces = _PIECE_SEPARATORS.split(body)
    words = sum(len(x) for x in pieces if len(x) > 1 and x.isalpha() and x.islower())
    return len(pieces) >= 3 and words * 2 > len(body)
