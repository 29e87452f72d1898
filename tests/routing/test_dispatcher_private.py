"""Private data: kept on this machine, refused rather than leaked, or let out when allowed."""

from __future__ import annotations

import pytest
from dispatching import PRIVATE, dispatcher, run
from routing_fakes import FakeLocal, FakeProvider

from hybrid.errors import ContextLengthExceededError, PrivateDataError, QueueFullError
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.names import ModelNames, ProviderModels
from hybrid.settings.routing import RoutingSettings


def test_private_data_stays_local_even_when_the_cloud_is_asked_for() -> None:
    openai = FakeProvider("openai")
    answer = run(dispatcher(FakeLocal(), openai).start(PRIVATE, model="cloud"))
    assert (answer.route, answer.reason) == ("local", "privacy:email")
    assert openai.models_asked == []


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
