"""The privacy detectors: what keeps a prompt on this machine, and what must not.

Every detector gets real-looking positives (with the span checked) and the look-alikes that must
not trigger it: a false hit pins a request to the small local model, so precision is tested as
hard as recall.
"""

from __future__ import annotations

import base64
import random
import string
from pathlib import Path
from typing import Any

import pytest

from hybrid.errors import ConfigError
from hybrid.routing.privacy import BUILTIN_DETECTORS, PrivacyHit, PrivacyScanner
from hybrid.routing.privacy import checksums as patterns

# A random-looking key body; slices of it are used wherever a provider format needs one.
BODY = "Zx9Qp3Lm7Vt2Rb8Nk4Hs6Wd1Yc5Ue0TfGj2Ka7Mb3Nc4Pd5Qe6Rf8Sg9Th1Ui2VjWk3Xl4Ym5Zn6"
# Keys whose alphabet BODY does not fit are drawn here, seeded.
_RNG = random.Random(20240501)


def draw(alphabet: str, size: int) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(size))


HEX = "0123456789abcdef"
BASE32 = string.ascii_uppercase + "234567"
AWS_KEY_ID = "AKIA" + draw(BASE32, 16)
AWS_SECRET = draw(string.ascii_letters + string.digits + "+/", 40)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwia"
    "WF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.fixture(scope="module")
def scanner() -> PrivacyScanner:
    return PrivacyScanner()


def found(scanner: PrivacyScanner, text: str) -> list[tuple[str, str]]:
    """(detector, matched text) for every hit, in order."""
    return [(hit.detector, text[hit.start : hit.end]) for hit in scanner.scan(text)]


def assert_finds(scanner: PrivacyScanner, text: str, detector: str, match: str) -> None:
    hits = found(scanner, text)
    assert hits == [(detector, match)], f"in {text!r}"


def assert_clean(scanner: PrivacyScanner, text: str) -> None:
    assert found(scanner, text) == [], f"in {text!r}"
    assert scanner.first(text) is None


# --- e-mail ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "jane.doe@example.com",
        "bob.smith+invoices@mail.example.co.uk",
        "x_y-z%1@sub-domain.example.io",
        "OPS@ACME.ORG",
        "first.last@xn--bcher-kva.de",
    ],
)
def test_email_addresses_are_found_with_their_span(scanner: PrivacyScanner, address: str) -> None:
    assert_finds(scanner, f"Please write to {address}, thanks.", "email", address)
    assert_finds(scanner, f"mailto:{address}", "email", address)
    assert_finds(scanner, f"<{address}>", "email", address)


@pytest.mark.parametrize(
    "text",
    [
        "git clone git@github.com:owner/repo.git",  # an SSH remote
        "use icon@2x.png and logo@3x.jpeg",  # retina image names
        "    @property\n    def name(self): ...",  # a decorator
        "ssh deploy@localhost",  # no top-level domain
        "npm install lodash@4.17.21 react@18.2.0",  # package versions
        "docker pull nginx@sha256:0a1b2c",
        "follow @hybrid on social media",
        "email me at bob at example dot com",
    ],
)
def test_email_look_alikes_are_not_addresses(scanner: PrivacyScanner, text: str) -> None:
    assert_clean(scanner, text)


def test_password_in_a_url_is_a_credential_not_an_address(scanner: PrivacyScanner) -> None:
    text = "DATABASE_URL=postgres://admin:s3cr3t-pw@db.internal.example.com:5432/app"
    assert found(scanner, text) == [("secret:credential", "admin:s3cr3t-pw")]


def test_documentation_placeholder_in_a_url_is_nothing(scanner: PrivacyScanner) -> None:
    assert_clean(scanner, "connect to https://user:password@example.com/path")


# --- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "(555) 123-4567",
        "(415)555-2671",
        "555-123-4567",
        "555.123.4567",
        "+1 415 555 2671",
        "+1 (415) 555-2671",
        "+14155552671",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+49 30 12345678",
        "+33 1 23 45 67 89",
        "020 7946 0958",
        "07700 900123",
        "01 23 45 67 89",
        "06-12345678",
    ],
)
def test_phone_numbers_are_found_with_their_span(scanner: PrivacyScanner, number: str) -> None:
    assert_finds(scanner, f"Call me on {number} tomorrow.", "phone", number)


@pytest.mark.parametrize(
    "text",
    [
        "released on 2024-01-15 at 10:30:45",
        "due 15.01.2024, or 01/15/2024",
        "upgrade from v1.2.3 to 3.11.4",
        "ping 192.168.100.200 and 10.0.0.1",
        "order id 5551234567",  # a bare run of digits is an id, not a phone
        "call 123-456-7890",  # no North American area code starts with 1
        "total $1,234,567.89",
        "x = +4.5 and y = +281474976710656",  # signed numbers in code
        "ratio +35236450.6",
        "2+2=4, 3+14155552671",
        "timestamp 1699999999123",
    ],
)
def test_phone_look_alikes_are_not_phones(scanner: PrivacyScanner, text: str) -> None:
    assert_clean(scanner, text)


