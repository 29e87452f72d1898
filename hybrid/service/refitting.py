"""Refitting the served model's difficulty model from its labelled traffic, while serving.

``hybrid calibrate --from-ledger`` refits on demand.  With ``routing.learn.refit_after`` set
(50 by default), ``hybrid serve`` also does it by itself: every ``poll_s`` seconds it reads how
many labelled requests of the served model a refit can use (people's feedback and shadow
comparisons, from this daemon or any other of a shared ledger), and once that many were
labelled after the newest label its last refit learned from (a label that replaces an earlier
one counts as new; counting labels, not totals, keeps refits coming once
``routing.learn.keep_signals`` or the retention prunes old ones), it refits exactly as the
command does (:func:`~hybrid.routing.calibration.refit_examples.ledger_examples`, then
:func:`~hybrid.routing.calibration.learning.refit`) once the local model is idle (no request
waits or runs), at the lowest CPU priority (:mod:`~hybrid.routing.calibration.low_priority`):
a refit takes seconds of CPU (about 2 s with 400 labels and 11 s with 10,000, on 2 cores),
which a request that arrives meanwhile should not have to share.  The refit is judged against
the calibration stored when it runs (one ``hybrid calibrate`` wrote meanwhile included), and
an adopted one is saved where ``hybrid calibrate`` saves, unless that file changed while it
ran, and used from the next request on; one that is not adopted changes nothing.  Either way
:attr:`TrafficRefitter.last` says what happened, for ``/health`` and the monitor.

At each look it also loads the served model's labelled requests into the router's memory of
them when they changed (in number, or a newer label), also while a due refit waits for idle
(:mod:`hybrid.routing.difficulty.labelled`), so that scores are read beside them from then
on; with ``refit_after`` 0 that is all it does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid.errors import HybridError
from hybrid.routing.calibration.low_priority import run_low_priority
from hybrid.routing.difficulty.labelled import learned_until
from hybrid.routing.difficulty.store import model_path

if TYPE_CHECKING:
    from hybrid.ledger.learning import LabelledSignal
    from hybrid.ledger.writer import LedgerWriter
    from hybrid.routing.calibration.learning import Refit
    from hybrid.routing.difficulty.labelled import LabelledScores
    from hybrid.routing.policies.difficulty import CalibratedModel

log = logging.getLogger("hybrid.calibration")

SEED = 0
"""The split's and folds' seed: ``hybrid calibrate --from-ledger``'s default."""

HELD_OUT = 0.3
"""Share held out to judge the refit: ``hybrid calibrate --from-ledger``'s default."""


