"""One loaded model: planned for this machine, loaded, serving, freed.

:func:`plan_load` sizes a GGUF file for the machine as it is now (the hardware plan ``hybrid
serve`` makes at start); :func:`open_slot` loads it into a :class:`ModelSlot`: the engine, its
work queue and the backends on the queue's two lanes.  The runtime
(:class:`~hybrid.local.runtime.LocalRuntime`) holds one slot at a time and swaps it for another
when the model is switched; the old slot is freed only once it is :meth:`ModelSlot.busy` no
longer, so that what it had started finishes on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.local.backend import LocalBackend
from hybrid.local.prompt import DEFAULT_TRANSCRIPT, ChatFormatter, TranscriptFormat
from hybrid.local.speed import SpeedMeter
from hybrid.models.stores import ModelDefaults

if TYPE_CHECKING:
    from hybrid.hardware.plan import RuntimePlan
    from hybrid.hardware.snapshot import HardwareSnapshot
    from hybrid.local.backend import Engine
    from hybrid.local.queue import WorkQueue
    from hybrid.models.gguf import GgufInfo
    from hybrid.settings.local import LocalSettings

log = logging.getLogger("hybrid.local")


@dataclass(frozen=True)
class LoadedModel:
    """What was loaded (or is about to be), and why it was sized the way it was; ``defaults``
    are the generation defaults its store records (Ollama's ``params``), applied to every
    request it answers."""

    model_id: str
    path: Path
    info: GgufInfo
    plan: RuntimePlan
    snapshot: HardwareSnapshot
    defaults: ModelDefaults = field(default_factory=ModelDefaults)


def plan_load(
    local: LocalSettings,
    path: Path,
    snapshot: HardwareSnapshot,
    *,
    model_id: str,
    defaults: ModelDefaults | None = None,
) -> LoadedModel:
    """Read a GGUF file's header and plan it for this machine.

    A context size the model's store asks for (Ollama's ``num_ctx``) is planned as the context
    wanted when ``local.n_ctx`` is not set: it replaces ``local.max_ctx`` as the upper bound,
    and the plan still shrinks it to what fits this machine and the model was trained for.

    Args:
        local: The ``local`` settings (explicit context, threads, GPU layers).
        path: The model file (a split model's first part).
        snapshot: The machine now.
        model_id: The name the model is served under (``hybrid models``' name for the file).
        defaults: The generation defaults the model's store records (none by default).

    Returns:
        The model and its plan (``plan.fits`` says whether it fits the free memory).

    Raises:
        ModelFileError: The file is missing or not a valid GGUF model.
        ConfigError: An explicit ``local.n_ctx`` does not fit this machine.
    """
    from hybrid.hardware.plan import serving_plan
    from hybrid.models.catalog import read_model_info
    from hybrid.settings.local import MAX_CONTEXT_TOKENS

    defaults = defaults if defaults is not None else ModelDefaults()
    info = read_model_info(path)  # every part of a split model
    asked = defaults.n_ctx
    if local.n_ctx is None and asked is not None and asked > 0:
        local = local.model_copy(update={"max_ctx": min(asked, MAX_CONTEXT_TOKENS)})
        log.info("plan: n_ctx %d asked by %s's store (num_ctx)", asked, model_id)
    plan = serving_plan(snapshot, info.footprint(), local)
    for note in plan.notes:
        log.info("plan: %s", note)
    return LoadedModel(model_id, path, info, plan, snapshot, defaults)


class ModelSlot:
    """A loaded model serving requests.

    Args:
        loaded: What was loaded and its plan.
        backend: The backend clients' requests go to.
        background: The same model's low-priority lane (background calibration).
        free: Frees the engine; called once, after the queue is closed.
        load_s: Seconds the load took.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        backend: LocalBackend,
        background: LocalBackend,
        free: Callable[[], None],
        *,
        load_s: float,
    ) -> None:
        self.loaded = loaded
        self.backend = backend
        self.background = background
        self.load_s = load_s
        self._free = free

    def busy(self) -> bool:
        """A client's request is waiting, running, or on its way into the queue (background
        work does not count)."""
        return self.backend.calls_in_flight > 0 or self.backend.queue.clients > 0

    def free(self) -> None:
        """Drop the background jobs not started, wait for the running job, free the model.

        Blocks; call it on a worker thread once :meth:`busy` is false.
        """
        self.backend.queue.close()
        self._free()


SlotOpener = Callable[[LoadedModel, SpeedMeter | None], ModelSlot]
"""Loads a planned model into a slot (blocking); the speed meter carries a reloaded model's
measured speed over.  :func:`llama_opener` in production, fakes in tests."""


def llama_opener(
    local: LocalSettings, transcript: TranscriptFormat = DEFAULT_TRANSCRIPT
) -> SlotOpener:
    """The opener that loads models through llama.cpp.

    Args:
        local: The ``local`` settings (batch size, queue length, output defaults).
        transcript: How a base model's prompt begins.

    Returns:
        A function that loads a planned model and returns its slot; it raises
        ``ModelFileError`` when llama.cpp cannot load the file.
    """

    def open_slot(planned: LoadedModel, speed: SpeedMeter | None) -> ModelSlot:
        from hybrid.local.engine import LlamaEngine, LoadOptions
        from hybrid.local.queue import WorkQueue

        plan, path = planned.plan, planned.path
        if not plan.fits:
            log.warning(
                "%s may not fit this machine's memory (%s MiB needed); loading anyway",
                path.name,
                plan.memory_required_bytes // 2**20,
            )
        log.info(
            "loading %s: %d slots of n_ctx=%d, kv %s, n_threads=%d n_gpu_layers=%d",
            path.name,
            plan.n_parallel,
            plan.n_ctx,
            plan.kv_cache_type,
            plan.n_threads,
            plan.n_gpu_layers,
        )
        began = time.perf_counter()
        engine = LlamaEngine.load(
            path,
            LoadOptions(
                n_ctx=plan.n_ctx,
                n_threads=plan.n_threads,
                n_gpu_layers=plan.n_gpu_layers,
                n_batch=local.n_batch,
                n_parallel=plan.n_parallel,
                kv_cache_type=plan.kv_cache_type,
                flash_attn=plan.flash_attn,
            ),
        )
        formatter = ChatFormatter(
            planned.info.chat_template,
            bos_token=engine.token_text(engine.bos_token),
            eos_token=engine.token_text(engine.eos_token),
            transcript=transcript,
        )
        log.info(
            "ready: %s (%s chat format)",
            planned.model_id,
            "its own" if formatter.uses_template else "transcript",
        )
        queue = WorkQueue(max_waiting=local.max_queue, slots=engine.n_parallel)
        backend, background = (
            model_backend(engine, lane, formatter, planned, local, meter)
            # The clients' lane keeps a reloaded model's speed; calibration answers are not
            # what clients ask, so they are measured apart.
            for lane, meter in ((queue, speed), (queue.background(), None))
        )
        return ModelSlot(
            planned, backend, background, engine.close, load_s=time.perf_counter() - began
        )

    return open_slot


def model_backend(
    engine: Engine,
    lane: WorkQueue,
    formatter: ChatFormatter,
    planned: LoadedModel,
    local: LocalSettings,
    speed: SpeedMeter | None,
) -> LocalBackend:
    """The backend of a loaded model on one lane of its queue, with its generation defaults.

    The model's store's ``temperature`` is the default for a request that sets none, unless
    ``local.temperature`` was set explicitly; its ``stop`` sequences end every answer, beside
    the request's own.

    Args:
        engine: The loaded model.
        lane: The queue lane the backend's work goes to.
        formatter: The model's prompt formatter.
        planned: What was loaded (its name and store defaults).
        local: The ``local`` settings (output cap, temperature).
        speed: The speed measured so far (a reload keeps it), or None for a new meter.

    Returns:
        The backend.
    """
    defaults = planned.defaults
    temperature = local.temperature
    if defaults.temperature is not None and "temperature" not in local.model_fields_set:
        temperature = defaults.temperature
    return LocalBackend(
        engine,
        lane,
        formatter,
        model_id=planned.model_id,
        default_max_tokens=local.default_max_tokens,
        default_temperature=temperature,
        default_stop=defaults.stop,
        speed=speed,
    )