# --- payment cards ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4242424242424242",
        "5555 5555 5555 4444",
        "2223 0031 2200 3222",
        "3782 822463 10005",
        "371449635398431",
        "6011 1111 1111 1117",
        "3530111333300000",
        "30569309025904",
        "4222222222222",
    ],
)
def test_payment_cards_are_found_with_their_span(scanner: PrivacyScanner, card: str) -> None:
    assert_finds(scanner, f"my card is {card}, exp 12/27", "payment_card", card)


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn check digit wrong
        "card 0000 0000 0000 0000",  # all zeros pass Luhn, but are no card
        "id 9111111111111111",  # no network issues cards starting with 9
        "id 5749986484189612790",  # passes Luhn, but no 19-digit cards start with 57
        "card 4111,1111,1111,1111",  # commas: a list of numbers
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "git 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "price 4111.11 and 1111.11",
    ],
)
def test_card_look_alikes_are_not_cards(scanner: PrivacyScanner, text: str) -> None:
    assert_clean(scanner, text)


def luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    """A random number with ``prefix`` and a valid Luhn check digit."""
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return next(body + d for d in string.digits if patterns.luhn_valid(body + d))


def test_luhn_accepts_valid_numbers_and_catches_every_single_digit_error() -> None:
    rng = random.Random(1)
    for _ in range(200):
        number = luhn_complete(rng, "4", rng.choice((13, 16, 19)))
        assert patterns.luhn_valid(number) and patterns.card_valid(number)
        position = rng.randrange(len(number))
        wrong = str((int(number[position]) + rng.randint(1, 9)) % 10)
        assert not patterns.luhn_valid(number[:position] + wrong + number[position + 1 :])


# --- IBAN ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE89 3704 0044 0532 0130 00",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
        "NO9386011117947",
        "BE68 5390 0754 7034",
        "IT60X0542811101000000123456",
    ],
)
def test_ibans_are_found_with_their_span(scanner: PrivacyScanner, iban: str) -> None:
    assert_finds(scanner, f"IBAN: {iban}.", "iban", iban)


def test_a_spaced_iban_followed_by_more_digits_ends_at_its_length(scanner: PrivacyScanner) -> None:
    text = "DE89 3704 0044 0532 0130 00 1234 Berlin"
    assert found(scanner, text) == [("iban", "DE89 3704 0044 0532 0130 00")]


@pytest.mark.parametrize(
    "text",
    [
        "GB82 WEST 1234 5698 7654 33",  # check digits wrong
        "GB82WEST123456987654",  # too short for GB
        "XX82WEST12345698765432",  # no such country
        "GB82,WEST,1234,5698,7654,32",
        "ISO codes DE89 and GB82",
    ],
)
def test_iban_look_alikes_are_not_ibans(scanner: PrivacyScanner, text: str) -> None:
    assert_clean(scanner, text)


def test_iban_mod_97_accepts_generated_ibans_and_catches_single_digit_errors() -> None:
    rng = random.Random(2)
    for country, length in patterns.IBAN_LENGTHS.items():
        bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
        numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
        iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
        assert patterns.iban_valid(iban), iban
        position = rng.randrange(2, length)
        wrong = rng.choice(string.digits.replace(iban[position], ""))
        assert not patterns.iban_valid(iban[:position] + wrong + iban[position + 1 :])
        assert not patterns.iban_valid(iban + "0") and not patterns.iban_valid(iban[:-1])


# --- national IDs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detector", "match"),
    [
        ("SSN 123-45-6789", "national_id:us_ssn", "123-45-6789"),
        ("ss# 078 05 1121", "national_id:us_ssn", "078 05 1121"),
        ("my SSN is 219099999", "national_id:us_ssn", "219099999"),
        ("NI number AB123456C", "national_id:gb_nino", "AB123456C"),
        ("NINO: AB 12 34 56 C", "national_id:gb_nino", "AB 12 34 56 C"),
        ("DNI 12345678Z", "national_id:es_dni", "12345678Z"),
        ("DNI 87654321-X", "national_id:es_dni", "87654321-X"),
        ("BSN: 123456782", "national_id:nl_bsn", "123456782"),
        ("burgerservicenummer 111222333", "national_id:nl_bsn", "111222333"),
        ("Aadhaar 2345 6789 0124", "national_id:in_aadhaar", "2345 6789 0124"),
        ("aadhaar no. 498701234564", "national_id:in_aadhaar", "498701234564"),
        ("CPF 529.982.247-25", "national_id:br_cpf", "529.982.247-25"),
        ("cpf: 11144477735", "national_id:br_cpf", "11144477735"),
        ("ID 11010519491231002X", "national_id:cn_resident_id", "11010519491231002X"),
        ("ID 440304199001011233", "national_id:cn_resident_id", "440304199001011233"),
        ("NIR 1 85 05 78 006 084 91", "national_id:fr_nir", "1 85 05 78 006 084 91"),
        ("sécu 185057800608491", "national_id:fr_nir", "185057800608491"),
    ],
)
def test_national_ids_are_found_with_their_span(
    scanner: PrivacyScanner, text: str, detector: str, match: str
) -> None:
    assert_finds(scanner, text, detector, match)


