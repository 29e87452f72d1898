"""The local model's lifecycle while serving: load, switch, unload when idle, reload, free.

``hybrid serve`` answers ``/health`` from the first moment; while the model is being assembled
and loaded, requests get a 503 that says so, and a load failure is reported the same way with
its reason, instead of the server dying.

States (:attr:`LocalRuntime.state`)::

    loading ──▶ ready ◀──▶ unloaded      (keep-alive: idle for local.keep_alive seconds;
       │          ▲                       the next request reloads it)
       ▼          │ switch (the old model serves while the new one loads)
    failed ───────┘
    any ──▶ closed

A **switch** (:meth:`LocalRuntime.begin_switch`) loads the new model beside the old one, then
swaps them in one step on the event loop: requests that got the old backend before the swap
(running, queued, or on their way into its queue) finish on it, every later one gets the new
one, and the old model is freed once nothing of a client's is left on it.  One load runs at a
time: a switch asked for while another loads is refused (:class:`SwitchInProgressError`).

**Keep-alive** (:meth:`LocalRuntime.keep_alive`): after ``local.keep_alive`` seconds with no
client request queued or running (background calibration does not count), the model is freed
and the state is ``unloaded``; :meth:`LocalRuntime.wake` reloads it with the same plan.
Listeners (:meth:`LocalRuntime.subscribe`) hear of every change, for the event stream and to
pause or retarget background calibration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from hybrid.errors import (
    HybridError,
    InvalidRequestError,
    ModelNotReadyError,
    SwitchInProgressError,
)
from hybrid.local.backend import LocalBackend
from hybrid.local.prompt import DEFAULT_TRANSCRIPT, TranscriptFormat
from hybrid.local.slot import LoadedModel, ModelSlot, SlotOpener, llama_opener, plan_load
from hybrid.local.status import ChangeKind, ModelChange, ModelStatus, PendingLoad

if TYPE_CHECKING:
    from hybrid.hardware.probe import HardwareProbe
    from hybrid.hardware.snapshot import HardwareSnapshot
    from hybrid.local.speed import SpeedMeter
    from hybrid.settings import Settings

__all__ = ["LoadedModel", "LocalRuntime", "ModelChange", "ModelStatus", "PendingLoad"]

log = logging.getLogger("hybrid.local")

RuntimeState = Literal["loading", "ready", "unloaded", "failed", "closed"]

LOAD_BYTES_PER_S = 1e9
"""Assumed load speed of a file never loaded here (a reload uses the measured time)."""


class LocalRuntime:
    """Owns the local model's lifecycle: load, serve, switch, unload, free.

    Args:
        settings: The effective settings.
        snapshot: Takes a hardware snapshot (the probe); called for each plan.
        transcript: How a base model's prompt begins (a model with a chat template is
            prompted through its template instead).
        opener: Loads a planned model into a slot (llama.cpp's by default; fakes in tests).
        clock: Monotonic seconds, for the keep-alive's idle time.
        poll_s: How often a retired model is checked for work left on it, and the longest
            pause between two looks of the keep-alive at the model's activity.
    """

    def __init__(
        self,
        settings: Settings,
        snapshot: Callable[[], HardwareSnapshot],
        *,
        transcript: TranscriptFormat = DEFAULT_TRANSCRIPT,
        opener: SlotOpener | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = 0.05,
    ) -> None:
        self._settings = settings
        self._snapshot = snapshot
        self._opener = opener if opener is not None else llama_opener(settings.local, transcript)
        self._clock = clock
        self._poll_s = poll_s
        self._state: RuntimeState = "loading"
        self._error: str | None = None
        self._switch_error: str | None = None
        self._slot: ModelSlot | None = None
        # The model served: loaded, or unloaded for idleness (then reloaded with this plan).
        self._loaded: LoadedModel | None = None
        self._pending: PendingLoad | None = None
        self._loading: asyncio.Task[None] | None = None
        self._speed: SpeedMeter | None = None
        self._load_s: dict[Path, float] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[ModelChange], None]] = []

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
        """``loading``, ``ready``, ``unloaded``, ``failed`` or ``closed``."""
        return self._state

    @property
    def error(self) -> str | None:
        """Why the load failed, when it did."""
        return self._error

    @property
    def model_id(self) -> str:
        """The local model's id: the name it is served under, or the configured one (a file's
        stem, or a name as ``hybrid models`` lists it) while loading."""
        if self._loaded is not None:
            return self._loaded.model_id
        model = self._settings.local.model
        if model is not None:
            return model.stem if model.suffix.lower() == ".gguf" else str(model)
        from hybrid.models.embedded import DEFAULT_MODEL_ID

        return DEFAULT_MODEL_ID

    @property
    def loaded_path(self) -> Path | None:
        """The served GGUF file (also while unloaded for idleness), once loaded."""
        return self._loaded.path if self._loaded is not None else None

    @property
    def loaded(self) -> LoadedModel | None:
        """The served model (also while unloaded for idleness), once loaded."""
        return self._loaded

    @property
    def pending(self) -> PendingLoad | None:
        """The switch or reload loading now, if any."""
        return self._pending

    @property
    def last_speed(self) -> SpeedMeter | None:
        """The served model's measured speed (kept while it is unloaded)."""
        return self._speed

    def status(self) -> ModelStatus:
        """The current model, the one loading, and the state, for ``/health`` and events."""
        loaded = self._loaded
        shown = self._state
        pending = self._pending
        return ModelStatus(
            state="switching"
            if shown == "ready" and pending is not None and pending.reason == "switch"
            else shown,
            model=self.model_id,
            path=str(loaded.path) if loaded is not None else None,
            loading=pending,
            error=self._error,
            switch_error=self._switch_error,
            keep_alive_s=self._settings.local.keep_alive,
            load_s=self._load_s.get(loaded.path) if loaded is not None else None,
        )

    def subscribe(self, listener: Callable[[ModelChange], None]) -> None:
        """Call ``listener`` on the event loop after each change of state or model."""
        self._listeners.append(listener)

    def backend(self) -> LocalBackend:
        """The ready backend.

        Raises:
            ModelNotReadyError: The model is loading, unloaded, failed to load, or was closed.
        """
        slot = self._slot
        if slot is not None and self._state == "ready":
            return slot.backend
        if self._state == "failed":
            raise ModelNotReadyError(f"the local model failed to load: {self._error}")
        if self._state == "closed":
            raise ModelNotReadyError("the server is shutting down")
        if self._state == "unloaded":
            raise ModelNotReadyError("the local model was unloaded while idle; it is reloading")
        raise ModelNotReadyError("the local model is still loading; retry in a few seconds")

    def background_backend(self) -> LocalBackend:
        """The ready backend's low-priority twin: the same model and queue, but each request
        it answers starts only when no client request waits or runs (background calibration).

        Raises:
            ModelNotReadyError: The model is not ready (loading, unloaded, failed, closed).
        """
        self.backend()  # raises while the model is not ready
        assert self._slot is not None  # built together with the backend
        return self._slot.background

    def count_tokens(self, text: str) -> int:
        """Tokens in a text: by the local tokenizer once the model is ready, else an estimate
        of one token per four characters (what the ledger records when nothing better is
        known)."""
        if self._slot is not None and self._state == "ready":
            return self._slot.backend.count_tokens(text)
        return (len(text) + 3) // 4

    def expected_load_s(self) -> float:
        """Seconds before an unloaded model could answer: its load time (measured when it was
        loaded here before, else estimated from its size), less what a reload in progress has
        done; 0 when it is not unloaded."""
        if self._state != "unloaded" or self._loaded is None:
            return 0.0
        pending = self._pending
        path = pending.path if pending is not None else self._loaded.path
        full = self._load_s.get(path)
        if full is None:
            try:
                full = 0.5 + path.stat().st_size / LOAD_BYTES_PER_S
            except OSError:
                full = 0.5
        if pending is None:
            return full
        return max(full - (time.time() - pending.started), 0.1 * full)

    async def load(self) -> None:
        """Load the configured model; never raises: a failure is kept in :attr:`error`."""
        try:
            planned = await asyncio.to_thread(self._plan_configured)
            slot = await asyncio.to_thread(self._opener, planned, None)
        except HybridError as exc:
            self._fail(str(exc))
            self._notify("failed")
        except Exception as exc:  # a load must never take the server down with a traceback
            log.exception("loading the local model failed")
            self._fail(f"unexpected error: {exc!r}")
            self._notify("failed")
        else:
            if self._state == "loading":
                self._install(slot)
                self._notify("ready")
            else:  # closed while loading
                await asyncio.to_thread(slot.free)

    def plan_switch(self, path: Path) -> LoadedModel:
        """Plan a model file for this machine, as the start does (blocking: reads its header
        and takes a hardware snapshot).

        Args:
            path: The resolved model file.

        Returns:
            The planned model, for :meth:`begin_switch`.

        Raises:
            ModelFileError: The file is not a valid GGUF model.
            InvalidRequestError: It does not fit this machine's free memory (while the current
                model is still loaded), or an explicit ``local.n_ctx`` does not fit.
        """
        from hybrid.errors import ConfigError

        try:
            planned = self._plan(path)
        except ConfigError as exc:
            raise InvalidRequestError(str(exc), param="model") from exc
        if not planned.plan.fits:
            free = planned.snapshot.memory.usable_available_bytes
            raise InvalidRequestError(
                f"{planned.model_id} does not fit this machine: it needs "
                f"{planned.plan.memory_required_bytes / 2**20:,.0f} MiB of memory and "
                f"{free / 2**20:,.0f} MiB is free beside the model being served. Choose a "
                f"smaller model or quantization (`hybrid models` shows which fit), or restart "
                f"hybrid with it (--model) so that the current model's memory is free.",
                param="model",
            )
        return planned

    def begin_switch(self, planned: LoadedModel) -> asyncio.Future[None]:
        """Start loading ``planned`` beside the served model; swap them once it is loaded.

        Args:
            planned: What :meth:`plan_switch` returned.

        Returns:
            Resolves once the switch has ended (the new model serves, or the load failed:
            :meth:`status` says which); cancelling it does not stop the load.

        Raises:
            SwitchInProgressError: A model is loading already (the first load, a switch or a
                reload).
            ModelNotReadyError: The server is shutting down.
        """
        if self._state == "closed":
            raise ModelNotReadyError("the server is shutting down")
        busy = self._pending if self._loading is not None else None
        if self._state == "loading" or busy is not None:
            what = busy.model_id if busy is not None else self.model_id
            raise SwitchInProgressError(
                f"{what} is loading now; wait until it is ready (GET /v1/hybrid/model) and "
                f"switch again",
                param="model",
            )
        self._pending = PendingLoad(planned.model_id, planned.path, "switch", time.time())
        self._switch_error = None
        self._loading = asyncio.create_task(self._switch(planned))
        self._notify("loading")
        return asyncio.shield(self._loading)

    def wake(self) -> asyncio.Future[None]:
        """Reload a model unloaded for idleness, or join the load in progress.

        Returns:
            Resolves when the load has ended (then :meth:`backend` answers, or says why not);
            at once when the model is not unloaded.  Cancelling it does not stop the load.
        """
        if self._state == "unloaded" and self._loading is None and self._loaded is not None:
            loaded = self._loaded
            self._pending = PendingLoad(loaded.model_id, loaded.path, "reload", time.time())
            self._loading = asyncio.create_task(self._reload(loaded))
            self._notify("loading")
        if self._state != "unloaded" or self._loading is None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return asyncio.shield(self._loading)

    async def unload(self) -> bool:
        """Free the model now that it is idle; the next request reloads it.

        Returns:
            Whether it was unloaded (not when it is not ready or another model loads).
        """
        slot = self._slot
        if self._state != "ready" or slot is None or self._loading is not None:
            return False
        log.info(
            "unloading %s: idle for %gs", slot.loaded.model_id, self._settings.local.keep_alive
        )
        self._slot = None
        self._state = "unloaded"
        self._notify("unloaded")
        await self._retire(slot)
        return True

    async def keep_alive(self) -> None:
        """Unload the model after ``local.keep_alive`` seconds with no client work on it, until
        cancelled; returns at once when the setting is negative (never unload)."""
        idle_s = self._settings.local.keep_alive
        if idle_s < 0:
            return
        pause = min(max(idle_s / 4, 0.01), 1.0, max(self._poll_s, 0.01) * 20)
        seen: tuple[int, int] | None = None  # (slot, calls started) when last looked at
        quiet_since = self._clock()
        while self._state != "closed":
            await asyncio.sleep(pause)
            slot = self._slot
            if self._state != "ready" or slot is None or self._loading is not None or slot.busy():
                seen, quiet_since = None, self._clock()
                continue
            now = (id(slot), slot.backend.calls_started)
            if now != seen:  # a request came and went since the last look
                seen, quiet_since = now, self._clock()
            if self._clock() - quiet_since >= idle_s:
                await self.unload()
                seen, quiet_since = None, self._clock()

    async def close(self) -> None:
        """Cancel queued work, wait for the running job and any load, and free every model."""
        self._state = "closed"
        slot, self._slot = self._slot, None
        if slot is not None:
            await asyncio.to_thread(slot.free)
        waits = [task for task in (self._loading, *self._retiring) if task is not None]
        await asyncio.gather(*waits, return_exceptions=True)

    def _plan_configured(self) -> LoadedModel:
        from hybrid.models.resolve import resolve_model

        path = resolve_model(self._settings, progress=lambda message: log.info("%s", message))
        return self._plan(path)

    def _plan(self, path: Path) -> LoadedModel:
        """Plan a file under the name ``hybrid models`` lists it by (``llama3.2:3b`` for an
        Ollama blob, else the file name without ``.gguf``), with its store's defaults."""
        from hybrid.models.resolve import served_as

        name, defaults = served_as(self._settings, path)
        return plan_load(
            self._settings.local, path, self._snapshot(), model_id=name, defaults=defaults
        )

    async def _switch(self, planned: LoadedModel) -> None:
        try:
            slot = await asyncio.to_thread(self._opener, planned, None)
        except Exception as exc:
            message = str(exc) if isinstance(exc, HybridError) else f"unexpected error: {exc!r}"
            log.error("switching to %s failed: %s", planned.model_id, message)
            self._pending = self._loading = None
            self._switch_error = f"switching to {planned.model_id} failed: {message}"
            self._notify("switch_failed")
            return
        self._pending = self._loading = None
        if self._state == "closed":
            await asyncio.to_thread(slot.free)
            return
        old = self._slot
        # The swap: from here on every new request gets the new model.
        self._install(slot)
        log.info("switched to %s", planned.model_id)
        self._notify("switched")
        if old is not None:
            retiring = asyncio.create_task(self._retire(old))
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)

    async def _reload(self, loaded: LoadedModel) -> None:
        try:
            slot = await asyncio.to_thread(self._opener, loaded, self._speed)
        except Exception as exc:
            message = str(exc) if isinstance(exc, HybridError) else f"unexpected error: {exc!r}"
            self._pending = self._loading = None
            if self._state == "unloaded":
                self._fail(f"reloading {loaded.model_id} failed: {message}")
                self._notify("failed")
            return
        self._pending = self._loading = None
        if self._state != "unloaded":  # closed meanwhile
            await asyncio.to_thread(slot.free)
            return
        self._install(slot)
        log.info("reloaded %s in %.1fs", loaded.model_id, slot.load_s)
        self._notify("reloaded")

    async def _retire(self, slot: ModelSlot) -> None:
        """Free a slot once no client's work is left on it (what it had started finishes)."""
        while slot.busy():
            await asyncio.sleep(self._poll_s)
        await asyncio.to_thread(slot.free)
        log.info("freed %s", slot.loaded.model_id)

    def _install(self, slot: ModelSlot) -> None:
        self._slot = slot
        self._loaded = slot.loaded
        self._speed = slot.backend.speed
        self._load_s[slot.loaded.path] = slot.load_s
        self._state = "ready"
        self._error = None

    def _fail(self, message: str) -> None:
        self._error = message
        self._state = "failed"
        log.error("%s", message)

    def _notify(self, kind: ChangeKind) -> None:
        change = ModelChange(kind, self.status())
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # a listener must not break the model's lifecycle
                log.exception("a model-change listener failed")
