"""Switching the served local model by name, while serving (``POST /v1/hybrid/model``).

A name is looked up as ``hybrid models`` and ``--model`` look it up
(:func:`hybrid.models.resolve.resolve_model`), planned for this machine as the start plans
it, and only then loaded, beside the model being served, by
:meth:`~hybrid.local.runtime.LocalRuntime.begin_switch`.  What can be refused is refused
before anything loads: an unknown name (with the names that exist), a broken file or one that
does not fit, a switch while another model loads.  A request that names a model
(:meth:`ModelSwitching.serve`) waits for such a load instead, then switches.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid.errors import (
    InvalidRequestError,
    LocalModelNotFoundError,
    ModelFileError,
    ModelNotReadyError,
    SwitchInProgressError,
)

if TYPE_CHECKING:
    from hybrid.local.runtime import LocalRuntime
    from hybrid.local.status import ModelStatus
    from hybrid.models.catalog import ModelEntry
    from hybrid.settings import Settings

# How often a request that names a model looks whether another model's load has ended.
_WAIT_POLL_S = 0.05


@dataclass(frozen=True)
class AvailableModel:
    """A model the server can switch to.

    Attributes:
        name: The name to ask for.
        path: Its file.
        size_bytes: The file's size.
        quantization: Its quantization (``Q4_K_M``), when the header says.
        chat_template: Whether it carries a chat template.
        serving: Whether it is the model served now.
    """

    name: str
    path: Path
    size_bytes: int
    quantization: str | None
    chat_template: bool
    serving: bool

    def to_json(self) -> dict[str, Any]:
        """The fields above, ``path`` as a string."""
        return {
            "name": self.name,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "quantization": self.quantization,
            "chat_template": self.chat_template,
            "serving": self.serving,
        }


class ModelSwitching:
    """Looks model names up and switches the runtime to them.

    Args:
        settings: The effective settings (where models are found).
        runtime: The local model's runtime.
    """

    def __init__(self, settings: Settings, runtime: LocalRuntime) -> None:
        self._settings = settings
        self._runtime = runtime

    async def available(self) -> list[AvailableModel]:
        """The models found, as ``hybrid models`` lists them (read on a worker thread)."""
        return await asyncio.to_thread(self._available)

    async def switch(self, name: str, *, wait: bool = False) -> ModelStatus:
        """Start loading the model called ``name``; swap it in once loaded.

        Args:
            name: A name ``hybrid models`` (or ``GET /v1/hybrid/model``) lists.
            wait: Return only once the switch has ended (loaded and swapped in, or failed).

        Returns:
            The runtime's status: ``switching`` with the model loading, or after ``wait``,
            ``ready`` with the new model (or the old one and ``switch_error``); the status as
            it is when ``name`` is the model served already.

        Raises:
            InvalidRequestError: ``name`` is empty or a path, its file is broken, or it does
                not fit this machine.
            LocalModelNotFoundError: No model has that name (the message lists those that do).
            SwitchInProgressError: Another model is loading.
            ModelNotReadyError: The server is shutting down.
        """
        path = await asyncio.to_thread(self._resolve, name)
        runtime = self._runtime
        served = runtime.loaded_path
        if (
            runtime.state == "ready"
            and runtime.pending is None
            and served is not None
            and _same(path, served)
        ):
            return runtime.status()  # served already: nothing to load
        planned = await asyncio.to_thread(runtime.plan_switch, path)
        switched = runtime.begin_switch(planned)
        if wait:
            await switched
        return self._runtime.status()

    async def serve(self, name: str) -> bool:
        """Serve the model called ``name`` for a request that names it, as Ollama does: wait
        for a load in progress (a switch, a reload, the first load) to end, then switch to it
        and wait for the swap (the old model finishes what it had started).

        Args:
            name: A name ``hybrid models`` (or ``GET /v1/hybrid/model``) lists.

        Returns:
            Whether a switch loaded it; False when it was served already.

        Raises:
            InvalidRequestError: ``name`` is a path, its file is broken, or it does not fit.
            LocalModelNotFoundError: No model has that name.
            ModelNotReadyError: Loading it failed (the message says why; the old model keeps
                serving), or the server is shutting down.
        """
        path = await asyncio.to_thread(self._resolve, name)
        runtime = self._runtime
        while not self._serving(path):
            if runtime.state == "loading" or runtime.pending is not None:
                await asyncio.sleep(_WAIT_POLL_S)
                continue
            planned = await asyncio.to_thread(runtime.plan_switch, path)
            try:
                switched = runtime.begin_switch(planned)
            except SwitchInProgressError:
                continue  # another load began while this one was planned: wait for it
            await switched
            if not self._serving(path):
                failed = runtime.status().switch_error
                raise ModelNotReadyError(
                    failed or f"{planned.model_id} did not become the served model; try again"
                )
            return True
        return False

    def _serving(self, path: Path) -> bool:
        """Whether ``path`` is the model served now (an unloaded one reloads on request)."""
        served = self._runtime.loaded_path
        return (
            self._runtime.state in ("ready", "unloaded")
            and served is not None
            and _same(path, served)
        )

    def _resolve(self, name: str) -> Path:
        from hybrid.models.embedded import DEFAULT_MODEL_ID, EMBEDDED_FILE_NAME
        from hybrid.models.names import split_prefix
        from hybrid.models.resolve import resolve_name

        name = name.strip()
        if not name:
            raise InvalidRequestError(
                "model must be the name of a model the server lists (GET /v1/hybrid/model, "
                "`hybrid models`)",
                param="model",
            )
        entries = self._entries()
        known = {alias.lower() for entry in entries for alias in entry.names}
        known |= {entry.path.name.lower() for entry in entries}
        known |= {DEFAULT_MODEL_ID.lower(), EMBEDDED_FILE_NAME.lower()}
        if split_prefix(name)[1].lower() not in known:
            if Path(name).expanduser().is_file():
                raise InvalidRequestError(
                    f"model must be the name of a model the server lists (GET "
                    f"/v1/hybrid/model, `hybrid models`), not a path (got {name!r}); to serve "
                    f"another file, put it in a models folder or restart with --model",
                    param="model",
                )
            listed = sorted({entry.name for entry in entries} | {DEFAULT_MODEL_ID})
            raise LocalModelNotFoundError(name, listed)
        try:
            return resolve_name(self._settings, name)
        except ModelFileError as exc:
            raise InvalidRequestError(str(exc), param="model") from exc

    def _entries(self) -> list[ModelEntry]:
        from hybrid.models.catalog import discover_models

        return discover_models(self._settings)

    def _available(self) -> list[AvailableModel]:
        serving = self._runtime.loaded_path
        found = []
        for entry in self._entries():
            if entry.info is None:
                continue  # unreadable: `hybrid models` says why
            size = entry.size_bytes
            if size is None:
                continue
            found.append(
                AvailableModel(
                    name=entry.name,
                    path=entry.path,
                    size_bytes=size,
                    quantization=entry.info.file_type,
                    chat_template=entry.info.chat_template is not None,
                    serving=serving is not None and _same(entry.path, serving),
                )
            )
        return found


def _same(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        return one == other
