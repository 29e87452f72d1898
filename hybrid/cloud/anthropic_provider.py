"""Anthropic's Messages API as a hybrid backend.

The wire translation lives in :mod:`hybrid.wire.anthropic`; this module adds the endpoint and
the headers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx2
from pydantic import SecretStr

from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.cloud.provider import CloudProvider
from hybrid.cloud.upstream import UpstreamCall
from hybrid.errors import ConfigError
from hybrid.generation import GenerationEvent, GenerationRequest
from hybrid.wire.anthropic.encode import messages_body
from hybrid.wire.anthropic.read import AnthropicStreamDecoder, answer_events
from hybrid.wire.sse import StreamDecoder


class AnthropicProvider(CloudProvider):
    """Anthropic: ``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``.

    Takes the arguments of :class:`~hybrid.cloud.provider.CloudProvider` (``base_url`` is the
    API root, ``https://api.anthropic.com``, as in ``ANTHROPIC_BASE_URL``), plus:

    Args:
        version: The ``anthropic-version`` header: the API contract the translation speaks.
        default_max_tokens: ``max_tokens`` for a request that sets none (the API requires
            one).

    Raises:
        ConfigError: ``default_max_tokens`` is below 1, or the base class refuses its
            arguments.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: SecretStr | None,
        models: Sequence[str],
        client: httpx2.AsyncClient,
        policy: ReliabilityPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        redact: Callable[[str], str] | None = None,
        version: str = "2023-06-01",
        default_max_tokens: int = 4096,
    ) -> None:
        super().__init__(
            name=name,
            base_url=base_url,
            api_key=api_key,
            models=models,
            client=client,
            policy=policy,
            sleep=sleep,
            rng=rng,
            clock=clock,
            redact=redact,
        )
        if default_max_tokens < 1:
            raise ConfigError(
                f"the default max_tokens for provider {name!r} must be at least 1 "
                f"(got {default_max_tokens})"
            )
        self._version = version
        self._default_max_tokens = default_max_tokens

    def _call(self, request: GenerationRequest, model: str) -> UpstreamCall:
        body = messages_body(request, model, default_max_tokens=self._default_max_tokens)
        return UpstreamCall("/v1/messages", body)

    def _auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self._version}
        key = self._reveal_key()
        if key is not None:
            headers["x-api-key"] = key
        return headers

    def _answer(self, request: GenerationRequest, data: Any) -> list[GenerationEvent]:
        return answer_events(self.name, data)

    def _stream_decoder(self, request: GenerationRequest) -> StreamDecoder:
        return AnthropicStreamDecoder(self.name)