@pytest.mark.parametrize(
    "text",
    [
        "SSN 000-12-3456",  # area 000 is never issued
        "SSN 666-12-3456",
        "SSN 912-34-5678",
        "SSN 123-00-4567",  # group 00
        "SSN 123-45-0000",  # serial 0000
        "order 219099999 shipped",  # a bare 9-digit number needs a keyword before it
        "QQ123456C",  # Q never starts a NINO
        "GB123456A",  # GB is not an issued prefix
        "AB123456E",  # the suffix is A-D
        "DNI 12345678A",  # wrong control letter
        "BSN 123456789",  # fails the 11-test
        "invoice 123456782",  # valid 11-test, but no keyword
        "Aadhaar 2345 6789 0125",  # Verhoeff check digit wrong
        "Aadhaar 1234 5678 9012",  # never starts with 1
        "CPF 529.982.247-26",
        "CPF 111.111.111-11",  # all equal digits pass the checks but are invalid
        "ID 11010519491231002Y",
        "ID 110105194913310025",  # month 13
        "NIR 1 85 05 78 006 084 36",  # wrong key
    ],
)
def test_national_id_look_alikes_are_not_ids(scanner: PrivacyScanner, text: str) -> None:
    assert_clean(scanner, text)


def test_bare_ids_without_a_keyword_do_not_hide_later_numbers(scanner: PrivacyScanner) -> None:
    text = '{"id": 219099999, "ref": 11144477735}, card 4111 1111 1111 1111, ssn 123-45-6789'
    assert found(scanner, text) == [
        ("payment_card", "4111 1111 1111 1111"),
        ("national_id:us_ssn", "123-45-6789"),
    ]


def test_a_keyword_elsewhere_does_not_make_every_bare_number_an_id(
    scanner: PrivacyScanner,
) -> None:
    text = "order 219099999 shipped; my SSN is 078051121 and the CPF field is empty"
    assert found(scanner, text) == [("national_id:us_ssn", "078051121")]


def test_verhoeff_catches_single_errors_and_adjacent_swaps() -> None:
    rng = random.Random(3)
    for _ in range(200):
        body = "".join(rng.choice(string.digits) for _ in range(11))
        number = next(body + d for d in string.digits if patterns.verhoeff_valid(body + d))
        position = rng.randrange(len(number))
        wrong = str((int(number[position]) + rng.randint(1, 9)) % 10)
        assert not patterns.verhoeff_valid(number[:position] + wrong + number[position + 1 :])
        i = rng.randrange(len(number) - 1)
        swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
        assert swapped == number or not patterns.verhoeff_valid(swapped)


# --- API keys and tokens ---------------------------------------------------------------------

KEYS = [
    ("api_key:openai", "sk-proj-" + BODY[:48]),
    ("api_key:openai", "sk-" + BODY[:48]),
    ("api_key:anthropic", "sk-ant-api03-" + BODY + BODY[:20] + "-AA"),
    ("api_key:aws", AWS_KEY_ID),
    ("api_key:aws", "ASIA" + draw(BASE32, 16)),
    ("api_key:github", "ghp_" + BODY[:36]),
    ("api_key:github", "gho_" + BODY[2:38]),
    ("api_key:github", "github_pat_11ABCDEFG0" + BODY[:12] + "_" + BODY[:59]),
    ("api_key:gitlab", "glpat-" + BODY[:20]),
    ("api_key:slack", f"xoxb-{draw(string.digits, 13)}-{draw(string.digits, 13)}-{BODY[:24]}"),
    ("api_key:stripe", "sk_live_" + BODY[:24]),
    ("api_key:stripe", "rk_live_" + BODY[5:29]),
    ("api_key:google", "AIza" + BODY[:35]),
    ("api_key:huggingface", "hf_" + BODY[:34]),
    ("api_key:npm", "npm_" + BODY[:36]),
    ("api_key:pypi", "pypi-AgEIcHlwaS5vcmc" + BODY[:60]),
    ("api_key:jwt", JWT),
]


@pytest.mark.parametrize(("detector", "key"), KEYS)
def test_provider_keys_are_found_by_provider(
    scanner: PrivacyScanner, detector: str, key: str
) -> None:
    assert_finds(scanner, f'client = Client(api_key="{key}")', detector, key)
    assert_finds(scanner, f"export SOME_KEY={key}\n", detector, key)
    assert_finds(scanner, f"https://api.example.com/v1?key={key}&q=1", detector, key)


