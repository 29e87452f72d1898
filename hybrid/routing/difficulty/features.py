"""Prompt features for the difficulty model: a fixed-size float32 vector, in well under a ms.

The vector has two parts, in the order :func:`feature_names` lists:

- about fifty hand-made features: lengths (log), conversation depth, code markers, math
  (digit and operator shares, how many numbers and how large, multi-digit products), reasoning
  cues ("step by step", "why", "prove"), domain vocabulary, script (non-ASCII, CJK, Cyrillic),
  instructions (imperatives, bullets, "and then"), question marks, option lists;
- word unigrams and bigrams of the last user message hashed into :data:`HASH_BUCKETS` buckets
  with ``zlib.crc32`` (stable across processes, unlike ``hash()``), as log counts.

Speed matters because every routed request pays for it (about 25 us for a short prompt and
75 us for 8k tokens on a 2-core laptop-class CPU): apart from the conversation's length and
shape, every feature reads only a bounded window of the last user message (its start and its
end), with C-speed ``bytes`` operations (``translate``, ``split``, ``count``) rather than
per-character Python, so a long conversation costs about what a short one does.  Bump
:data:`FEATURE_VERSION` whenever any feature changes: stored weights are only valid for the
version they were fitted on.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence

import numpy as np

from hybrid.generation import Message

FEATURE_VERSION = 1
"""Version of the feature layout; stored with fitted weights, which other versions reject."""

HASH_BUCKETS = 128
"""Buckets the hashed word uni- and bigrams fall into.  128 fit as well as 256 on the
calibration set (held-out AUROC within 0.002 over eight splits) at a fraction of the fitting
cost, which grows with the cube of the vector's length."""

# The window features read this many characters from the start and from the end of
# the last user message: the instruction is usually at one end and the question at the other.
_WINDOW_HEAD = 640
_WINDOW_TAIL = 320
# At most this many words of the window are hashed, which bounds the n-gram cost.
_MAX_HASHED_WORDS = 96

_DIGITS = b"0123456789"
_OPERATORS = b"+-*/=^%<>"
_ASCII = bytes(range(128))
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CJK_LEAD_BYTES = tuple(range(0xE3, 0xEA))  # UTF-8 lead bytes of kana and CJK ideographs
_CYRILLIC_LEAD_BYTES = (0xD0, 0xD1)
_LATIN_ACCENT_LEAD_BYTE = 0xC3

# Maps every ASCII byte that is not a letter, digit or underscore to a space, so that
# ``bytes.split()`` yields the words; UTF-8 sequences of other scripts pass through whole.
_WORD_BYTES = bytes(
    byte if byte >= 128 or chr(byte).isalnum() or byte == ord("_") else ord(" ")
    for byte in range(256)
)
# Line starts are found from their newline (a literal prefix the regex engine skips to), so
# the first line of the window is read with a newline put in front.
_BULLET = re.compile(r"\n[ \t]*(?:[-*\u2022]|\d+[.)])\s")
_OPTION = re.compile(r"\n[ \t]*\(?[A-Ha-h][).]\s")


def _vocabulary(words: str) -> frozenset[bytes]:
    return frozenset(word.encode("ascii") for word in words.split())


