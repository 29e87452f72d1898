"""The LAN tier: a request this machine should not serve goes to a team's server before the cloud.

:meth:`LanTier.start` is asked by the dispatcher before it escalates an ``auto`` request to the
cloud.  It takes the servers :meth:`~hybrid.lan.pool.LanPool.ranked` puts first (least loaded,
or in turn), and on each the first of its models *able* to serve the request: the model's own
difficulty estimate, from its name (:func:`~hybrid.routing.difficulty.prior.prior_for_name`:
the shipped feature weights moved to what a model of that size and family is expected to
get right), is at or below that model's threshold.  The first server that starts an answer
gives it (``lan:gpu-box/qwen2.5-32b;capacity:eta_14s>8s``); a server that fails (down, a
timeout, a 5xx, the wrong model, a malformed or cut answer before its first byte) is left for
the next, as cloud providers are (their retries, breaker and pause are the same code).

A LAN model calibrated like a local one (``hybrid calibrate --lan gpu-box/qwen2.5-32b``, which
asks the server the calibration set and stores the fit under the model's name,
:func:`~hybrid.routing.difficulty.store.name_key`) is judged by that calibration instead of
its prior.

When no server takes it, :class:`LanMiss` says why in one code for the cloud answer's reason:
``lan:failed:gpu-box:timeout``, ``lan:busy`` (every server full, saturated, down or its circuit
open), ``lan:down`` (every server down: none answers a connection),
``lan:no_model`` (no model held able to answer it), ``lan:no_trusted_server`` (private data,
and no server is marked trusted).  It keeps the waits the servers asked for (a ``Retry-After``)
and, for each server it passed over while hybrid leaves it alone, the time until hybrid tries it
again (its open circuit's next probe, or the next check of a server that is down), as the
cloud's failures do (:func:`~hybrid.routing.failover.soonest_wait`), for the ``Retry-After`` of a
request that only LAN servers may answer (``X-Hybrid-Route: lan``); and, as for the cloud
(:func:`~hybrid.routing.failover.all_rate_limited`), whether every server was rate limiting it,
which that request's client is told as a rate limit (429) rather than as no route (503).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hybrid.errors import (
    ConfigError,
    InvalidRequestError,
    ProviderConnectTimeoutError,
    ProviderError,
    ProviderUnreachableError,
    WrongModelError,
)
from hybrid.generation import GenerationRequest, Message
from hybrid.lan.pool import LanPool, LanServer
from hybrid.routing.answer import Answer
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.prior import is_prior, prior_for_name
from hybrid.routing.difficulty.store import find, model_path, name_key
from hybrid.routing.failover import Failure, all_rate_limited, soonest_wait
from hybrid.routing.names import CloudTarget

log = logging.getLogger("hybrid.routing")


@dataclass(frozen=True)
class LanMiss:
    """Why no LAN server answered.

    Attributes:
        code: One code for the reason of the answer given instead (``lan:busy``).
        failures: The servers that were tried and failed, in order.
        paused: The servers passed over while hybrid leaves them alone: their circuit is
            open (with the time to its next probe as their wait) or they are down (with the
            time to their next check).
        clock: Monotonic seconds, the clock the failures' ``said_at`` was read from.
        passed_over: The servers not asked for another reason than an open circuit (down,
            full, saturated, or holding no model able to answer), as ``name:why``; a server
            down is in :attr:`paused` too, for its wait.
        asked: What each of :attr:`failures` asked for, in the same order, as
            ``server/model``.
    """

    code: str
    failures: tuple[Failure, ...] = ()
    paused: tuple[Failure, ...] = ()
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    passed_over: tuple[str, ...] = ()
    asked: tuple[str, ...] = ()

    @property
    def rate_limited(self) -> bool:
        """Whether every server was rate limiting: each rate-limited the request (HTTP 429)
        or was passed over for a circuit that rate limits opened, as
        :func:`~hybrid.routing.failover.all_rate_limited` decides for the cloud's targets."""
        return not self.passed_over and all_rate_limited((*self.failures, *self.paused))

    def retry_after(self) -> float | None:
        """What is left now of the soonest wait a server asked for, an open circuit set or a
        server down has until its next check (of those a retry may end), or None when there is
        none."""
        return soonest_wait((*self.failures, *self.paused), self.clock())