def test_a_key_inside_a_path_is_still_found(scanner: PrivacyScanner) -> None:
    key = "ghp_" + BODY[:36]
    assert_finds(scanner, f"see config/tokens/{key}/README", "api_key:github", key)


def test_an_aws_secret_key_is_recognised_next_to_its_name(scanner: PrivacyScanner) -> None:
    assert_finds(scanner, f"aws_secret_access_key = {AWS_SECRET}", "api_key:aws", AWS_SECRET)


def test_bearer_tokens_are_found(scanner: PrivacyScanner) -> None:
    token = "abc123def456ghi789jkl012"
    assert_finds(scanner, f"Authorization: Bearer {token}", "api_key:bearer", token)
    assert_finds(scanner, f'-H "authorization: bearer {token}"', "api_key:bearer", token)


@pytest.mark.parametrize(
    "text",
    [
        "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "OPENAI_API_KEY=sk-your-openai-api-key-goes-here-123",
        "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyzABCD",  # no digit: a placeholder
        "pip install scikit-learn sk-video",
        "AKIA is the prefix of an access key id",
        "token ghp_short123",
        "from huggingface_hub import hf_hub_download_with_retries_enabled",
        "the header starts with eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9 only",
        'curl -H "Authorization: Bearer $TOKEN"',
        "bearer token authentication is common",
    ],
)
def test_key_look_alikes_and_placeholders_are_not_keys(scanner: PrivacyScanner, text: str) -> None:
    assert_clean(scanner, text)


def test_a_provider_key_is_reported_once_by_its_provider(scanner: PrivacyScanner) -> None:
    key = "sk-proj-" + BODY[:48]
    text = f'"api_key": "{key}"\nAuthorization: Bearer {key}'
    assert [detector for detector, _ in found(scanner, text)] == ["api_key:openai"] * 2


def test_a_project_key_with_a_lower_case_hex_body_is_found(scanner: PrivacyScanner) -> None:
    for key in ("sk-proj-" + draw(HEX, 48), "sk-" + draw(HEX, 32), "sk-or-v1-" + draw(HEX, 64)):
        detector = "api_key:openrouter" if key.startswith("sk-or-") else "api_key:openai"
        assert_finds(scanner, f"OPENAI_API_KEY={key}", detector, key)
        assert_finds(scanner, f"my key is {key} and it fails", detector, key)


ANTHROPIC_KEY = "sk-ant-api03-" + draw(string.ascii_letters + string.digits + "-_", 93) + "AA"


@pytest.mark.parametrize(
    "template",
    [
        "My key is {key}, why does it fail?",
        "I pasted {key}.",
        "Use `{key}` in the header.",
        '{{"content": "my credentials:\\n{key}\\nthanks"}}',  # an escaped JSON string
        "我的密钥是{key}\uff0c请帮我看看",
    ],
)
def test_keys_in_prose_and_escaped_json_are_found(scanner: PrivacyScanner, template: str) -> None:
    for detector, key in (("api_key:anthropic", ANTHROPIC_KEY), ("api_key:openai", KEYS[0][1])):
        assert_finds(scanner, template.format(key=key), detector, key)


def test_keys_without_a_digit_are_found_when_their_format_allows_it(
    scanner: PrivacyScanner,
) -> None:
    # AWS key ids are base32 (no digit one time in 28); Hugging Face tokens are letters only.
    for detector, key in (
        ("api_key:aws", "AKIA" + draw(string.ascii_uppercase, 16)),
        ("api_key:huggingface", "hf_" + draw(string.ascii_letters, 34)),
    ):
        assert_finds(scanner, f"token {key} here", detector, key)


SLACK_WEBHOOK = (
    f"https://hooks.slack.com/services/T{draw(string.ascii_uppercase + string.digits, 10)}"
    f"/B{draw(string.ascii_uppercase + string.digits, 10)}/{draw(string.ascii_letters, 24)}"
)
ALNUM = string.ascii_letters + string.digits
URL_SAFE = ALNUM + "-_"