_IMPERATIVES = _vocabulary(
    "write list explain describe give name say tell repeat translate summarize summarise "
    "convert calculate compute count compare prove show find solve make create generate "
    "rewrite fix implement design draft outline analyse analyze evaluate continue answer "
    "please"
)
_CODE_WORDS = _vocabulary(
    "def class return import lambda elif print len range self none true false function "
    "python javascript java rust sql code variable loop array list dict string int "
    "evaluate expression compile bug"
)
_MATH_WORDS = _vocabulary(
    "plus minus times multiplied divided product sum difference quotient equals equation "
    "solve calculate compute percent square root power integral derivative"
)
_REASONING_WORDS = _vocabulary(
    "why because therefore prove explain reason compare if then before after next "
    "tallest shortest older younger larger smaller sequence pattern"
)
_SCIENCE_WORDS = _vocabulary(
    "atom molecule element chemical symbol planet sun gas energy physics chemistry biology "
    "cell protein quantum gravity temperature celsius fahrenheit"
)
_GEOGRAPHY_WORDS = _vocabulary("capital country city river ocean continent mountain")
_UNIT_WORDS = _vocabulary(
    "meters meter kilometers kilometer centimeters millimeters miles mile inches inch feet "
    "foot yards kilograms kilogram grams pounds liters milliliters gallons hours minutes "
    "seconds days weeks dozens convert"
)
_CALENDAR_WORDS = _vocabulary(
    "monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday "
    "week month year january february march april may june july august september "
    "october november december"
)
_EXPERT_WORDS = _vocabulary(
    "legal law contract liability diagnosis symptoms medical medication dose tax finance "
    "investment theorem lemma proof algorithm complexity architecture distributed "
    "statistics regression"
)
_CHAT_WORDS = _vocabulary("hello hi hey thanks thank goodbye bye morning name")
_COUNTING_PHRASES = ("how many", "count ", "number of")
_REASONING_PHRASES = ("step by step", "why", "explain", "prove", "compare", "reason", "think")

_DENSE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_last_user_chars",
    "log_last_user_words",
    "log_history_chars",
    "messages",
    "user_turns",
    "assistant_turns",
    "has_system",
    "code_fences",
    "code_words",
    "code_calls",
    "braces_share",
    "semicolons_share",
    "brackets_share",
    "newline_share",
    "digit_share",
    "operator_share",
    "log_numbers",
    "log_max_number_digits",
    "multi_digit_numbers",
    "three_digit_numbers",
    "multiplication_cue",
    "math_words",
    "reasoning_words",
    "reasoning_phrases",
    "counting_phrases",
    "science_words",
    "geography_words",
    "unit_words",
    "calendar_words",
    "expert_words",
    "chat_words",
    "non_ascii_share",
    "cjk_share",
    "cyrillic_share",
    "latin_accent_share",
    "imperatives",
    "bullets",
    "and_then",
    "question_marks",
    "options",
    "quotes",
    "capitalised_share",
    "mean_word_length",
    "long_words_share",
    "type_token_ratio",
)
N_DENSE = len(_DENSE_NAMES)
"""How many hand-made features lead the vector; the hashed n-gram counts follow."""
N_FEATURES = N_DENSE + HASH_BUCKETS
"""Length of every feature vector."""


def feature_names() -> list[str]:
    """Names of the vector's entries, in order: the hand-made features, then ``hash_000``..."""
    return [*_DENSE_NAMES, *(f"hash_{i:03d}" for i in range(HASH_BUCKETS))]