@dataclass(frozen=True)
class RefitOutcome:
    """What the last refit from traffic did.

    Attributes:
        time: When it ended (ISO 8601, UTC).
        labels: The usable labelled requests of the model when it ran.
        adopted: Whether the refit replaced the difficulty model in use.
        message: Its held-out figures, or why it was not adopted (or could not run).
        traffic_weight: How many calibration answers one labelled request counted for.
        word_weight: The weight the refit gave the hashed word n-grams.
        model_stage: What became of the model stage (``meta.refit.probe`` of the refit:
            ``labelled_with_vector``, ``refitted``, ``band_share``, ``carried_auroc``,
            ``refit_auroc``); None when the model has none or the refit did not run.
    """

    time: str
    labels: int
    adopted: bool
    message: str
    traffic_weight: float | None = None
    word_weight: float | None = None
    model_stage: dict[str, object] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object (``/health``'s ``calibration.refit.last``)."""
        return {
            "time": self.time,
            "labels": self.labels,
            "adopted": self.adopted,
            "message": self.message,
            "traffic_weight": self.traffic_weight,
            "word_weight": self.word_weight,
            "model_stage": self.model_stage,
        }


class TrafficRefitter:
    """Refits the served model's difficulty model once enough new labels have arrived.

    Args:
        home: The data dir (calibrations and recorded answers).
        ledger: The ledger's writer; its read connection counts and reads the labels.
        calibration: The served model's difficulty model; reloaded after an adopted refit.
        model_name: The served model's id, for the refit's metadata.
        refit_after: Usable labels given since the last refit's newest that start a refit (0:
            never refit, only load the labelled requests into ``labelled``).
        poll_s: Seconds between looks at the label counts.
        idle: Whether the local model is idle (no request waits or runs); a due refit waits
            for it, looking again every ``idle_poll_s`` seconds.
        idle_poll_s: Seconds between looks at ``idle``, and, before the served model's difficulty
            model is known, at it.
        clock: Unix time, for the outcome's time stamp.
        labelled: The router's memory of the served model's labelled requests, loaded at each
            look when they changed (None: none is kept).
    """

    def __init__(
        self,
        *,
        home: Path,
        ledger: LedgerWriter,
        calibration: CalibratedModel,
        model_name: Callable[[], str],
        refit_after: int,
        poll_s: float = 60.0,
        idle: Callable[[], bool] = lambda: True,
        idle_poll_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        labelled: LabelledScores | None = None,
    ) -> None:
        if refit_after < 0:
            raise ValueError(f"refit_after cannot be negative (got {refit_after})")
        self._home = home
        self._ledger = ledger
        self._calibration = calibration
        self._model_name = model_name
        self.refit_after = refit_after
        self._poll_s = poll_s
        self._idle = idle
        self._idle_poll_s = idle_poll_s
        self._clock = clock
        self._labelled = labelled
        # The model, usable label count and newest label time the memory was last loaded for.
        self._loaded: tuple[str, int, float | None] | None = None
        # Per model, the newest label time the last refit (or the refit in use) learned from.
        self._tried: dict[str, float | None] = {}
        # The model a refit is due for, waiting for the local model to be idle.
        self._due: str | None = None
        self.labels = 0
        """Usable labels of the served model at the last look."""
        self.last: RefitOutcome | None = None

    def read_beside(self) -> int | None:
        """How many labelled requests the served model's scores are read beside now (None
        when scores are not read beside labels)."""
        if self._labelled is None:
            return None
        model = self._calibration.status().model
        return 0 if model is None else self._labelled.usable(model)

    async def run(self) -> None:
        """Look as soon as the served model's difficulty model is known (so that its labelled
        requests count from the first request on), then every ``poll_s`` seconds; a refit
        that is due starts once the local model is idle.  Runs until cancelled.  Until the
        model is known, and while a due refit waits for idle, it looks at them every
        ``idle_poll_s`` seconds (a busy server goes on reloading the labels at each look)."""
        loop = asyncio.get_running_loop()
        next_look = loop.time()
        while True:
            known = self._calibration.status().model is not None
            try:
                if known and loop.time() >= next_look:
                    next_look = loop.time() + self._poll_s
                    await self.look()
                if known:
                    await self.refit_if_idle()
            except HybridError as exc:  # a ledger that cannot be read now: look again later
                log.warning("refit from traffic: cannot read the labels: %s", exc)
            if known and self._due is None:
                await asyncio.sleep(max(0.0, next_look - loop.time()))
            else:
                await asyncio.sleep(self._idle_poll_s)

    async def check(self) -> RefitOutcome | None:
        """One look (:meth:`look`), then the refit if one is due and the local model is idle
        (:meth:`refit_if_idle`).

        Returns:
            The refit's outcome, or None when none ran.

        Raises:
            LedgerError: The ledger cannot be read.
        """
        await self.look()
        return await self.refit_if_idle()

    async def look(self) -> None:
        """Count the served model's usable labels, load them into the router's memory when
        they changed (in number, or a newer label: one given, or one that replaced another),
        and mark a refit due when ``refit_after`` of them were labelled after the newest label
        the last refit learned from (before the first: the refit in use, if the model in use
        is one).

        Raises:
            LedgerError: The ledger cannot be read.
        """
        status = self._calibration.status()
        sha256 = status.sha256
        if sha256 is None or status.model is None:
            return  # the model is loading, or its lookup has not finished
        self.labels, newest = await self._ledger.read(lambda store: store.usable_since(sha256))
        if self._labelled is not None and self._loaded != (sha256, self.labels, newest):
            from hybrid.routing.calibration.refit_examples import ledger_requests

            rows = await self._ledger.read(lambda store: store.labelled(sha256))
            self._labelled.load(sha256, await asyncio.to_thread(ledger_requests, rows))
            self._loaded = (sha256, self.labels, newest)
        if self.refit_after == 0 or self._due == sha256:
            return
        if sha256 not in self._tried:
            # A restarted server waits for refit_after more than the refit in use learned from.
            until = learned_until(status.model)
            self._tried[sha256] = until if math.isfinite(until) else None
        after = self._tried[sha256]
        fresh, _ = await self._ledger.read(lambda store: store.usable_since(sha256, after))
        if fresh >= self.refit_after:
            self._due = sha256

    async def refit_if_idle(self) -> RefitOutcome | None:
        """Refit the served model's difficulty model when a refit is due for it and the local
        model is idle (no request waits or runs).  A refit due for a model no longer served is
        dropped: the model served now counts its own labels.

        Returns:
            The refit's outcome, or None when none ran.

        Raises:
            LedgerError: The ledger cannot be read (the refit stays due).
        """
        sha256 = self._due
        if sha256 is None:
            return None
        if self._calibration.status().sha256 != sha256:
            self._due = None
            return None
        if not self._idle():
            return None
        rows = await self._ledger.read(lambda store: store.labelled(sha256))
        self._due = None
        times = [row.labelled_at for row in rows if row.labelled_at is not None]
        self._tried[sha256] = max(times, default=self._tried.get(sha256))
        outcome = await run_low_priority(self._refit, sha256, rows)
        self.last = outcome
        log.info("refit from traffic: %s", outcome.message)
        return outcome

    def _refit(self, sha256: str, rows: list[LabelledSignal]) -> RefitOutcome:
        from hybrid import __version__
        from hybrid.routing.calibration.learning import refit
        from hybrid.routing.calibration.record import load_record
        from hybrid.routing.calibration.refit_examples import ledger_examples
        from hybrid.routing.difficulty.store import find, save

        stamp = datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="seconds")
        found = ledger_examples(load_record(self._home, sha256), rows)
        # Judged against the calibration stored now (``hybrid calibrate`` may have written one
        # since the served model was loaded), and saved only if it is still the one stored.
        before = _stored_bytes(self._home, sha256)
        stored = find(self._home, sha256)
        current = stored.model if stored is not None else self._calibration.status().model
        meta = {
            "model": self._model_name(),
            "model_sha256": sha256,
            "created": stamp[:10],
            "hybrid_version": __version__,
            "refitted_by": "traffic",
        }
        try:
            result: Refit = refit(current, found.examples, seed=SEED, held_out=HELD_OUT, meta=meta)
        except ValueError as exc:
            return RefitOutcome(stamp, self.labels, False, f"cannot refit: {exc}")
        if not result.adopted:
            return RefitOutcome(
                stamp,
                self.labels,
                False,
                f"not adopted: {result.rejection}",
                result.traffic_weight,
                result.word_weight,
                result.probe.meta() if result.probe is not None else None,
            )
        if _stored_bytes(self._home, sha256) != before:
            return RefitOutcome(
                stamp,
                self.labels,
                False,
                "not saved: the model's calibration file changed while refitting (hybrid "
                "calibrate?); the next refit is judged against it",
            )
        try:
            path = save(self._home, sha256, result.model)
        except HybridError as exc:
            return RefitOutcome(stamp, self.labels, False, f"not saved: {exc}")
        self._calibration.reload()
        return RefitOutcome(
            stamp,
            self.labels,
            True,
            f"adopted: held-out AUROC {_auroc(result.after_auroc)} (against "
            f"{_auroc(result.before_auroc)} before), on labelled requests "
            f"{_auroc(result.after_traffic_auroc)} (against {_auroc(result.before_traffic_auroc)}"
            f"); {len(found.traffic)} labelled requests; saved to {path}",
            result.traffic_weight,
            result.word_weight,
            result.probe.meta() if result.probe is not None else None,
        )


def read_labelled(source: Path | str, sha256: str, labelled: LabelledScores) -> int:
    """Load a model's labelled requests from the ledger into the router's memory of them, as
    :class:`TrafficRefitter` does at each look, once (``hybrid route``, a process of its own).

    Args:
        source: The ledger file, or the shared ledger's database URL (``ledger.url``).
        sha256: The local model's GGUF SHA-256.
        labelled: The memory to load.

    Returns:
        How many labelled requests were loaded (0 when the ledger file does not exist yet).

    Raises:
        LedgerError: The ledger cannot be read.
    """
    from hybrid.ledger.store import LedgerStore
    from hybrid.routing.calibration.refit_examples import ledger_requests

    if isinstance(source, Path) and not source.is_file():
        return 0
    store = LedgerStore.open_source(source)
    try:
        rows = store.labelled(sha256)
    finally:
        store.close()
    requests = ledger_requests(rows)
    labelled.load(sha256, requests)
    return len(requests)


def _stored_bytes(home: Path, sha256: str) -> bytes | None:
    """The model's calibration file in the data dir as it is now (None: there is none)."""
    try:
        return model_path(home, sha256).read_bytes()
    except FileNotFoundError:
        return None


def _auroc(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