MORE_KEYS = [
    ("api_key:groq", "gsk_" + draw(ALNUM, 52)),
    ("api_key:xai", "xai-" + draw(ALNUM, 80)),
    ("api_key:digitalocean", "dop_v1_" + draw(HEX, 64)),
    ("api_key:databricks", "dapi" + draw(HEX, 32)),
    ("api_key:gitlab", "glrt-" + draw(URL_SAFE, 20)),
    ("api_key:docker", "dckr_pat_" + draw(URL_SAFE, 27)),
    ("api_key:stripe", "whsec_" + draw(ALNUM, 32)),
    ("api_key:sendgrid", f"SG.{draw(URL_SAFE, 22)}.{draw(URL_SAFE, 43)}"),
    ("api_key:vault", "hvs.CAESI" + draw(URL_SAFE, 90)),
    ("api_key:telegram", f"{_RNG.randint(10**8, 10**10 - 1)}:AA{draw(URL_SAFE, 33)}"),
    ("api_key:azure", f"{draw(ALNUM, 3)}8Q~{draw(ALNUM + '_~.-', 34)}"),
    ("api_key:braintree", f"access_token$production${draw(HEX, 16)}${draw(HEX, 32)}"),
    ("api_key:discord", f"discord.com/api/webhooks/{draw(string.digits, 19)}/{draw(URL_SAFE, 68)}"),
    ("api_key:slack", SLACK_WEBHOOK.removeprefix("https://")),
    ("private_key", "AGE-SECRET-KEY-1" + draw("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)),
]


@pytest.mark.parametrize(("detector", "key"), MORE_KEYS)
def test_keys_of_other_providers_and_webhooks_are_found(
    scanner: PrivacyScanner, detector: str, key: str
) -> None:
    assert_finds(scanner, f"export SECRET_THING={key}\n", detector, key)
    assert_finds(scanner, f"The value is {key}. Is that right?", detector, key)


def test_a_slack_webhook_url_is_a_slack_secret(scanner: PrivacyScanner) -> None:
    hits = found(scanner, f"curl -X POST -d @msg.json {SLACK_WEBHOOK}")
    assert [d for d, _ in hits] == ["api_key:slack"]
    assert hits[0][1] in SLACK_WEBHOOK and hits[0][1].endswith(SLACK_WEBHOOK[-24:])


def test_passwords_in_urls_and_basic_auth_are_credentials(scanner: PrivacyScanner) -> None:
    password = draw(ALNUM + "!*~", 16) + "7"
    url = f"DATABASE_URL=postgres://app:{password}@db.internal:5432/app"
    assert found(scanner, url) == [("secret:credential", f"app:{password}")]
    basic = base64.b64encode(f"deploy:{password}".encode()).decode()
    assert found(scanner, f"Authorization: Basic {basic}") == [("secret:credential", basic)]


@pytest.mark.parametrize(
    "text",
    [
        # npm lockfile integrity and a wheel's RECORD: content digests, not secrets.
        '"integrity": "sha512-' + base64.b64encode(_RNG.randbytes(64)).decode() + '"',
        "pkg/core.py,sha256=" + base64.urlsafe_b64encode(_RNG.randbytes(32)).decode()[:43] + ",812",
        "golang.org/x/net v0.24.0 h1:" + base64.b64encode(_RNG.randbytes(32)).decode(),
        # AWS's, Slack's and RFC 7617's documented examples.
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        # Placeholder bodies and passwords filled in from the environment.
        "OPENAI_API_KEY=sk-proj-this-is-not-a-real-key-just-text",
        "xoxb-1234567890-1234567890123-abcdefghijklmnopqrstuvwx",
        "DATABASE_URL=postgres://postgres:postgres@localhost:5432/app",
        "DATABASE_URL=postgres://app:$DB_PASSWORD@db:5432/app",
    ],
)
def test_digests_and_documented_examples_are_not_keys(scanner: PrivacyScanner, text: str) -> None:
    assert_clean(scanner, text)


def test_redact_replaces_every_secret_and_keeps_the_rest(scanner: PrivacyScanner) -> None:
    key = KEYS[0][1]
    text = f"Incorrect API key provided: {key}. Also tried {SLACK_WEBHOOK} and jane@example.com."
    assert scanner.redact(text) == (
        "Incorrect API key provided: [redacted:api_key:openai]. Also tried "
        "https://[redacted:api_key:slack] and [redacted:email]."
    )
    assert scanner.redact("nothing to see here") == "nothing to see here"


# --- secrets: high entropy and assigned credentials -------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        BODY[:24],
        BODY[10:42],
        "q8Rz2LmV+x7Kp/3Nw9Tj5Hb1Yc6Ud0Af4Gs",
        "Xk2_pQ9-vL7mN3zR8tW5yB1cD4fH6jK0",
    ],
)
def test_random_tokens_are_high_entropy_secrets(scanner: PrivacyScanner, secret: str) -> None:
    assert_finds(scanner, f"the value is {secret} here", "secret:high_entropy", secret)


@pytest.mark.parametrize(
    "text",
    [
        "commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904",  # git SHA: hex is not a secret
        "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "id 123E4567-E89B-12D3-A456-426614174000",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "getElementById2ForTesting and HTTPServerV2RequestHandler",
        "RecvmsgRFC3542AncillaryUDPLITE6Test",
        "Credential=AWS4-HMAC-SHA256-Credential2/20240101",
        "see https://github.com/AbCd/Repo123/blob/main/README and v1/projects/Demo42/locations",
        "model mistralai/Mixtral-8x7B-Instruct-v0 or co/UW/OLMo2-8B-SuperBPE-t180k",
        "N10pem_ctx_st4DOLLAR_16E and /Developer/SDKs/MacOSX10",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        "tool_use id toolu_01D7FLrfh4GYq7yT1ULFeyMV and call_wKayJlcYV12NiadiZuJXxcfx",
        '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42'
        'mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==">',
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host",
        "Basic auth header: QWxhZGRpbjpvcGVuIHNlc2FtZQ==",  # base64 of readable text
    ],
)
def test_secret_look_alikes_are_not_secrets(scanner: PrivacyScanner, text: str) -> None:
    assert_clean(scanner, text)


