"""Loading the local model in the background and handing out its backend once it is ready.

``hybrid serve`` answers ``/health`` from the first moment; while the model is being assembled
and loaded, requests get a 503 that says so, and a load failure is reported the same way with
its reason, instead of the server dying.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from hybrid.errors import HybridError, ModelNotReadyError
from hybrid.local.backend import LocalBackend
from hybrid.local.prompt import DEFAULT_TRANSCRIPT, TranscriptFormat

if TYPE_CHECKING:
    from hybrid.hardware.plan import RuntimePlan
    from hybrid.hardware.probe import HardwareProbe
    from hybrid.hardware.snapshot import HardwareSnapshot
    from hybrid.local.engine import LlamaEngine
    from hybrid.models.gguf import GgufInfo
    from hybrid.settings import Settings

log = logging.getLogger("hybrid.local")

RuntimeState = Literal["loading", "ready", "failed", "closed"]


@dataclass(frozen=True)
class LoadedModel:
    """What was loaded, and why it was sized the way it was."""

    model_id: str
    path: Path
    info: GgufInfo
    plan: RuntimePlan
    snapshot: HardwareSnapshot


class LocalRuntime:
    """Owns the local model's lifecycle: load, serve, free.

    Args:
        settings: The effective settings.
        snapshot: Takes a hardware snapshot (the probe); called once, during the load.
        transcript: How a base model's prompt begins (a model with a chat template is
            prompted through its template instead).
    """

    def __init__(
        self,
        settings: Settings,
        snapshot: Callable[[], HardwareSnapshot],
        *,
        transcript: TranscriptFormat = DEFAULT_TRANSCRIPT,
    ) -> None:
        self._settings = settings
        self._snapshot = snapshot
        self._transcript = transcript
        self._state: RuntimeState = "loading"
        self._error: str | None = None
        self._backend: LocalBackend | None = None
        self._background: LocalBackend | None = None
        self._engine: LlamaEngine | None = None
        self._loaded: LoadedModel | None = None

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        probe: HardwareProbe | None = None,
        *,
        transcript: TranscriptFormat = DEFAULT_TRANSCRIPT,
    ) -> LocalRuntime:
        """The runtime ``hybrid serve`` builds: sized by the probe (the real one by default).

        ``transcript`` replaces the base-model prompt format (``scripts/eval_prompt.py``
        measures candidates this way).
        """
        from hybrid.hardware.probe import probe_for

        hardware = probe if probe is not None else probe_for(settings.home)
        measure = settings.probe.measure_bandwidth
        return cls(
            settings,
            snapshot=lambda: hardware.snapshot(measure_bandwidth=measure),
            transcript=transcript,
        )

    @property
    def state(self) -> RuntimeState:
        """``loading``, ``ready``, ``failed`` or ``closed``."""
        return self._state

    @property
    def error(self) -> str | None:
        """Why the load failed, when it did."""
        return self._error

    @property
    def model_id(self) -> str:
        """The local model's id: the loaded file's stem, or the configured one while loading."""
        if self._loaded is not None:
            return self._loaded.model_id
        model = self._settings.local.model
        if model is not None:
            return model.stem
        from hybrid.models.embedded import DEFAULT_MODEL_ID

        return DEFAULT_MODEL_ID

    @property
    def loaded_path(self) -> Path | None:
        """The loaded GGUF file, once ready."""
        return self._loaded.path if self._loaded is not None else None

    @property
    def loaded(self) -> LoadedModel | None:
        """The loaded model, once ready."""
        return self._loaded

    def backend(self) -> LocalBackend:
        """The ready backend.

        Raises:
            ModelNotReadyError: The model is loading, failed to load, or was closed.
        """
        if self._backend is not None and self._state == "ready":
            return self._backend
        if self._state == "failed":
            raise ModelNotReadyError(f"the local model failed to load: {self._error}")
        if self._state == "closed":
            raise ModelNotReadyError("the server is shutting down")
        raise ModelNotReadyError("the local model is still loading; retry in a few seconds")

    def background_backend(self) -> LocalBackend:
        """The ready backend's low-priority twin: the same model and queue, but each request
        it answers starts only when no client request waits or runs (background calibration).

        Raises:
            ModelNotReadyError: The model is loading, failed to load, or was closed.
        """
        self.backend()  # raises while the model is not ready
        assert self._background is not None  # built together with the backend
        return self._background

    def count_tokens(self, text: str) -> int:
        """Tokens in a text: by the local tokenizer once the model is ready, else an estimate
        of one token per four characters (what the ledger records when nothing better is
        known)."""
        if self._backend is not None and self._state == "ready":
            return self._backend.count_tokens(text)
        return (len(text) + 3) // 4

    async def load(self) -> None:
        """Load the model; never raises: a failure is kept in :attr:`error`."""
        try:
            self._backend = await asyncio.to_thread(self._load_blocking)
        except HybridError as exc:
            self._fail(str(exc))
        except Exception as exc:  # a load must never take the server down with a traceback
            log.exception("loading the local model failed")
            self._fail(f"unexpected error: {exc!r}")
        else:
            if self._state == "loading":
                self._state = "ready"
            else:  # closed while loading
                self._free()

    async def close(self) -> None:
        """Cancel queued work, wait for the running job, and free the model."""
        self._state = "closed"
        await asyncio.to_thread(self._free)

    def _fail(self, message: str) -> None:
        self._error = message
        self._state = "failed"
        log.error("%s", message)

    def _free(self) -> None:
        backend, engine = self._backend, self._engine
        self._backend = self._background = self._engine = None
        if backend is not None:
            backend.queue.close()
        if engine is not None:
            engine.close()

    def _load_blocking(self) -> LocalBackend:
        from hybrid.hardware.plan import serving_plan
        from hybrid.local.engine import LlamaEngine, LoadOptions
        from hybrid.local.prompt import ChatFormatter
        from hybrid.local.queue import WorkQueue
        from hybrid.models.catalog import resolve_model
        from hybrid.models.gguf import read_gguf

        local = self._settings.local
        path = resolve_model(self._settings, progress=lambda message: log.info("%s", message))
        info = read_gguf(path)
        snapshot = self._snapshot()
        # An explicit local.n_ctx that does not fit is refused (a ConfigError), not tried.
        plan = serving_plan(snapshot, info.footprint(), local)
        for note in plan.notes:
            log.info("plan: %s", note)
        if not plan.fits:
            log.warning(
                "%s may not fit this machine's memory (%s MiB needed); loading anyway",
                path.name,
                plan.memory_required_bytes // 2**20,
            )
        log.info(
            "loading %s: n_ctx=%d n_threads=%d n_gpu_layers=%d",
            path.name,
            plan.n_ctx,
            plan.n_threads,
            plan.n_gpu_layers,
        )
        engine = LlamaEngine.load(
            path,
            LoadOptions(
                n_ctx=plan.n_ctx,
                n_threads=plan.n_threads,
                n_gpu_layers=plan.n_gpu_layers,
                n_batch=local.n_batch,
            ),
        )
        self._engine = engine
        formatter = ChatFormatter(
            info.chat_template,
            bos_token=engine.token_text(engine.bos_token),
            eos_token=engine.token_text(engine.eos_token),
            transcript=self._transcript,
        )
        model_id = path.stem
        self._loaded = LoadedModel(model_id, path, info, plan, snapshot)
        log.info(
            "ready: %s (%s chat format)",
            model_id,
            "its own" if formatter.uses_template else "transcript",
        )
        queue = WorkQueue(max_waiting=local.max_queue)
        backend, background = (
            LocalBackend(
                engine,
                lane,
                formatter,
                model_id=model_id,
                default_max_tokens=local.default_max_tokens,
                default_temperature=local.temperature,
            )
            for lane in (queue, queue.background())
        )
        self._background = background
        return backend
