"""What the runtime says about the local model: its state, the model, the one loading.

:class:`ModelStatus` is the body of ``GET /v1/hybrid/model``, the ``model`` object of
``/health`` and of the ``model`` event (docs/events.md); :class:`ModelChange` is what a
runtime listener hears after each change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

LoadReason = Literal["switch", "reload"]
ChangeKind = Literal[
    "ready", "failed", "loading", "switched", "switch_failed", "unloaded", "reloaded"
]


@dataclass(frozen=True)
class PendingLoad:
    """A model loading while the server serves.

    Attributes:
        model_id: The id it will serve under.
        path: Its file.
        reason: ``switch`` (asked for) or ``reload`` (after an idle unload).
        started: When the load began (Unix time).
    """

    model_id: str
    path: Path
    reason: LoadReason
    started: float

    def to_json(self) -> dict[str, Any]:
        """``model``, ``path``, ``reason`` and ``started``."""
        return {
            "model": self.model_id,
            "path": str(self.path),
            "reason": self.reason,
            "started": round(self.started, 3),
        }


@dataclass(frozen=True)
class ModelStatus:
    """The local model as the server reports it.

    Attributes:
        state: ``loading`` (the first load), ``ready``, ``switching`` (ready, with another
            model loading to replace it), ``unloaded`` (freed while idle; the next request
            reloads it), ``failed`` or ``closed``.
        model: The served model's id (the configured one during the first load).
        path: Its file, once loaded.
        loading: The switch or reload in progress, if any.
        error: Why the model failed to load (state ``failed``).
        switch_error: Why the last switch failed, until the next one begins; the old model
            kept serving.
        keep_alive_s: ``local.keep_alive``: idle seconds before an unload (negative: never).
        load_s: Seconds the served model took to load here.
    """

    state: str
    model: str
    path: str | None
    loading: PendingLoad | None = None
    error: str | None = None
    switch_error: str | None = None
    keep_alive_s: float = -1.0
    load_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields above, ``loading`` as an object or null, ``load_s`` rounded to ms."""
        return {
            "state": self.state,
            "model": self.model,
            "path": self.path,
            "loading": self.loading.to_json() if self.loading is not None else None,
            "error": self.error,
            "switch_error": self.switch_error,
            "keep_alive_s": self.keep_alive_s,
            "load_s": round(self.load_s, 3) if self.load_s is not None else None,
        }


@dataclass(frozen=True)
class ModelChange:
    """One change of the local model.

    Attributes:
        kind: ``ready`` (the first load ended), ``failed``, ``loading`` (a switch or reload
            began), ``switched``, ``switch_failed``, ``unloaded`` or ``reloaded``.
        status: The status after the change.
    """

    kind: ChangeKind
    status: ModelStatus
