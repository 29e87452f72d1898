"""Where the dispatcher sends a request: the local model, the cloud target it escalates to, and
who decided the route."""

from __future__ import annotations

from typing import Any

import pytest
from dispatching import PRIVATE, REQUEST, dispatcher, run, text_of
from routing_fakes import LOCAL, FakeLocal, FakeProvider

from hybrid.errors import (
    ContextLengthExceededError,
    HybridError,
    ModelNotReadyError,
    QueueFullError,
)
from hybrid.generation import GenerationRequest


def test_auto_answers_locally_when_the_request_fits() -> None:
    answer = run(dispatcher(FakeLocal(), FakeProvider("openai")).start(REQUEST, model="hybrid"))
    assert (answer.route, answer.model, answer.reason) == ("local", LOCAL, "policies:pass")


def test_a_prompt_too_long_for_the_local_context_goes_to_the_cloud() -> None:
    local = FakeLocal(
        ContextLengthExceededError(prompt_tokens=9000, max_tokens=312, context_length=8192)
    )
    openai = FakeProvider("openai")
    answer = run(dispatcher(local, openai).start(REQUEST, model=None))
    assert (answer.route, answer.model) == ("cloud", "openai/gpt-4.1-mini")
    assert answer.reason == "length:9312>8192"
    assert openai.models_asked == ["gpt-4.1-mini"]
    assert run(text_of(answer)) == "openai answer"


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (QueueFullError(depth=9, retry_after=3), "capacity:queue_full:9"),
        (ModelNotReadyError("loading"), "capacity:local_loading"),
    ],
)
def test_a_busy_or_absent_local_model_escalates(failure: HybridError, reason: str) -> None:
    answer = run(
        dispatcher(FakeLocal(failure), FakeProvider("openai")).start(REQUEST, model="hybrid")
    )
    assert answer.route == "cloud" and answer.reason == reason


def test_a_named_cloud_model_is_the_escalation_target() -> None:
    local = FakeLocal(
        ContextLengthExceededError(prompt_tokens=9000, max_tokens=0, context_length=8192)
    )
    anthropic = FakeProvider("anthropic")
    answer = run(
        dispatcher(local, FakeProvider("openai"), anthropic).start(
            REQUEST, model="claude-sonnet-4-5"
        )
    )
    assert answer.model == "anthropic/claude-sonnet-4-5"


def test_route_header_overrides_the_model_name() -> None:
    d = dispatcher(FakeLocal(), FakeProvider("openai"))
    assert run(d.start(REQUEST, model="hybrid", override="cloud")).route == "cloud"
    assert run(d.start(REQUEST, model="gpt-4.1-mini", override="local")).route == "local"


@pytest.mark.parametrize(
    ("model", "override", "asked", "decided"),
    [
        ("hybrid", None, REQUEST, "router"),
        ("local", None, REQUEST, "client"),
        ("cloud", None, REQUEST, "client"),
        ("hybrid", "local", REQUEST, "client"),
        ("local", "auto", REQUEST, "router"),
        # The privacy policy overrode the client's "cloud": the router decided.
        ("cloud", None, PRIVATE, "router"),
    ],
)
def test_the_answer_says_who_decided_its_route(
    model: str, override: Any, asked: GenerationRequest, decided: str
) -> None:
    answer = run(
        dispatcher(FakeLocal(), FakeProvider("openai")).start(asked, model=model, override=override)
    )
    assert answer.decided == decided


def test_the_server_wide_mode_decides_when_it_fixes_the_route() -> None:
    routed = dispatcher(FakeLocal(), FakeProvider("openai"))
    routed.mode = "local-only"
    assert run(routed.start(REQUEST, model="hybrid")).decided == "mode"