class LanTier:
    """Starts requests on the team's LAN servers.

    Args:
        pool: The servers.
        home: The data dir, where calibrations of LAN models are stored by name.
        difficulty: The difficulty model of a LAN model, by name (default: its calibration in
            ``home``, else its prior, :func:`prior_for_name`); None when it has none, and then
            it is not asked.
    """

    def __init__(
        self,
        pool: LanPool,
        *,
        home: Path | None = None,
        difficulty: Callable[[str], DifficultyModel | None] | None = None,
    ) -> None:
        self._pool = pool
        self._difficulty = difficulty if difficulty is not None else _ByName(home)

    @property
    def pool(self) -> LanPool:
        return self._pool

    def able(self, model: str, messages: Sequence[Message]) -> tuple[bool, float | None]:
        """Whether a LAN model is expected to answer a request well, and its score."""
        judged = self._difficulty(model)
        if judged is None:
            return True, None
        score = judged.score(messages)
        return not judged.escalates(score), score

    async def start(
        self,
        request: GenerationRequest,
        reason: str,
        *,
        messages: Sequence[Message],
        trusted_only: bool = False,
        score: float | None = None,
        on: CloudTarget | None = None,
    ) -> Answer | LanMiss:
        """Start a request on the first LAN server that takes it.

        Args:
            request: The request (its ``model`` is set to the LAN model's).
            reason: Why it is not answered on this machine (``capacity:eta_14s>8s``).
            messages: What the difficulty estimates read (the conversation, or the prompt).
            trusted_only: Only servers marked trusted (the request holds private data).
            score: The local difficulty score, for the answer.
            on: Only this server (``provider``), asked for this model whatever its difficulty
                estimate says (a shadow answer's judge); None: every server, each asked for
                its first model expected to answer well.

        Returns:
            The started answer (route ``lan``), or why none started.
        """
        servers, skipped = self._pool.ranked(trusted_only=trusted_only)
        if on is not None:
            servers = [server for server in servers if server.name == on.provider]
            skipped = [why for why in skipped if why.partition(":")[0] == on.provider]
        judged: dict[str, bool] = {}
        failures: list[Failure] = []
        asked: list[str] = []
        passed_over = [why for why in skipped if not why.endswith(":circuit_open")]
        tried_any = False
        for server in servers:
            model = on.model if on is not None else self._model_for(server, messages, judged)
            if model is None:
                passed_over.append(f"{server.name}:no_model")
                continue
            tried_any = True
            self._pool.acquire(server)
            try:
                generation = await server.provider.start(dataclasses.replace(request, model=model))
            except ProviderError as exc:
                self._pool.release(server)
                log.warning("LAN server %s failed: %s", server.name, exc)
                now = self._pool.clock()
                failure = Failure.of(exc, at=now)
                # No connection at all (refused, or dropped until the connect timeout, as by
                # a host powered off): the server is down, not slow.
                if isinstance(exc, ProviderUnreachableError | ProviderConnectTimeoutError):
                    self._pool.went_down(server, str(exc))
                    if failure.retry_after is None:
                        # Told as the requests that find it down are: the wait to its check.
                        wait = server.next_check_in_s(now)
                        failure = dataclasses.replace(failure, retry_after=wait)
                elif isinstance(exc, WrongModelError):
                    # Restarted with another model: later requests ask for the one it lists
                    # now (this one goes on to the next server, not back here).
                    await self._pool.relist(server)
                failures.append(failure)
                asked.append(f"{server.name}/{model}")
                continue
            except InvalidRequestError as exc:
                # Its API cannot carry something the request asks for: the cloud may.
                self._pool.release(server)
                failures.append(Failure(server.name, "unsupported", str(exc), False))
                asked.append(f"{server.name}/{model}")
                continue
            except BaseException:
                self._pool.release(server)
                raise
            where = f"{server.name}/{model}"
            full = f"lan:{where};{reason}"
            if failures:
                full += f";failover:lan:{failures[0].code}"
            return Answer(self._pool.track(server, generation), "lan", where, full, score)
        if failures:
            code = f"lan:failed:{failures[0].code}"
        elif not servers and not skipped:
            code = "lan:no_trusted_server"  # the pool has servers: none is trusted
        elif not tried_any and servers:
            code = "lan:no_model"
        elif all(why.endswith(":down") for why in skipped):
            code = "lan:down"  # none answers a connection: each is checked again later
        else:
            code = "lan:busy"
        return LanMiss(
            code,
            tuple(failures),
            self._paused(skipped),
            self._pool.clock,
            tuple(passed_over),
            tuple(asked),
        )

    def _paused(self, skipped: Sequence[str]) -> tuple[Failure, ...]:
        """The servers :meth:`~hybrid.lan.pool.LanPool.ranked` passed over while hybrid leaves
        them alone: for their open circuit (``gpu-box:circuit_open``), each as the failure it
        would have raised, with the time to its next probe; or for being down
        (``gpu-box:down``), with the time to its next check.  Full, saturated servers are not
        among them: they may take a request again any moment."""
        passed = set(skipped)
        now = self._pool.clock()
        paused: list[Failure] = []
        for server in self._pool.servers:
            if f"{server.name}:circuit_open" in passed:
                paused.append(Failure.of(server.provider.circuit_open_error(), at=now))
            elif f"{server.name}:down" in passed:
                wait = server.next_check_in_s(now) or 0.0
                detail = f"{server.name}: skipped: it is down; hybrid checks it in {wait:.0f} s"
                paused.append(Failure(server.name, "down", detail, True, wait, said_at=now))
        return tuple(paused)

    def _model_for(
        self, server: LanServer, messages: Sequence[Message], judged: dict[str, bool]
    ) -> str | None:
        for model in server.models:
            if model not in judged:
                judged[model] = self.able(model, messages)[0]
            if judged[model]:
                return model
        return None


def difficulty_messages(request: GenerationRequest) -> tuple[Message, ...]:
    """What a LAN model's difficulty estimate reads: the conversation, or the raw prompt (the
    ``messages`` :meth:`LanTier.start` is given)."""
    return request.messages or (Message("user", request.prompt or ""),)


class _ByName:
    """Each LAN model's calibration (stored under its name in ``home``), else its prior; looked
    up once per name, and again when a calibration appears for a model on its prior."""

    def __init__(self, home: Path | None) -> None:
        self._home = home
        self._models: dict[str, DifficultyModel | None] = {}

    def __call__(self, name: str) -> DifficultyModel | None:
        known = self._models.get(name)
        if name in self._models and not (known is not None and self._calibrated_since(known, name)):
            return known
        model: DifficultyModel | None = None
        try:
            stored = find(self._home, name_key(name)) if self._home is not None else None
            model = stored.model if stored is not None else prior_for_name(name)
        except ConfigError as exc:
            log.warning("no difficulty estimate for LAN model %s: %s", name, exc)
        self._models[name] = model
        return model

    def _calibrated_since(self, model: DifficultyModel, name: str) -> bool:
        return (
            self._home is not None
            and is_prior(model)
            and model_path(self._home, name_key(name)).is_file()
        )