def test_lines_of_a_wrapped_base64_block_are_content_not_secrets(scanner: PrivacyScanner) -> None:
    rng = random.Random(4)
    alphabet = string.ascii_letters + string.digits + "+/"
    lines = ["".join(rng.choice(alphabet) for _ in range(64)) for _ in range(5)]
    certificate = "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----"
    assert_clean(scanner, certificate)
    assert [d for d, _ in found(scanner, f"key: {lines[0]}")] == ["secret:high_entropy"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("password: Tr0ub4dor&3x", "Tr0ub4dor&3x"),
        ('"api_key": "a1b2c3d4e5f6g7h8"', "a1b2c3d4e5f6g7h8"),
        ("DB_PASSWORD=s3cr3tP4ss", "s3cr3tP4ss"),
        ("client_secret = '9f8e7d6c5b4a3210'", "9f8e7d6c5b4a3210"),
        ("GITHUB_TOKEN=abc123def456ghi789", "abc123def456ghi789"),
        ("x-api-key: 0123456789abcdef0123", "0123456789abcdef0123"),
        ("token: 8f14e45fceea167a5a36dedd4bea2543", "8f14e45fceea167a5a36dedd4bea2543"),
        ("accessToken := q1w2e3r4t5y6", "q1w2e3r4t5y6"),
        ("DB_PASSWORD=password123", "password123"),
        ('token = "live_token_2024"', "live_token_2024"),
    ],
)
def test_values_assigned_to_credential_names_are_secrets(
    scanner: PrivacyScanner, text: str, value: str
) -> None:
    assert_finds(scanner, text, "secret:credential", value)


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens: 4096",
        "password = os.environ['DB_PASSWORD']",
        "token = tokens[0]",
        "token=token_v2",
        "password=self.password2",
        "token = b64encode(userpass2).decode()",
        "cache_key = 'user:12345678'",  # only api/access/secret/... keys are credentials
        "monkey = 'abc12345678'",
        "password: ********",
        "api_key: YOUR_API_KEY_HERE_123",
        "password=changeme123",
        "token_count: 12345678",
        "secret: https://vault.example.com/v1/secret/data/app",
        "password: correcthorsebatterystaple",  # no digit: too many false alarms to flag
        "password: example123",
        "bypass = 'route12345'",
    ],
)
def test_credential_look_alikes_are_not_credentials(scanner: PrivacyScanner, text: str) -> None:
    assert_clean(scanner, text)


# --- private keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["RSA ", "EC ", "OPENSSH ", "DSA ", "ENCRYPTED ", "", "PGP "])
def test_private_key_blocks_are_found_whole(scanner: PrivacyScanner, kind: str) -> None:
    block_word = " BLOCK" if kind == "PGP " else ""
    rng = random.Random(5)
    body = "\n".join(
        "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(64))
        for _ in range(4)
    )
    key = (
        f"-----BEGIN {kind}PRIVATE KEY{block_word}-----\n{body}\n"
        f"-----END {kind}PRIVATE KEY{block_word}-----"
    )
    # One hit for the whole block: its base64 lines are not reported again as secrets.
    assert found(scanner, f"here is my key:\n{key}\nthanks") == [("private_key", key)]


def test_a_private_key_header_alone_is_found(scanner: PrivacyScanner) -> None:
    text = '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg..."}'
    assert [d for d, _ in found(scanner, text)] == ["private_key"]


def test_public_keys_and_certificates_are_not_private(scanner: PrivacyScanner) -> None:
    public = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQ\n-----END PUBLIC KEY-----"
    assert_clean(scanner, public)


# --- configuration ---------------------------------------------------------------------------

MIXED = (
    "Contact jane.doe@example.com or (555) 123-4567. Card 4111 1111 1111 1111, "
    "IBAN GB82 WEST 1234 5698 7654 32, SSN 123-45-6789, key sk-proj-" + BODY[:48] + "."
)


def test_detectors_can_be_switched_off_one_by_one() -> None:
    only_email = PrivacyScanner(detectors=["email"])
    assert found(only_email, MIXED) == [("email", "jane.doe@example.com")]
    assert only_email.detectors == ("email",)
    without_email = PrivacyScanner(detectors=[d for d in BUILTIN_DETECTORS if d != "email"])
    assert "email" not in [d for d, _ in found(without_email, MIXED)]
    assert len(found(without_email, MIXED)) == 5


