"""The judge of shadow sampling: reading its verdict."""

from __future__ import annotations

import pytest

from hybrid.routing.shadow_judge import read_verdict


@pytest.mark.parametrize(
    ("said", "verdict"), [("Yes.", True), ("no", False), ("Maybe", None), ("", None)]
)
def test_a_judge_verdict_is_its_first_word(said: str, verdict: bool | None) -> None:
    assert read_verdict(said) is verdict
