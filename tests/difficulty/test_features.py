"""Prompt features: fixed size, deterministic, and the right ones light up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hybrid.generation import Message
from hybrid.routing.difficulty.features import (
    HASH_BUCKETS,
    N_DENSE,
    N_FEATURES,
    extract,
    feature_names,
)


def features(text: str, *history: Message) -> dict[str, float]:
    vector = extract([*history, Message("user", text)])
    return dict(zip(feature_names(), vector.tolist(), strict=True))


def test_the_vector_has_a_name_per_entry_and_a_fixed_size() -> None:
    names = feature_names()
    assert len(names) == N_FEATURES == N_DENSE + HASH_BUCKETS
    assert len(set(names)) == len(names)
    for messages in ([], [Message("user", "hi")], [Message("user", "x " * 50_000)]):
        vector = extract(messages)
        assert vector.shape == (N_FEATURES,)
        assert vector.dtype == np.float32


@given(
    st.lists(
        st.builds(Message, st.sampled_from(["system", "user", "assistant"]), st.text()),
        max_size=5,
    )
)
def test_any_conversation_gives_finite_features(messages: list[Message]) -> None:
    assert np.all(np.isfinite(extract(messages)))


def test_features_are_the_same_in_another_process() -> None:
    """The n-gram hash must not be Python's per-process salted hash()."""
    code = (
        "from hybrid.generation import Message; from hybrid.routing.difficulty.features "
        "import extract; import json; "
        "print(json.dumps(extract([Message('user', 'Explain why the sky is blue')]).tolist()))"
    )
    here = extract([Message("user", "Explain why the sky is blue")]).tolist()
    for salt in ("1", "2"):
        output = subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": salt},
        ).stdout
        assert json.loads(output) == here


def test_code_prompts_light_up_the_code_features() -> None:
    code = features("What does this print?\n```python\ndef f(x):\n    return x * 2\n```")
    prose = features("Tell me about your favourite holiday by the sea.")
    assert code["code_fences"] > 0 and prose["code_fences"] == 0
    assert code["code_words"] >= 2 and prose["code_words"] == 0
    assert code["code_calls"] > prose["code_calls"]


def test_math_prompts_light_up_the_math_features() -> None:
    product = features("What is 347 * 912?")
    small = features("What is 3 + 4?")
    prose = features("What is the capital of France?")
    assert product["multiplication_cue"] > 0 and small["multiplication_cue"] == 0
    assert product["three_digit_numbers"] == 2 and small["three_digit_numbers"] == 0
    assert product["log_max_number_digits"] > small["log_max_number_digits"] > 0
    assert small["operator_share"] > 0 and prose["digit_share"] == 0


def test_reasoning_instructions_language_and_depth_are_seen() -> None:
    reasoning = features("Explain step by step why the proof works, and then compare it.")
    assert reasoning["reasoning_phrases"] >= 3 and reasoning["and_then"] == 1
    listed = features("Please do this:\n- write a poem\n- translate it\n- summarise it")
    assert listed["bullets"] == 3 and listed["imperatives"] >= 3
    assert features("日本の首都はどこですか")["cjk_share"] > 0.5
    assert features("Какая столица России?")["cyrillic_share"] > 0.5
    assert features("hello")["non_ascii_share"] == 0
    deep = features(
        "And my name?",
        Message("system", "Be brief."),
        Message("user", "Hi, I am Ana."),
        Message("assistant", "Hello Ana!"),
    )
    assert deep["user_turns"] == 2 and deep["assistant_turns"] == 1 and deep["has_system"] == 1
    assert deep["log_history_chars"] > 0 and features("And my name?")["log_history_chars"] == 0


def test_words_are_hashed_into_buckets_that_differ_between_prompts() -> None:
    a = extract([Message("user", "capital of France")])[N_DENSE:]
    b = extract([Message("user", "integral of a polynomial")])[N_DENSE:]
    assert a.sum() > 0 and not np.array_equal(a, b)