def test_a_family_name_enables_all_its_members() -> None:
    keys = PrivacyScanner(detectors=["api_key", "national_id"])
    assert [d for d, _ in found(keys, MIXED)] == ["national_id:us_ssn", "api_key:openai"]
    assert set(keys.detectors) == {
        d for d in BUILTIN_DETECTORS if d.startswith(("api_key:", "national_id:"))
    }


def test_no_detectors_means_nothing_is_found() -> None:
    nothing = PrivacyScanner(detectors=[])
    assert nothing.scan(MIXED) == [] and nothing.first(MIXED) is None
    assert nothing.detectors == ()


def test_all_builtin_detectors_run_by_default(scanner: PrivacyScanner) -> None:
    assert scanner.detectors == BUILTIN_DETECTORS
    assert [d for d, _ in found(scanner, MIXED)] == [
        "email", "phone", "payment_card", "iban", "national_id:us_ssn", "api_key:openai",
    ]  # fmt: skip


def test_an_unknown_detector_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"'e-mail'.*email"):
        PrivacyScanner(detectors=["e-mail"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entropy_threshold": 0}, "entropy threshold 0"),
        ({"entropy_threshold": 9.5}, "entropy threshold 9.5"),
        ({"min_secret_length": 4}, "min secret length 4"),
    ],
)
def test_out_of_range_settings_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PrivacyScanner(**kwargs)


def test_entropy_threshold_and_min_length_tune_the_secret_detector() -> None:
    text = f"value {BODY[:32]}"
    assert [d for d, _ in found(PrivacyScanner(), text)] == ["secret:high_entropy"]
    assert found(PrivacyScanner(entropy_threshold=5.5), text) == []
    assert found(PrivacyScanner(min_secret_length=40), text) == []


# --- user patterns ---------------------------------------------------------------------------


def test_user_patterns_are_hits_named_after_the_pattern() -> None:
    scanner = PrivacyScanner(
        detectors=[], user_patterns={"ticket": r"ACME-\d{4}", "codename": r"(?i)project\s+falcon"}
    )
    text = "Fix ACME-1234 before Project  Falcon ships; ACME-12 is fine."
    assert found(scanner, text) == [
        ("user_pattern:ticket", "ACME-1234"),
        ("user_pattern:codename", "Project  Falcon"),
    ]
    assert scanner.detectors == ("user_pattern:ticket", "user_pattern:codename")


def test_user_patterns_run_alongside_builtin_detectors() -> None:
    scanner = PrivacyScanner(user_patterns={"domain": r"acme\.com"})
    text = "mail bob@acme.com"
    assert found(scanner, text) == [("email", "bob@acme.com"), ("user_pattern:domain", "acme.com")]


def test_an_invalid_user_regex_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"'customer_ids'.*not a valid regular expression"):
        PrivacyScanner(user_patterns={"ok": "fine", "customer_ids": r"CUST-(\d+"})


def test_a_user_regex_matching_empty_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'anything'.*matches empty text"):
        PrivacyScanner(user_patterns={"anything": r"x*"})


def test_a_user_pattern_name_must_be_safe_to_show() -> None:
    with pytest.raises(ConfigError, match="name 'my secret!'"):
        PrivacyScanner(user_patterns={"my secret!": "x"})


# --- paths -----------------------------------------------------------------------------------


@pytest.fixture
def paths() -> PrivacyScanner:
    return PrivacyScanner(
        detectors=[], paths=["~/work/acme", "/srv/secret/"], home=Path("/home/alice")
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("open ~/work/acme/src/main.py please", "~/work/acme/src/main.py"),
        ("cd /home/alice/work/acme", "/home/alice/work/acme"),
        ("cat $HOME/work/acme/notes.txt", "$HOME/work/acme/notes.txt"),
        ('path="${HOME}/work/acme/x"', "${HOME}/work/acme/x"),
        ("the repo lives in ~/work/acme.", "~/work/acme"),
    ],
)
def test_home_paths_match_with_tilde_home_and_variable(
    paths: PrivacyScanner, text: str, match: str
) -> None:
    assert found(paths, text) == [("path:~/work/acme", match)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("read /srv/secret/db.env now", "/srv/secret/db.env"),
        ("ls /srv/secret", "/srv/secret"),
        ("open file:///srv/secret/a.txt", "/srv/secret/a.txt"),
    ],
)
def test_absolute_paths_match_below_the_prefix(
    paths: PrivacyScanner, text: str, match: str
) -> None:
    assert found(paths, text) == [("path:/srv/secret/", match)]


@pytest.mark.parametrize(
    "text",
    [
        "~/work/acme-old/x.py",
        "~/work/acmeish",
        "/home/alice/work/acme.d/conf",
        "/home/bob/work/acme",
        "/mnt/srv/secret/x",
        "/srv/secrets",
        "work/acme",
    ],
)
def test_other_paths_do_not_match(paths: PrivacyScanner, text: str) -> None:
    assert found(paths, text) == []


