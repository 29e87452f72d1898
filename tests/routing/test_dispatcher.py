"""Failover, local fallback and the reasons they give, with scripted local and cloud backends."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from routing_fakes import LOCAL, FakeLocal, FakeProvider

from hybrid.backend import Generation, collect
from hybrid.errors import (
    ContextLengthExceededError,
    HybridError,
    ModelNotReadyError,
    NoRouteError,
    PrivateDataError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    QueueFullError,
)
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    Message,
    TextDelta,
    TokenLogprob,
    Usage,
)
from hybrid.routing.answer import discarded_before
from hybrid.routing.cascade import Cascade
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.names import ModelNames, ProviderModels
from hybrid.settings.routing import RoutingSettings

REQUEST = GenerationRequest("r1", messages=(Message("user", "hi"),))


def dispatcher(
    local: FakeLocal,
    *providers: FakeProvider,
    failover: tuple[str, ...] = (),
    keys: tuple[str, ...] = ("openai", "anthropic"),
    local_fallback: bool = True,
) -> Dispatcher:
    names = ModelNames(
        [
            ProviderModels("openai", ("gpt-4.1-mini",), usable="openai" in keys),
            ProviderModels("anthropic", ("claude-sonnet-4-5",), usable="anthropic" in keys),
        ],
        None,
    )
    return Dispatcher(
        local,
        {p.name: p for p in providers},  # type: ignore[misc]
        names,
        router=build_router(RoutingSettings()),
        failover=names.targets(failover, setting="cloud.failover"),
        local_fallback=local_fallback,
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def text_of(answer: Any) -> str:
    return (await collect(answer.generation)).text


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


def test_failover_to_the_next_target_names_the_first_failure() -> None:
    openai = FakeProvider("openai", ProviderTimeoutError("openai", "no first byte in 2 s"))
    anthropic = FakeProvider("anthropic")
    d = dispatcher(FakeLocal(), openai, anthropic, failover=("anthropic/claude-sonnet-4-5",))
    answer = run(d.start(REQUEST, model="cloud"))
    assert answer.model == "anthropic/claude-sonnet-4-5"
    assert answer.reason == "explicit:cloud;failover:openai:timeout"


def test_every_cloud_target_down_falls_back_to_local() -> None:
    openai = FakeProvider("openai", ProviderUnavailableError("openai", "503", status=503))
    answer = run(dispatcher(FakeLocal(), openai).start(REQUEST, model="cloud"))
    assert (answer.route, answer.reason) == (
        "local",
        "cloud_unavailable:openai:unavailable;explicit:cloud",  # why, then why it went out
    )
    assert run(text_of(answer)) == "local answer"


def test_no_key_falls_back_to_local_and_says_so() -> None:
    answer = run(
        dispatcher(FakeLocal(), FakeProvider("openai"), keys=()).start(REQUEST, model="cloud")
    )
    assert answer.route == "local"
    assert answer.reason == "cloud_unavailable:cloud:no_provider;explicit:cloud"
    d = dispatcher(FakeLocal(), FakeProvider("openai"), keys=("anthropic",))
    assert run(d.start(REQUEST, model="openai/gpt-4.1-mini", override="cloud")).reason == (
        "cloud_unavailable:openai:no_key;explicit:cloud"
    )


def test_nothing_can_serve_names_every_failure_and_whether_to_retry() -> None:
    local = FakeLocal(
        ContextLengthExceededError(prompt_tokens=9000, max_tokens=0, context_length=8192)
    )
    openai = FakeProvider("openai", ProviderTimeoutError("openai", "no first byte in 2 s"))
    with pytest.raises(NoRouteError) as caught:
        run(dispatcher(local, openai).start(REQUEST, model="hybrid"))
    message = str(caught.value)
    assert "openai: no first byte" in message and "local: prompt is 9,000 tokens" in message
    assert caught.value.failures == ["openai:timeout"] and caught.value.should_retry
    with pytest.raises(NoRouteError) as no_key:
        run(dispatcher(local, FakeProvider("openai"), keys=()).start(REQUEST, model="cloud"))
    assert not no_key.value.should_retry
    assert "OPENAI_API_KEY" in str(no_key.value)


def test_with_no_cloud_configured_the_local_error_stands_and_says_why() -> None:
    local = FakeLocal(
        ContextLengthExceededError(prompt_tokens=9000, max_tokens=0, context_length=8192)
    )
    with pytest.raises(ContextLengthExceededError) as caught:
        run(dispatcher(local, FakeProvider("openai"), keys=()).start(REQUEST, model="hybrid"))
    message = str(caught.value)
    assert "prompt is 9,000 tokens" in message and "8,192" in message
    assert "No cloud provider is configured" in message and "OPENAI_API_KEY" in message
    busy = FakeLocal(QueueFullError(depth=3, retry_after=2))
    with pytest.raises(QueueFullError):
        run(dispatcher(busy, FakeProvider("openai"), keys=()).start(REQUEST, model="hybrid"))


def test_local_fallback_can_be_switched_off() -> None:
    openai = FakeProvider("openai", ProviderUnavailableError("openai", "503"))
    with pytest.raises(NoRouteError, match="local fallback is off"):
        run(dispatcher(FakeLocal(), openai, local_fallback=False).start(REQUEST, model="cloud"))


def test_a_request_the_provider_rejects_is_not_failed_over() -> None:
    openai = FakeProvider("openai", ProviderRejectedError("openai", "bad temperature", status=400))
    anthropic = FakeProvider("anthropic")
    d = dispatcher(FakeLocal(), openai, anthropic, failover=("anthropic/claude-sonnet-4-5",))
    with pytest.raises(ProviderRejectedError):
        run(d.start(REQUEST, model="cloud"))
    assert anthropic.models_asked == []


class Unsure(Generation):
    """A local answer whose tokens had the given probabilities, a word at a time (the
    log-probabilities on the first)."""

    def __init__(self, probabilities: list[float], text: str) -> None:
        self.probabilities = probabilities
        self.text = text
        self.iterations = 0
        self.words_sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        self.iterations += 1
        logprobs = tuple(TokenLogprob("w", math.log(p), (119,)) for p in self.probabilities)
        words = self.text.split(" ")
        for n, word in enumerate(words):
            self.words_sent += 1
            yield TextDelta(word if n == len(words) - 1 else word + " ", logprobs if n == 0 else ())
        yield GenerationDone("stop", Usage(7, len(self.probabilities)))

    async def aclose(self) -> None:
        self.closed = True


class CascadingLocal(FakeLocal):
    def __init__(self, probabilities: list[float], text: str = "local words") -> None:
        super().__init__()
        self.probabilities = probabilities
        self.text = text
        self.asked: list[GenerationRequest] = []

        self.started_answers: list[Unsure] = []

    async def start(self, request: GenerationRequest, *, prepared: Any = None) -> Generation:
        if self.fail is not None:
            raise self.fail
        self.asked.append(request)
        self.started_answers.append(Unsure(self.probabilities, self.text))
        return self.started_answers[-1]


def cascading(
    local: FakeLocal,
    openai: FakeProvider,
    *,
    escalate_declined: bool = True,
    local_fallback: bool = True,
) -> Dispatcher:
    names = ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=True)], None)
    return Dispatcher(
        local,
        {"openai": openai},  # type: ignore[dict-item]
        names,
        router=build_router(RoutingSettings()),
        cascade=Cascade(0.5, escalate_declined=escalate_declined),
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


PRIVATE = GenerationRequest("r2", messages=(Message("user", "mail jane.doe@example.com the file"),))


def test_private_data_stays_local_even_when_the_cloud_is_asked_for() -> None:
    openai = FakeProvider("openai")
    answer = run(dispatcher(FakeLocal(), openai).start(PRIVATE, model="cloud"))
    assert (answer.route, answer.reason) == ("local", "privacy:email")
    assert openai.models_asked == []


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


def test_private_data_the_local_model_cannot_take_is_refused_not_leaked() -> None:
    local = FakeLocal(
        ContextLengthExceededError(prompt_tokens=9000, max_tokens=0, context_length=8192)
    )
    openai = FakeProvider("openai")
    with pytest.raises(PrivateDataError) as caught:
        run(dispatcher(local, openai).start(PRIVATE, model="hybrid"))
    message = str(caught.value)
    assert "privacy:email" in message and "jane.doe" not in message
    assert "routing.privacy.allow_cloud" in message and not caught.value.should_retry
    assert openai.models_asked == []


def test_allow_cloud_lets_private_data_out_when_local_cannot_serve() -> None:
    local = FakeLocal(QueueFullError(depth=9, retry_after=3))
    names = ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=True)], None)
    d = Dispatcher(
        local,
        {"openai": FakeProvider("openai")},  # type: ignore[dict-item]
        names,
        router=build_router(RoutingSettings()),
        private_to_cloud=True,
    )
    answer = run(d.start(PRIVATE, model="hybrid"))
    assert (answer.route, answer.reason) == ("cloud", "privacy:email;local_unavailable")
