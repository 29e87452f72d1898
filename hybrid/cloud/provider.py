"""CloudProvider: a cloud API over HTTP, with timeouts, retries and a circuit breaker.

A request goes through three stages, and the line that matters is the first byte the client
sees:

1. **Before the first byte** (inside :meth:`CloudProvider.start`): connect, send, wait for the
   headers, and read either the whole body (not streamed) or the stream up to its first event
   that carries output.  Every failure here is translated into a ProviderError and, when it is
   retryable, retried with backoff; nothing has reached the client yet.  A stream's first
   output must come within ``first_byte_timeout_s``, and all of it, attempts and waits
   together, ends by ``max_total_s``.  An answer that is not streamed has its headers only
   once it is generated, so each attempt waits up to ``whole_answer_timeout_s`` for them
   instead; ``max_total_s`` only stops further retries.  A request whose pooled connection
   was closed by the server before the request was written whole is sent again at once on
   another, outside the count of attempts; one the server may have received is not.
2. **Streaming**: events flow to the client.  A failure now (a stall, a reset, a malformed or
   an ``error`` event, a stream that ends without its terminal event) raises from the iterator.
   It is never retried and never swallowed: a cut answer must not look complete.
3. **The end**: the terminal event closes the generation and counts as a success for the
   circuit breaker.

Subclasses supply the wire format: the request body, the auth headers, and how to read the
answer and the stream.  The stream after its first output event is :mod:`hybrid.cloud.stream`;
what one attempt does on the wire (the request, the send, the body) is
:mod:`hybrid.cloud.upstream`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx2
from pydantic import SecretStr

from hybrid.backend import Backend, Generation, ReplayGeneration
from hybrid.cloud.breaker import CircuitBreaker
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.cloud.retry import retry_delay, status_error, transport_error
from hybrid.cloud.stream import Outcome, StreamGeneration, counts_against_provider, open_stream
from hybrid.cloud.upstream import (
    MAX_BODY_BYTES,
    MAX_ERROR_BODY_BYTES,
    Upstream,
    UpstreamCall,
    checked_key,
)
from hybrid.errors import (
    CircuitOpenError,
    InvalidRequestError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
)
from hybrid.generation import GenerationEvent, GenerationRequest
from hybrid.wire.sse import StreamDecoder

log = logging.getLogger("hybrid.cloud")


class CloudProvider(Backend):
    """A cloud API over HTTP. :meth:`start` retries before the first byte, then streams events.

    Args:
        name: The provider's name in configuration, logs, errors and ``/health``.
        base_url: The API's base URL (``https://api.openai.com/v1``); paths are appended.
        api_key: The key, or None for a server that needs none.  Revealed only to build the
            auth header of requests to ``base_url``; redirects are never followed.
        models: The model ids this provider serves.
        client: The HTTP client (shared, owned by the caller).
        policy: Timeouts, retries and breaker thresholds.
        sleep: Waits between retries; injectable for tests.
        rng: Randomness for backoff jitter; injectable for tests.
        clock: Monotonic seconds for the circuit breaker; injectable for tests.
        redact: Removes secrets from the provider's error messages before they are raised, and
            so before they reach the client, the log, the ledger or the event stream (an
            upstream may echo a key it was sent, or one from the prompt).  The provider's own
            key is always removed, with or without it.

    Raises:
        ConfigError: The base URL is not http(s), or the key holds whitespace, control or
            non-ASCII characters (it could not travel in a header).
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
    ) -> None:
        self._name = name
        self._upstream = Upstream(
            name=name,
            base_url=base_url,
            client=client,
            policy=policy,
            auth_headers=self._auth_headers,
        )
        self._api_key = checked_key(name, api_key)
        self._models = tuple(models)
        self._policy = policy
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._redact = redact
        self._breaker = CircuitBreaker(
            failures=policy.breaker_failures, reset_s=policy.breaker_reset_s, clock=clock
        )

    @property
    def name(self) -> str:
        """The provider's configured name."""
        return self._name

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._upstream.base_url

    @property
    def models(self) -> tuple[str, ...]:
        """The model ids this provider serves."""
        return self._models

    @property
    def breaker(self) -> CircuitBreaker:
        """This provider's circuit breaker."""
        return self._breaker

    @property
    def has_key(self) -> bool:
        """Whether an API key is configured."""
        return self._api_key is not None

    def health(self) -> dict[str, Any]:
        """What ``/health`` shows about this provider (never the key)."""
        return {
            "name": self._name,
            "base_url": str(httpx2.URL(self.base_url).copy_with(userinfo=b"")),
            "models": list(self._models),
            "has_key": self.has_key,
            "circuit": self._breaker.snapshot(),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._name!r}, host={self._upstream.host!r}, "
            f"models={self._models!r}, has_key={self.has_key})"
        )

    async def start(self, request: GenerationRequest) -> Generation:
        """Send a request, retrying until its first byte, and return the running answer.

        Args:
            request: What to generate; ``request.model`` is this provider's model id (the
                first of :attr:`models` when None).

        Returns:
            For a non-streamed request, the whole answer, already read; for a streamed one,
            the stream, whose first output event has arrived.

        Raises:
            InvalidRequestError: The request asks for something this API cannot do.
            CircuitOpenError: The provider failed repeatedly and is skipped for now.
            ProviderError: Every attempt failed before the first byte (the last failure), or
                a failure that no retry can fix (auth, a rejected request, a Retry-After
                longer than ``max_retry_after_s``).
        """
        call = self._call(request, self._model_for(request))
        if not self._breaker.allow():
            raise self.circuit_open_error()
        try:
            opened = await self._attempts(request, call)
        except ProviderError as exc:
            if counts_against_provider(exc):
                self._settle(
                    "failure",
                    wait_s=exc.retry_after,
                    rate_limited=isinstance(exc, ProviderRateLimitedError),
                )
            else:
                self._settle("release")
            raise
        except BaseException:
            self._settle("release")  # the client went away mid-retry: no verdict
            raise
        if isinstance(opened, StreamGeneration):
            return opened
        self._settle("success")
        return ReplayGeneration(opened)

    def _settle(
        self, outcome: Outcome, *, wait_s: float | None = None, rate_limited: bool = False
    ) -> None:
        """Report how an allowed request ended to the circuit breaker.

        Args:
            outcome: ``success`` (a complete answer), ``failure`` (the provider is unwell) or
                ``release`` (no verdict: the client left, or the request itself was at fault).
            wait_s: For a failure, the wait the provider asked for with it (its
                ``Retry-After``), when it said: an open circuit lets no probe through before it
                has passed.
            rate_limited: For a failure, whether it was a rate limit (HTTP 429): a circuit
                opened by rate limits only is skipped as rate limiting, not as down.
        """
        if outcome == "success":
            self._breaker.record_success()
        elif outcome == "release":
            self._breaker.release()
        else:
            was_open = self._breaker.state == "open"
            self._breaker.record_failure(wait_s, rate_limited=rate_limited)
            if not was_open and self._breaker.state == "open":
                log.warning(
                    "%s: circuit opened after %d failures in a row; next probe in %.0f s",
                    self._name,
                    self._breaker.consecutive_failures,
                    self._breaker.retry_in_s() or 0.0,
                )

    # -- what a subclass defines ------------------------------------------------------------

    @abstractmethod
    def _call(self, request: GenerationRequest, model: str) -> UpstreamCall:
        """The path and JSON body for a request.

        Raises:
            InvalidRequestError: The API cannot honour the request.
        """

    @abstractmethod
    def _auth_headers(self) -> dict[str, str]:
        """Headers carrying the key (reveal it here only) and the API version, if any."""

    @abstractmethod
    def _answer(self, request: GenerationRequest, data: Any) -> list[GenerationEvent]:
        """A whole, non-streamed answer's events: its text, then its GenerationDone.

        Raises:
            ProviderProtocolError: ``data`` is not an answer in this API's format.
        """

    @abstractmethod
    def _stream_decoder(self, request: GenerationRequest) -> StreamDecoder:
        """A fresh decoder for one streamed response."""

    # -- helpers for subclasses -------------------------------------------------------------

    def _reveal_key(self) -> str | None:
        """The key in clear text, for the auth header only."""
        return None if self._api_key is None else self._api_key.get_secret_value()

    def _scrub(self, error: ProviderError) -> ProviderError:
        """Remove the key, and any secret ``redact`` finds, from an error's message, in place.

        Every upstream error passes here before anything reads its message: a provider may
        quote the key it was sent (``Incorrect API key provided: sk-...``), in a JSON body or
        in an SSE ``error`` event, or echo part of the prompt.
        """
        message = original = str(error)
        key = self._reveal_key()
        if key:
            message = message.replace(key, "[key]")
        if self._redact is not None:
            message = self._redact(message)
        if message != original:
            error.args = (message,)
        return error

    def _protocol_error(self, message: str) -> ProviderProtocolError:
        return ProviderProtocolError(self._name, message)

    # -- attempts before the first byte -----------------------------------------------------

    def _model_for(self, request: GenerationRequest) -> str:
        if request.model:
            return request.model
        if self._models:
            return self._models[0]
        raise InvalidRequestError(
            f"no model given for provider {self._name!r}, and it declares none; "
            f"name a model in the request or list the provider's models in the config file",
            param="model",
        )

    def circuit_open_error(self) -> CircuitOpenError:
        """The error of a request the open circuit keeps from the provider; its
        ``retry_after`` is the time to the next probe (None while a probe is in flight), and it
        is ``rate_limited`` when rate limits opened the circuit (a client is then told it is
        rate limited, as it was by the requests that opened it)."""
        retry_in = self._breaker.retry_in_s()
        failures = self._breaker.consecutive_failures
        rate_limited = self._breaker.opened_by_rate_limits
        why = (
            "it is rate limiting requests (HTTP 429)"
            if rate_limited
            else f"it failed {failures} times in a row"
        )
        if retry_in is None:
            message = (
                f"skipped: {why}, and a trial request is in flight; retry in a few seconds or "
                f"use another model"
            )
        else:
            message = (
                f"skipped: {why}, so hybrid leaves it alone for another {retry_in:.0f} s; "
                f"retry then or use another model"
            )
        return CircuitOpenError(
            self._name, message, retry_after=retry_in, rate_limited=rate_limited
        )

    async def _attempts(
        self, request: GenerationRequest, call: UpstreamCall
    ) -> list[GenerationEvent] | StreamGeneration:
        loop = asyncio.get_running_loop()
        total_deadline = loop.time() + self._policy.max_total_s
        attempt = 1
        while True:
            try:
                return await self._attempt(request, call, attempt, total_deadline)
            except ProviderError as exc:
                self._scrub(exc)
                delay = retry_delay(exc, attempt, self._policy, self._rng)
                if delay is None:
                    raise
                left = total_deadline - loop.time()
                if delay >= left:
                    # The next attempt could not start in time: let the next target try now.
                    log.warning(
                        "%s: attempt %d of %d failed (%s); no retry, %.2f s of max_total_s left",
                        self._name,
                        attempt,
                        self._policy.max_attempts,
                        exc,
                        max(left, 0.0),
                    )
                    raise
                log.warning(
                    "%s: attempt %d of %d failed (%s); retrying in %.2f s",
                    self._name,
                    attempt,
                    self._policy.max_attempts,
                    exc,
                    delay,
                )
            await self._sleep(delay)
            attempt += 1

    async def _attempt(
        self, request: GenerationRequest, call: UpstreamCall, attempt: int, total_deadline: float
    ) -> list[GenerationEvent] | StreamGeneration:
        http_request = self._upstream.request(call)
        now = asyncio.get_running_loop().time()
        if request.stream:
            limit = now + self._policy.first_byte_timeout_s
            deadline = min(limit, total_deadline)
        else:
            # A whole answer's headers come only once all of it is generated: this waits for
            # the generation, which max_total_s (meant for a first token) must not cut short.
            limit = deadline = now + self._policy.whole_answer_timeout_s
        response: httpx2.Response | None = None
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._upstream.send(http_request)
            if not response.is_success:
                body = await self._upstream.read(response, limit=MAX_ERROR_BODY_BYTES)
                raise status_error(
                    self._name,
                    response,
                    body,
                    has_key=self.has_key,
                    secret=self._api_key,
                    now=time.time(),
                )
            content_type = response.headers.get("content-type", "")
            # A compatible server that ignores "stream" sends the whole answer as JSON.
            if not request.stream or content_type.startswith("application/json"):
                body = await self._upstream.read(response, limit=MAX_BODY_BYTES)
                return self._answer(request, self._upstream.json(body))
            generation = await open_stream(
                self,
                response,
                self._stream_decoder(request),
                deadline=deadline,
                idle_timeout_s=self._policy.idle_timeout_s,
            )
            response = None  # the generation owns it now
            return generation
        except TimeoutError as exc:
            if not request.stream:
                raise ProviderTimeoutError(
                    self._name,
                    f"no answer within {self._policy.whole_answer_timeout_s:g} s (the "
                    f"cloud.whole_answer_timeout_s limit of an answer that is not streamed, "
                    f"which the provider sends only once all of it is generated); the provider "
                    f"is slow or unreachable. Retry later, stream the request, or raise "
                    f"cloud.whole_answer_timeout_s",
                ) from exc
            if deadline < limit:
                tries = f"{attempt} attempt" + ("s" if attempt > 1 else "")
                raise ProviderTimeoutError(
                    self._name,
                    f"no answer within {self._policy.max_total_s:g} s ({tries}; the "
                    f"cloud.max_total_s limit); the provider is slow or unreachable. Retry "
                    f"later, or raise cloud.max_total_s",
                ) from exc
            raise ProviderTimeoutError(
                self._name,
                f"no answer within {self._policy.first_byte_timeout_s:g} s (first-byte "
                f"timeout); the provider is slow or overloaded. Retry later, or raise its "
                f"first-byte timeout",
            ) from exc
        except httpx2.HTTPError as exc:
            raise self._transport_error(exc, mid_answer=False) from exc
        except UnicodeDecodeError as exc:
            raise self._protocol_error(f"the response is not UTF-8 ({exc.reason})") from exc
        finally:
            if response is not None:
                await response.aclose()

    def _transport_error(self, exc: httpx2.HTTPError, *, mid_answer: bool) -> ProviderError:
        return transport_error(
            self._name,
            self._upstream.host,
            exc,
            connect_timeout_s=self._policy.connect_timeout_s,
            mid_answer=mid_answer,
        )

    def _stall_error(self) -> ProviderTimeoutError:
        return ProviderTimeoutError(
            self._name,
            f"the stream stalled for {self._policy.idle_timeout_s:g} s mid-answer (idle "
            f"timeout); the answer is incomplete, retry the request",
        )
