"""The cascade in the dispatcher: a local answer read first, kept or escalated, and given again
when its escalation fails."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from dispatching import REQUEST, run, text_of
from routing_fakes import LOCAL, CascadingLocal, FakeLocal, FakeProvider

from hybrid.backend import collect
from hybrid.errors import NoRouteError, ProviderUnavailableError, QueueFullError
from hybrid.generation import (
    GenerationRequest,
    Message,
    ResponseFormat,
)
from hybrid.routing.answer import discarded_before
from hybrid.routing.cascade import Cascade
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.names import ModelNames, ProviderModels
from hybrid.settings.routing import RoutingSettings


def cascading(
    local: FakeLocal,
    openai: FakeProvider,
    *,
    escalate_declined: bool = True,
    escalate_outside_options: bool = True,
    local_fallback: bool = True,
) -> Dispatcher:
    names = ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=True)], None)
    return Dispatcher(
        local,
        {"openai": openai},  # type: ignore[dict-item]
        names,
        router=build_router(RoutingSettings()),
        cascade=Cascade(
            0.5,
            escalate_declined=escalate_declined,
            escalate_outside_options=escalate_outside_options,
        ),
        local_fallback=local_fallback,
    )


def test_cascade_keeps_a_confident_local_answer_without_the_logprobs_it_asked_for() -> None:
    local = CascadingLocal([0.9, 0.8, 0.95])
    openai = FakeProvider("openai")
    answer = run(cascading(local, openai).start(REQUEST, model="hybrid"))
    assert answer.route == "local" and answer.reason.endswith(";cascade:0.88>=0.5")
    completion = run(collect(answer.generation))
    assert completion.text == "local words" and completion.logprobs == ()
    assert local.asked[0].params.top_logprobs == 0 and openai.models_asked == []


def test_cascade_escalates_an_unsure_local_answer() -> None:
    local = CascadingLocal([0.2, 0.3, 0.9])
    openai = FakeProvider("openai")
    answer = run(cascading(local, openai).start(REQUEST, model="hybrid"))
    assert (answer.route, answer.reason) == ("cloud", "cascade:0.38<0.5")
    assert run(text_of(answer)) == "openai answer"


def test_cascade_escalates_a_confident_local_answer_that_declines() -> None:
    local = CascadingLocal([0.9, 0.95, 0.9], "I'm sorry, I can't answer this question.")
    openai = FakeProvider("openai")
    answer = run(cascading(local, openai).start(REQUEST, model="hybrid"))
    assert (answer.route, answer.reason) == ("cloud", "cascade:declined")
    assert run(text_of(answer)) == "openai answer"
    assert answer.discarded is not None and answer.discarded.reason == "cascade:declined"


@pytest.mark.parametrize(("stream", "read"), [(False, "cascade"), (True, "cascade:opening")])
def test_an_escalation_that_fails_carries_the_local_answer_the_cascade_discarded(
    stream: bool, read: str
) -> None:
    local = CascadingLocal([0.2, 0.3, 0.9])
    openai = FakeProvider("openai", ProviderUnavailableError("openai", "503"))
    d = cascading(local, openai, local_fallback=False)
    with pytest.raises(NoRouteError, match="local fallback is off") as caught:
        run(d.start(dataclasses.replace(REQUEST, stream=stream), model="hybrid"))
    # The local answer was generated all the same: the ledger records it beside the failure.
    leg = discarded_before(caught.value)
    assert leg is not None and (leg.model, leg.reason) == (LOCAL, f"{read}:0.38<0.5")
    assert leg.completion_tokens > 0 and local.started_answers[0].closed


def test_cascade_keeps_a_declining_answer_when_told_to() -> None:
    local = CascadingLocal([0.9, 0.95, 0.9], "I'm sorry, I can't answer this question.")
    openai = FakeProvider("openai")
    d = cascading(local, openai, escalate_declined=False)
    answer = run(d.start(REQUEST, model="hybrid"))
    assert answer.route == "local" and answer.reason.endswith(";cascade:0.92>=0.5")
    assert openai.models_asked == []


STREAMED = dataclasses.replace(REQUEST, stream=True)
LONG = "Paris is the capital of France and its largest city by far."


def test_a_stream_with_a_sure_opening_is_sent_whole_without_the_logprobs_it_asked_for() -> None:
    local = CascadingLocal([0.9], LONG)
    openai = FakeProvider("openai")
    sent_before_reading: list[int] = []

    async def ask() -> tuple[Any, Any]:
        # One event loop: the stream is resumed where its opening was read.
        answer = await cascading(local, openai).start(STREAMED, model="hybrid")
        sent_before_reading.append(local.started_answers[0].words_sent)
        return answer, await collect(answer.generation)

    answer, completion = run(ask())
    assert answer.route == "local" and answer.reason.endswith(";cascade:opening:0.90>=0.5")
    assert sent_before_reading == [9]  # eight words read ahead, and the ninth begun
    assert completion.text == LONG and completion.logprobs == ()
    started = local.started_answers[0]
    assert started.iterations == 1 and openai.models_asked == []
    assert local.asked[0].params.top_logprobs == 0


def test_a_stream_keeps_the_logprobs_its_client_asked_for() -> None:
    local = CascadingLocal([0.9, 0.8], LONG)
    asking = dataclasses.replace(
        STREAMED, params=dataclasses.replace(STREAMED.params, top_logprobs=2)
    )

    async def ask() -> tuple[Any, Any]:
        answer = await cascading(local, FakeProvider("openai")).start(asking, model="hybrid")
        return answer, await collect(answer.generation)

    answer, completion = run(ask())
    assert answer.reason.endswith(";cascade:opening:0.85>=0.5")
    assert completion.text == LONG
    assert [round(math.exp(lp.logprob), 2) for lp in completion.logprobs] == [0.9, 0.8]
    assert local.asked[0].params.top_logprobs == 2


@pytest.mark.parametrize(
    ("stream", "top_logprobs", "told"),
    [(True, None, True), (True, 0, False), (False, None, False)],
    ids=["stream", "stream-asked", "whole"],
)
def test_a_kept_stream_tells_the_local_model_to_compute_no_more_logprobs(
    stream: bool, top_logprobs: int | None, told: bool
) -> None:
    local = CascadingLocal([0.9], LONG)
    params = dataclasses.replace(REQUEST.params, top_logprobs=top_logprobs)
    asking = dataclasses.replace(REQUEST, stream=stream, params=params)

    async def ask() -> Any:
        answer = await cascading(local, FakeProvider("openai")).start(asking, model="hybrid")
        return answer, await collect(answer.generation)

    answer, completion = run(ask())
    assert answer.route == "local" and completion.text == LONG
    assert local.started_answers[0].logprobs_stopped is told


@pytest.mark.parametrize(
    ("probabilities", "text", "reason"),
    [
        ([0.1], LONG, "cascade:opening:0.10<0.5"),
        ([0.99], "I'm sorry, I don't know the answer to that.", "cascade:declined"),
    ],
    ids=["unsure", "declining"],
)
def test_a_stream_whose_opening_is_unsure_or_declines_goes_to_the_cloud(
    probabilities: list[float], text: str, reason: str
) -> None:
    local = CascadingLocal(probabilities, text)
    openai = FakeProvider("openai")
    answer = run(cascading(local, openai).start(STREAMED, model="hybrid"))
    assert (answer.route, answer.reason) == ("cloud", reason)
    assert run(text_of(answer)) == "openai answer"
    started = local.started_answers[0]
    assert started.closed and started.words_sent == 9
    assert answer.discarded is not None
    assert (answer.discarded.reason, answer.discarded.completion_tokens) == (reason, 9)


def test_a_short_declining_stream_is_read_to_its_end_and_escalated() -> None:
    local = CascadingLocal([0.99], "I don't know.")
    answer = run(cascading(local, FakeProvider("openai")).start(STREAMED, model="hybrid"))
    assert (answer.route, answer.reason) == ("cloud", "cascade:declined")


def test_a_declining_stream_kept_when_told_to_is_still_weighed_for_confidence() -> None:
    sure = CascadingLocal([0.9], "I'm sorry, I don't know.")
    d = cascading(sure, FakeProvider("openai"), escalate_declined=False)
    answer = run(d.start(STREAMED, model="hybrid"))
    assert answer.route == "local" and answer.reason.endswith(";cascade:opening:0.90>=0.5")
    assert run(text_of(answer)) == "I'm sorry, I don't know."
    unsure = CascadingLocal([0.1], "I'm sorry, I don't know.")
    d = cascading(unsure, FakeProvider("openai"), escalate_declined=False)
    answer = run(d.start(STREAMED, model="hybrid"))
    assert (answer.route, answer.reason) == ("cloud", "cascade:opening:0.10<0.5")


DECLINING = "I'm sorry, I can't answer this question."


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_escalation_falls_back_to_the_local_answer_already_read(stream: bool) -> None:
    local = CascadingLocal([0.9, 0.95, 0.9], DECLINING)
    openai = FakeProvider("openai", ProviderUnavailableError("openai", "503"))

    async def ask() -> tuple[Any, Any]:
        asked = dataclasses.replace(REQUEST, stream=stream)
        answer = await cascading(local, openai).start(asked, model="hybrid")
        return answer, await collect(answer.generation)

    answer, completion = run(ask())
    assert (answer.route, answer.reason) == (
        "local",
        "cloud_unavailable:openai:unavailable;cascade:declined",
    )
    # The answer read is the answer given: generated once, without the logprobs it asked for.
    assert len(local.asked) == 1 and openai.models_asked == ["gpt-4.1-mini"]
    assert completion.text == DECLINING and completion.logprobs == ()
    # Still the cascade's label (the learner's), but one generation for the ledger.
    assert answer.discarded is not None and answer.discarded.reason == "cascade:declined"
    assert answer.discarded.replayed


def test_a_stream_read_only_as_far_as_its_opening_is_generated_again_by_the_fallback() -> None:
    local = CascadingLocal([0.1], LONG)
    openai = FakeProvider("openai", ProviderUnavailableError("openai", "503"))
    answer = run(cascading(local, openai).start(STREAMED, model="hybrid"))
    assert (answer.route, answer.reason) == (
        "local",
        "cloud_unavailable:openai:unavailable;cascade:opening:0.10<0.5",
    )
    assert run(text_of(answer)) == LONG
    # The first was closed after its opening: its rest was never generated.
    assert len(local.asked) == 2 and local.started_answers[0].closed
    assert answer.discarded is not None and not answer.discarded.replayed


def test_a_full_queue_escalates_a_request_the_cascade_would_read() -> None:
    local = CascadingLocal([0.9])
    local.fail = QueueFullError(depth=4, retry_after=1)
    answer = run(cascading(local, FakeProvider("openai")).start(REQUEST, model="hybrid"))
    assert (answer.route, answer.reason) == ("cloud", "capacity:queue_full:4")


CHOICE = GenerationRequest(
    "r3",
    messages=(
        Message(
            "user",
            "Which planet is the second from the Sun?\nA) Uranus\nB) Neptune\nC) Saturn\n"
            "D) Venus\nAnswer with the letter of the correct option.",
        ),
    ),
)
"""A multiple-choice question: its answers are the letters A to D."""

VENUS = "The second planet from the Sun is Venus, as every almanac says."
"""A right answer to :data:`CHOICE`, but none of the letters it offered."""


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_confident_answer_outside_the_offered_options_goes_to_the_cloud(stream: bool) -> None:
    local = CascadingLocal([0.95, 0.9], VENUS)
    openai = FakeProvider("openai")
    asked = dataclasses.replace(CHOICE, stream=stream)
    answer = run(cascading(local, openai).start(asked, model="hybrid"))
    assert (answer.route, answer.reason) == ("cloud", "cascade:outside_options")
    assert run(text_of(answer)) == "openai answer"
    assert answer.discarded is not None and answer.discarded.reason == "cascade:outside_options"
    # A stream is read as far as its opening (a word past the eighth), a whole answer to its end.
    assert local.started_answers[0].words_sent == (9 if stream else len(VENUS.split()))


@pytest.mark.parametrize(
    "text", ["D", "D) Venus", "The answer is D.", "Answer: (d) Venus, the second planet."]
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_answer_in_the_offered_options_stays_local(text: str, stream: bool) -> None:
    local = CascadingLocal([0.95, 0.9], text)
    openai = FakeProvider("openai")
    asked = dataclasses.replace(CHOICE, stream=stream)
    answer = run(cascading(local, openai).start(asked, model="hybrid"))
    read = "cascade:opening" if stream else "cascade"
    assert answer.route == "local" and answer.reason.endswith(f";{read}:0.92>=0.5")
    assert run(text_of(answer)) == text and openai.models_asked == []


def test_an_answer_to_a_prompt_that_offers_no_options_is_not_read_for_them() -> None:
    for request in (REQUEST, dataclasses.replace(CHOICE, messages=(Message("user", "Hi?"),))):
        local = CascadingLocal([0.95, 0.9], VENUS)
        answer = run(cascading(local, FakeProvider("openai")).start(request, model="hybrid"))
        assert answer.route == "local" and answer.reason.endswith(";cascade:0.92>=0.5")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_answer_held_to_json_is_not_read(stream: bool) -> None:
    # Under a grammar the tokens' raw probabilities are low however right the answer is.
    local = CascadingLocal([0.1, 0.2, 0.15], '{"city": "Paris", "country": "France"}')
    openai = FakeProvider("openai")
    params = dataclasses.replace(REQUEST.params, response_format=ResponseFormat("json_object"))
    asked = dataclasses.replace(REQUEST, params=params, stream=stream)
    d = cascading(local, openai)
    answer = run(d.start(asked, model="hybrid"))
    assert answer.route == "local" and "cascade" not in answer.reason
    assert local.asked[0].params.top_logprobs is None, "not asked for log-probabilities"
    assert run(text_of(answer)) == '{"city": "Paris", "country": "France"}'
    assert openai.models_asked == []
    # The same answer in free text is read, and discarded.
    answer = run(d.start(dataclasses.replace(REQUEST, stream=stream), model="hybrid"))
    assert answer.route == "cloud"


def test_json_output_and_a_cascade_told_to_keep_them_are_not_read_for_the_options() -> None:
    params = dataclasses.replace(CHOICE.params, response_format=ResponseFormat("json_object"))
    json_mode = dataclasses.replace(CHOICE, params=params)
    answer = run(
        cascading(CascadingLocal([0.95], VENUS), FakeProvider("openai")).start(
            json_mode, model="hybrid"
        )
    )
    assert answer.route == "local"
    d = cascading(
        CascadingLocal([0.95], VENUS), FakeProvider("openai"), escalate_outside_options=False
    )
    answer = run(d.start(CHOICE, model="hybrid"))
    assert answer.route == "local" and answer.reason.endswith(";cascade:0.95>=0.5")