def test_a_path_under_home_written_in_full_also_matches_with_tilde() -> None:
    scanner = PrivacyScanner(detectors=[], paths=["/home/alice/clients"], home=Path("/home/alice"))
    hits = found(scanner, "see ~/clients/x.pdf")
    assert hits == [("path:/home/alice/clients", "~/clients/x.pdf")]


def test_the_root_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'/' would match every path"):
        PrivacyScanner(paths=["/"])


# --- the contract: spans, order, first(), no leaked text --------------------------------------


def test_hits_never_carry_the_matched_text(scanner: PrivacyScanner) -> None:
    configured = PrivacyScanner(user_patterns={"ticket": r"ACME-\d{4}"}, paths=["/srv/secret"])
    text = MIXED + " ACME-1234 /srv/secret/a " + JWT
    hits = configured.scan(text)
    assert len(hits) == 9
    for hit in hits:
        secret = text[hit.start : hit.end]
        assert secret not in hit.detector and secret not in repr(hit)


def test_hits_are_ordered_by_position(scanner: PrivacyScanner) -> None:
    text = f"{JWT} then 4111 1111 1111 1111 then jane@example.com"
    starts = [hit.start for hit in scanner.scan(text)]
    assert starts == sorted(starts) and len(starts) == 3


def test_spans_are_offsets_into_non_ascii_text(scanner: PrivacyScanner) -> None:
    text = (
        "Grüße aus Köln 🎉 — schreib an jürgen.x@example.de oder jane@example.com, "
        "Karte 4111 1111 1111 1111"
    )
    assert found(scanner, text) == [
        ("email", "jürgen.x@example.de"),
        ("email", "jane@example.com"),
        ("payment_card", "4111 1111 1111 1111"),
    ]


def test_first_returns_a_hit_that_scan_reports(scanner: PrivacyScanner) -> None:
    hit = scanner.first(MIXED)
    assert isinstance(hit, PrivacyHit) and hit in scanner.scan(MIXED)


def test_first_finds_a_single_hit_at_the_end_of_a_long_prompt(scanner: PrivacyScanner) -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 700 + "ssn 123-45-6789"
    assert scanner.first(text) == PrivacyHit("national_id:us_ssn", len(text) - 11, len(text))


def test_ordinary_prompts_of_every_kind_have_no_hits(scanner: PrivacyScanner) -> None:
    prompt = CLEAN_CORPUS * 4
    assert found(scanner, prompt) == []
    assert scanner.first(prompt) is None


CLEAN_CORPUS = '''
Summarise this incident for the on-call channel. The deploy of v2.14.3 (build 48213, commit
4b825dc642cb6eb9a060e54bf8d69288fbee4904) went out on 2024-05-01 at 12:34:56 UTC; p99 latency
rose from 212 ms to 1,480 ms and the error rate hit 3.5% for 17 minutes. Rollback took 4m12s.

2024-05-01T12:35:02.117Z ERROR [worker-3] GET /api/v1/items/48213 500 912.4ms ip=10.0.3.17
req=5f2b9c1e8a7d4c3b build=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
2024-05-01T12:35:02.118Z WARN  [worker-1] retry 3/5 after 250ms for order #100234 (SKU-55123)

{"id": 1042, "uuid": "123e4567-e89b-12d3-a456-426614174000", "price": 1299.99,
 "currency": "EUR", "created_at": "2024-05-01T12:00:00Z", "tags": ["sale", "b2b"],
 "dimensions": "120x80x45 cm", "weight_kg": 12.5, "version": "3.11.4", "count": 250000}

def retry(fn, attempts=3, backoff=0.25):
    """Call fn, retrying on TimeoutError with exponential backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except TimeoutError:
            time.sleep(backoff * 2 ** attempt)
    raise RuntimeError(f"gave up after {attempts} attempts")

class HTTPServerV2RequestHandler(BaseHTTPRequestHandler):
    max_tokens: int = 4096
    token_count = 0
    cache_key = f"user:{user_id}:session"

Kubernetes: image nginx@sha256:0a1b2c3d, replicas: 3, cpu: 500m, memory: 256Mi, port 8080.
Docker: FROM python:3.11-slim; pip install fastapi==0.115.0 uvicorn[standard]>=0.30 numpy~=1.26
Tool call toolu_01D7FLrfh4GYq7yT1ULFeyMV returned call_wKayJlcYV12NiadiZuJXxcfx in 1.2 s.
Model meta-llama/Llama-3.1-8B-Instruct at 42 tok/s; Qwen/Qwen2.5-Coder-32B-Instruct at 9 tok/s.
Chapter 3, pages 45-67; ISBN 978-3-16-148410-0; call me at extension 4411; room 2.014.
The meeting is at 10:30 on 15.01.2024 in building B, floor 3; budget €12,500 (approx. $13,400).
'''
