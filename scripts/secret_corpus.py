"""Generated corpora for the privacy scanner: real-format secrets, and ordinary code and logs.

``placed(rng)`` makes random secrets in each provider's real format (``secret_formats.FORMATS``:
alphabet, length, fixed parts and checksums as the provider issues them) and writes each into the
kinds of text a prompt carries them in: an ``export``, a JSON body, a sentence, a log line, an
echoed error, an escaped JSON string.  ``ordinary(rng)`` (from ``ordinary_text``) makes text that
holds no secret but looks random: lockfiles with their integrity digests, hashes, UUIDs, base64
images, minified JavaScript, git and docker output, request and trace ids, documented placeholder
keys.

Nothing here is a real credential: every secret is drawn from the seeded generator it is given.
Used by ``scripts/bench_privacy.py`` and ``tests/hardening/test_secret_corpus.py``; the modules it
builds on are its neighbours in ``scripts/``, imported by bare name like every script's.
"""

from __future__ import annotations

import random

from ordinary_text import ORDINARY, ordinary
from secret_formats import FORMATS, make

__all__ = ["ASSIGNED_CONTEXTS", "CONTEXTS", "FORMATS", "ORDINARY", "ordinary", "placed"]

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
