"""The one way hybrid's answering parts are built from the settings.

:func:`build_service` assembles the whole :class:`~hybrid.service.service.Service` that
``hybrid serve`` runs; :func:`build_dispatcher` is the part of it that decides and starts
answers, which ``hybrid route`` builds on its own (no ledger, no providers, nothing started).
Both read the same settings the same way, so that what ``hybrid route`` shows is what the
server decides.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from random import Random
from typing import TYPE_CHECKING, Any

from hybrid.errors import ModelNotReadyError
from hybrid.hardware.snapshot import LiveSample
from hybrid.ledger.budget import Budget, SpendSeed
from hybrid.ledger.costing import Costing
from hybrid.ledger.prices import PriceTable
from hybrid.ledger.writer import LedgerWriter
from hybrid.routing.calibration.background import BackgroundCalibration
from hybrid.routing.cascade import Cascade
from hybrid.routing.chain import build_router
from hybrid.routing.difficulty.labelled import LabelledScores
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.names import CloudTarget, ModelNames
from hybrid.routing.policies.difficulty import CalibratedModel
from hybrid.routing.reserving import Reserving
from hybrid.routing.shadow import Shadowing
from hybrid.service.accounting import Accountant
from hybrid.service.events import EventBus
from hybrid.service.learning import Learner, scoring_model
from hybrid.service.metrics import Metrics
from hybrid.service.providers import build_lan, build_providers
from hybrid.service.refitting import TrafficRefitter
from hybrid.service.service import Service

if TYPE_CHECKING:
    from hybrid.cloud.provider import CloudProvider
    from hybrid.hardware.probe import HardwareProbe
    from hybrid.local.runtime import LocalRuntime
    from hybrid.routing.difficulty.model import DifficultyModel
    from hybrid.routing.lan import LanTier
    from hybrid.routing.local_model import LocalAnswerer, LocalCapacity
    from hybrid.settings import Settings
    from hybrid.settings.routing import LearnSettings


def _no_sample() -> LiveSample | None:
    return None


def build_dispatcher(
    settings: Settings,
    runtime: LocalCapacity[Any],
    difficulty: Callable[[], DifficultyModel | None],
    *,
    providers: Mapping[str, CloudProvider] | None = None,
    load: Callable[[], LiveSample | None] = _no_sample,
    budget: Reserving | None = None,
    lan: LanTier | None = None,
    labelled: LabelledScores | None = None,
) -> Dispatcher:
    """The dispatcher the settings describe: the policy chain, failover, fallback, cascade.

    Args:
        settings: The effective settings.
        runtime: The local model's runtime (:class:`~hybrid.local.runtime.LocalRuntime`).
        difficulty: The difficulty model in use for the served file, or None while it is
            looked up (the service's :class:`CalibratedModel`).
        providers: The cloud providers by name; none when only deciding (``hybrid route``).
        load: The latest live hardware sample, for the capacity policy.
        budget: Reserves each cloud call's estimated cost before it is sent (none when only
            deciding).
        lan: The team's LAN servers (none when only deciding).
        labelled: The served model's labelled requests, which scores are read beside (none
            when only deciding).

    Returns:
        The dispatcher.

    Raises:
        ConfigError: ``cloud.failover`` names a model no provider serves.
    """
    names = ModelNames.from_settings(settings.cloud)
    routing = settings.routing
    return Dispatcher(
        runtime,
        providers if providers is not None else {},
        names,
        router=build_router(routing, difficulty=difficulty, labelled=labelled),
        failover=names.targets(settings.cloud.failover, setting="cloud.failover"),
        local_fallback=settings.cloud.local_fallback,
        private_to_cloud=routing.privacy.allow_cloud,
        load=load,
        cascade=(
            Cascade(
                routing.cascade.min_confidence,
                routing.cascade.escalate_declined,
                routing.cascade.escalate_outside_options,
            )
            if routing.cascade.enabled
            else None
        ),
        budget=budget,
        lan=lan,
        private_to_lan=routing.privacy.allow_lan,
        # Only deciding (``hybrid route``) answers nothing, so it keeps no signal.
        prompt_vectors=(
            providers is not None
            and routing.learn.prompt_vectors
            and routing.learn.keep_signals > 0
        ),
    )


def labelled_memory(settings: Settings) -> LabelledScores | None:
    """The router's memory of labelled requests (``routing.difficulty.labelled_neighbours``),
    or None when scores are not read beside them (that setting at 0, or no difficulty policy)."""
    difficulty = settings.routing.difficulty
    if not difficulty.enabled or difficulty.labelled_neighbours == 0:
        return None
    return LabelledScores(neighbours=difficulty.labelled_neighbours)


def build_learner(
    settings: LearnSettings,
    *,
    ledger: LedgerWriter,
    accountant: Accountant,
    calibrated: CalibratedModel,
    providers: Mapping[str, CloudProvider],
    names: ModelNames,
    budget: Reserving | None = None,
    rng: Random | None = None,
    local: Callable[[], LocalAnswerer[Any]] | None = None,
    held: Callable[[], str | None] = lambda: None,
    lan: LanTier | None = None,
) -> Learner:
    """The server's learner, from ``routing.learn``.

    Args:
        settings: ``routing.learn``.
        ledger: The ledger's writer.
        accountant: Records shadow calls and knows the prices.
        calibrated: The difficulty model in use.
        providers: The cloud providers by name.
        names: Which providers have their key.
        budget: Reserves each shadow and judge call's estimated cost before it is sent.
        rng: Draws the shadow sample.
        local: The local model on its low-priority lane, for local shadow answers.
        held: Why the local model's background work waits now (on battery power), or None;
            no local shadow answer is started meanwhile.
        lan: The team's LAN servers, which shadow calls go to when no cloud is configured.
    """
    shadowing: Shadowing | None = None
    if settings.shadow_rate > 0 or (settings.local_shadow_rate > 0 and local is not None):
        judge = None
        if settings.judge_model is not None:
            provider, _, model = settings.judge_model.partition("/")
            judge = CloudTarget(provider, model)
        shadowing = Shadowing(
            rate=settings.shadow_rate,
            providers=providers,
            usable=names.usable,
            budget=budget,
            agreement=settings.shadow_agreement,
            judge=judge,
            rng=rng,
            local_rate=settings.local_shadow_rate,
            local=local,
            vectors=settings.prompt_vectors,
            held=held,
            # A local shadow answer's energy is metered as a local answer's is.
            cpu=accountant.records.cpu_seconds,
            gpu_energy=accountant.records.gpu_joules,
            lan=lan,
        )
    return Learner(
        ledger,
        accountant,
        lambda: scoring_model(calibrated),
        shadowing=shadowing,
        keep_signals=settings.keep_signals,
        # The model stage's prompt vector, when it read one for the answer.
        prompt_vector=lambda answer: answer.prompt_vector,
    )


def build_service(
    settings: Settings,
    *,
    runtime: LocalRuntime | None = None,
    probe: HardwareProbe | None = None,
    gpu_energy: Callable[[], float | None] | None = None,
) -> Service:
    """Build everything that answers requests; nothing is opened, loaded or started yet.

    Args:
        settings: The effective settings.
        runtime: The local model's runtime; built from the settings when omitted.
        probe: The hardware probe; the real one when omitted.
        gpu_energy: Reads the GPUs' energy counter in joules (NVML's when omitted).

    Returns:
        The service; :meth:`~hybrid.service.service.Service.start` opens the ledger and
        starts the model's load, :meth:`~hybrid.service.service.Service.close` frees it all.

    Raises:
        ConfigError: A setting cannot be used (a provider's base URL or key, the CA bundle,
            ``cloud.failover``, a price override).
    """
    from hybrid.hardware.gpu import PynvmlSource
    from hybrid.hardware.probe import probe_for
    from hybrid.hardware.sampler import LiveSampler
    from hybrid.local.runtime import LocalRuntime

    hardware = probe if probe is not None else probe_for(settings.home)
    local = runtime if runtime is not None else LocalRuntime.for_settings(settings, hardware)
    sampler = LiveSampler(hardware.sample, interval_s=settings.probe.sample_interval_s)
    names = ModelNames.from_settings(settings.cloud)
    calibration = CalibratedModel(settings.home, lambda: local.loaded_path)
    difficulty = settings.routing.difficulty
    labelled = labelled_memory(settings)
    pool = build_providers(settings.cloud)
    lan = build_lan(settings.lan, settings.cloud, settings.home)
    bus = EventBus()
    metrics = Metrics()
    ledger = LedgerWriter(
        settings.ledger.resolved_path(settings.home),
        settings.ledger.retention_days,
        keep_signals=settings.routing.learn.keep_signals,
        url=settings.ledger.url.get_secret_value() if settings.ledger.url else None,
        instance=settings.ledger.instance,
    )
    accountant = Accountant(
        ledger,
        Costing(
            PriceTable.shipped(settings.pricing.overrides),
            settings.energy,
            reference_model=settings.pricing.reference_model,
            default_model=names.default_target.qualified if names.default_target else None,
            lan_usd_per_1m_tokens=settings.lan.usd_per_1m_tokens,
        ),
        # Replaced by Service.start: the fleet's budget on a shared ledger, else one seeded
        # with the spend the ledger holds.
        Budget(settings.budget, SpendSeed(at=time.time())),
        bus,
        metrics,
        count_tokens=local.count_tokens,
        gpu_energy=gpu_energy or PynvmlSource().energy_joules,
        gpu_offloaded=lambda: local.loaded is not None and local.loaded.plan.n_gpu_layers > 0,
    )
    # Every cloud call reserves its estimated cost with the budget in use before it is sent.
    reserving = Reserving(
        lambda: accountant.budget,
        accountant.costing.estimate,
        accountant.count_tokens,
        max_output_tokens={"anthropic": settings.cloud.anthropic.max_tokens},
    )
    dispatcher = build_dispatcher(
        settings,
        local,
        calibration,
        providers=pool.providers,
        load=sampler.latest_or_none,
        budget=reserving,
        lan=lan,
        labelled=labelled,
    )
    # The local model's background work waits for AC power unless it may run on battery.
    held: Callable[[], str | None] = (
        _never_held
        if settings.local.background_on_battery
        else functools.partial(held_by_battery, sampler.latest_or_none)
    )
    calibrating = settings.routing.calibration
    background = (
        BackgroundCalibration(
            home=settings.home,
            calibration=calibration,
            backend=local.background_backend,
            model_name=lambda: local.model_id,
            per_category=calibrating.per_category,
            held=held,
        )
        if calibrating.background and settings.routing.difficulty.enabled
        else None
    )
    learn = settings.routing.learn
    refitter = (
        TrafficRefitter(
            home=settings.home,
            ledger=ledger,
            calibration=calibration,
            model_name=lambda: local.model_id,
            refit_after=learn.refit_after,
            idle=functools.partial(_idle, local, held),
            labelled=labelled,
        )
        if (learn.refit_after > 0 or labelled is not None) and difficulty.enabled
        else None
    )
    learner = build_learner(
        settings.routing.learn,
        ledger=ledger,
        accountant=accountant,
        calibrated=calibration,
        providers=pool.providers,
        names=names,
        budget=reserving,
        local=local.background_backend,
        held=held,
        lan=lan,
    )
    fleet_budget = None
    if settings.ledger.url is not None:
        # A shared ledger shares the budget too: every daemon reserves against the same lines.
        from hybrid.ledger.fleet_budget import FleetBudget
        from hybrid.ledger.pg_budget import SharedBudget

        url = settings.ledger.url.get_secret_value()
        shared = SharedBudget(url, instance=settings.ledger.instance)
        # The SQLite ledger kept before ledger.url was set: its spend today counts once.
        fleet_budget = FleetBudget(
            shared, settings.budget, sqlite_ledger=settings.ledger.resolved_path(settings.home)
        )
    return Service(
        settings=settings,
        runtime=local,
        dispatcher=dispatcher,
        pool=pool,
        sampler=sampler,
        accountant=accountant,
        ledger=ledger,
        bus=bus,
        metrics=metrics,
        calibration=calibration,
        learner=learner,
        background=background,
        refitter=refitter,
        lan=lan,
        fleet_budget=fleet_budget,
    )


ON_BATTERY = "on battery power"
"""Why background work waits, while the machine runs on its battery."""


def held_by_battery(latest: Callable[[], LiveSample | None]) -> str | None:
    """Why the local model's background work waits now: :data:`ON_BATTERY` while the latest
    hardware sample says the machine runs on its battery; None on AC power, without a battery,
    when the power source is unknown, and before the first sample."""
    sample = latest()
    if sample is not None and sample.on_battery is True:
        return ON_BATTERY
    return None


def _never_held() -> None:
    return None


def _idle(local: LocalRuntime, held: Callable[[], str | None]) -> bool:
    """No request waits for or runs on the local model (or it is not ready to take any), and
    its background work is not held (on battery power)."""
    if held() is not None:
        return False
    try:
        queue = local.backend().queue
    except ModelNotReadyError:
        return True
    return queue.depth == 0 and queue.running == 0