def extract(messages: Sequence[Message]) -> np.ndarray:
    """Compute the feature vector of a conversation.

    Args:
        messages: The conversation, oldest first; may be empty.

    Returns:
        A float32 vector of length :data:`N_FEATURES`, deterministic for the same messages on
        every machine and process.
    """
    vector = np.zeros(N_FEATURES, dtype=np.float32)
    n_chars = sum(len(m.content) for m in messages)
    last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    if len(last_user) > _WINDOW_HEAD + _WINDOW_TAIL:
        window = last_user[:_WINDOW_HEAD] + "\n" + last_user[-_WINDOW_TAIL:]
    else:
        window = last_user
    lower = window.lower()
    encoded = window.encode("utf-8", "replace")
    n_bytes = max(len(encoded), 1)
    words = lower.encode("utf-8", "replace").translate(_WORD_BYTES).split()
    word_set = frozenset(words)
    n_words = max(len(words), 1)
    lengths = np.fromiter(map(len, words), dtype=np.int32, count=len(words))
    numbers = [word for word in words if word.isdigit()]
    multi_digit = sum(len(n) >= 2 for n in numbers)
    product_cue = (
        "*" in window or "\u00d7" in window or b"times" in word_set or b"multiplied" in word_set
    )

    dense = (
        math.log1p(n_chars),
        # Words of the whole conversation, estimated from the window's word length.
        math.log1p(n_chars * n_words / max(len(window), 1)),
        math.log1p(len(last_user)),
        math.log1p(len(words)),
        math.log1p(n_chars - len(last_user)),
        math.log1p(len(messages)),
        sum(m.role == "user" for m in messages),
        sum(m.role == "assistant" for m in messages),
        float(any(m.role in ("system", "developer") for m in messages)),
        min(window.count("```") / 2, 5.0),
        len(word_set & _CODE_WORDS),
        math.log1p(window.count("(") + window.count(").") + window.count("][")),
        (window.count("{") + window.count("}")) / n_bytes * 100,
        window.count(";") / n_bytes * 100,
        (window.count("[") + window.count("]") + window.count("(")) / n_bytes * 100,
        window.count("\n") / n_bytes * 100,
        (n_bytes - len(encoded.translate(None, _DIGITS))) / n_bytes * 10,
        (n_bytes - len(encoded.translate(None, _OPERATORS)) + window.count("\u00d7"))
        / n_bytes
        * 100,
        math.log1p(len(numbers)),
        math.log1p(max((len(n) for n in numbers), default=0)),
        multi_digit,
        sum(len(n) >= 3 for n in numbers),
        float(product_cue) * min(multi_digit, 2),
        len(word_set & _MATH_WORDS),
        len(word_set & _REASONING_WORDS),
        sum(phrase in lower for phrase in _REASONING_PHRASES),
        sum(phrase in lower for phrase in _COUNTING_PHRASES),
        len(word_set & _SCIENCE_WORDS),
        len(word_set & _GEOGRAPHY_WORDS),
        len(word_set & _UNIT_WORDS),
        len(word_set & _CALENDAR_WORDS),
        len(word_set & _EXPERT_WORDS),
        len(word_set & _CHAT_WORDS),
        len(encoded.translate(None, _ASCII)) / n_bytes,
        sum(encoded.count(b) for b in _CJK_LEAD_BYTES) * 3 / n_bytes,
        sum(encoded.count(b) for b in _CYRILLIC_LEAD_BYTES) * 2 / n_bytes,
        encoded.count(_LATIN_ACCENT_LEAD_BYTE) * 2 / n_bytes,
        len(word_set & _IMPERATIVES),
        len(_BULLET.findall("\n" + window)),
        lower.count("and then") + lower.count("after that"),
        window.count("?") + window.count("\uff1f"),
        len(_OPTION.findall("\n" + window)),
        (window.count('"') + window.count("'") + window.count("`")) / 2,
        _upper_share(encoded[:200]),
        float(lengths.sum()) / n_words,
        float((lengths >= 9).sum()) / n_words,
        len(word_set) / n_words,
    )
    vector[:N_DENSE] = dense
    vector[N_DENSE:] = _hashed_ngrams(words)
    return vector


def _upper_share(head: bytes) -> float:
    return (len(head) - len(head.translate(None, _UPPER))) / max(len(head), 1)


def _hashed_ngrams(words: list[bytes]) -> np.ndarray:
    """Log counts of the words and word pairs, hashed into :data:`HASH_BUCKETS` buckets."""
    if len(words) > _MAX_HASHED_WORDS:
        half = _MAX_HASHED_WORDS // 2
        words = words[:half] + words[-half:]
    hashes = list(map(zlib.crc32, words))
    # A pair's hash is crc32 continued from the first word's hash over the second word: the
    # crc32 of the two words run together, without building the string.
    pairs = list(map(zlib.crc32, words[1:], hashes))
    buckets = np.array(hashes + pairs, dtype=np.uint32) % HASH_BUCKETS
    counts = np.bincount(buckets, minlength=HASH_BUCKETS)
    result: np.ndarray = np.log1p(counts, dtype=np.float32)
    return result
