"""The dispatcher the dispatcher tests ask, and the requests they ask it.

:func:`dispatcher` builds a :class:`~hybrid.routing.dispatcher.Dispatcher` on scripted local and
cloud backends (:mod:`routing_fakes`), with the default routing policies.
"""

from __future__ import annotations

import asyncio
from typing import Any

from routing_fakes import FakeLocal, FakeProvider

from hybrid.backend import collect
from hybrid.generation import GenerationRequest, Message
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.names import ModelNames, ProviderModels
from hybrid.settings.routing import RoutingSettings

REQUEST = GenerationRequest("r1", messages=(Message("user", "hi"),))
"""A short request with nothing private in it: ``auto`` keeps it local."""

PRIVATE = GenerationRequest("r2", messages=(Message("user", "mail jane.doe@example.com the file"),))
"""A request holding an email address: the privacy policy pins it to this machine."""


def dispatcher(
    local: FakeLocal,
    *providers: FakeProvider,
    failover: tuple[str, ...] = (),
    keys: tuple[str, ...] = ("openai", "anthropic"),
    local_fallback: bool = True,
) -> Dispatcher:
    """A dispatcher on ``local`` and ``providers``, with cloud keys for the ``keys`` only."""
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
