"""A prompt that asks for yes or no (or true or false) is scored as one a guess gets right half
the time: its difficulty score (the chance the local model is wrong) is halved; lettered options
are left as they are."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from kinds_of_request import asked, model
from switch_fakes import FakeOpener, fake_runtime

from hybrid.generation import GenerationRequest, Message, ResponseFormat, SamplingParams
from hybrid.routing.chain import build_router
from hybrid.routing.choices import guessed
from hybrid.routing.context import route_context
from hybrid.routing.difficulty.features import N_FEATURES, extract
from hybrid.routing.difficulty.prior import PRIOR_SOURCE
from hybrid.routing.policies.difficulty import DifficultyPolicy
from hybrid.settings.routing import RoutingSettings

YES_NO = "Is the Moon bigger than the Earth? Answer yes or no."
LETTERED = (
    "Which is a planet?\nA) the Moon\nB) Mars\nC) the Sun\nD) Sirius\nAnswer with the letter."
)


def test_a_guess_at_yes_or_no_halves_the_chance_of_a_wrong_answer() -> None:
    assert guessed(0.8, frozenset({"yes", "no"})) == pytest.approx(0.4)
    assert guessed(0.8, frozenset({"true", "false"})) == pytest.approx(0.4)
    assert guessed(0.8, frozenset("abcd")) == 0.8
    assert guessed(0.8, frozenset("ab")) == 0.8
    assert guessed(0.8, None) == 0.8


def test_the_policy_halves_the_score_of_a_yes_or_no_prompt_unless_switched_off() -> None:
    scorer = model(np.full(N_FEATURES, 0.01))
    own = scorer.score_features(extract((Message("user", YES_NO),)))
    yes_no = frozenset({"yes", "no"})

    on = DifficultyPolicy(lambda: scorer, threshold=0.3)
    off = DifficultyPolicy(lambda: scorer, threshold=0.3, yes_no=False)

    moved = on.evaluate(asked(YES_NO, yes_no))
    assert moved.score == pytest.approx(own / 2)
    assert on.evaluate(asked(YES_NO, None)).score == pytest.approx(own)
    assert off.evaluate(asked(YES_NO, yes_no)).score == pytest.approx(own)
    # The decision follows the moved score.
    assert own > 0.3 >= own / 2
    assert (moved.outcome, moved.reason) == ("local", f"difficulty(yes_no):{own / 2:.2f}<=0.30")
    assert off.evaluate(asked(YES_NO, yes_no)).outcome == "cloud"


def ask(text: str, **params: object) -> GenerationRequest:
    return GenerationRequest(
        "r",
        messages=(Message("user", text),),
        params=SamplingParams(max_tokens=16, **params),  # type: ignore[arg-type]
    )


def options(tmp_path: Path, request: GenerationRequest) -> frozenset[str] | None:
    async def scenario() -> frozenset[str] | None:
        runtime, _ = fake_runtime(tmp_path, FakeOpener())
        await runtime.load()
        try:
            made, _, _ = await route_context(runtime, request, count_tokens=False, load=None)
        finally:
            await runtime.close()
        return made.options

    return asyncio.run(scenario())


def test_the_route_context_carries_the_options_a_chat_request_offers(tmp_path: Path) -> None:
    assert options(tmp_path, ask(YES_NO)) == frozenset({"yes", "no"})
    assert options(tmp_path, ask(LETTERED)) == frozenset("abcd")
    assert options(tmp_path, ask("What is the capital of France?")) is None
    # An answer held to JSON is not read as choosing.
    held = ask(YES_NO, response_format=ResponseFormat("json_object"))
    assert options(tmp_path, held) is None


def test_the_setting_reaches_the_policy() -> None:
    scorer = model(np.full(N_FEATURES, 0.01))

    def score(text: str, options: frozenset[str], yes_no: bool) -> float | None:
        settings = RoutingSettings.model_validate({"difficulty": {"yes_no": yes_no}})
        router = build_router(settings, difficulty=lambda: scorer)
        verdicts = router.decide(asked(text, options)).verdicts
        return next(v.score for v in verdicts if v.policy == "difficulty")

    own = scorer.score_features(extract((Message("user", YES_NO),)))
    assert score(YES_NO, frozenset({"yes", "no"}), True) == pytest.approx(own / 2)
    assert score(YES_NO, frozenset({"yes", "no"}), False) == pytest.approx(own)
    lettered = scorer.score_features(extract((Message("user", LETTERED),)))
    assert score(LETTERED, frozenset("abcd"), True) == pytest.approx(lettered)


def test_the_reason_says_the_score_was_halved() -> None:
    scorer = model(np.full(N_FEATURES, 0.01))
    yes_no = frozenset({"yes", "no"})
    on = DifficultyPolicy(lambda: scorer, threshold=0.3)
    off = DifficultyPolicy(lambda: scorer, threshold=0.3, yes_no=False)
    assert on.evaluate(asked(YES_NO, yes_no)).reason.startswith("difficulty(yes_no):")
    assert off.evaluate(asked(YES_NO, yes_no)).reason.startswith("difficulty:")
    lettered = on.evaluate(asked(LETTERED, frozenset("abcd")))
    assert lettered.reason.startswith("difficulty:")
    prior = model(np.full(N_FEATURES, 0.01), meta={"source": PRIOR_SOURCE})
    policy = DifficultyPolicy(lambda: prior, threshold=0.3)
    assert policy.evaluate(asked(YES_NO, yes_no)).reason.startswith("difficulty(prior,yes_no):")
    assert policy.evaluate(asked(YES_NO, None)).reason.startswith("difficulty(prior):")
