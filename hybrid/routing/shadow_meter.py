"""What a local shadow answer spent, for its ledger leg.

A local shadow answer (:meth:`~hybrid.routing.shadow.Shadowing.offer_local`) runs on this
machine, so its cost is its electricity.  A :class:`Meter` reads the clock, the process CPU
time and the GPUs' energy only while the local model works on it: the local backend enters
:meth:`Meter.running` on its worker thread as each of the answer's jobs starts on the model's
low-priority lane (after its wait there, while client requests ran) and leaves it as the job
ends or is stopped.  An answer that reads its prompt's vector first takes two such jobs (the
prefill, then the answer that reuses it), and the meter adds them up; the time between them,
when client requests may use the model, is left out.  :meth:`Meter.read` turns the total into
a :class:`LocalShadowAnswer` that the receiver of the comparison records like a local answer's.

The process CPU time still counts every thread of the process while a job runs: a client
request decoding beside it in another slot (``local.parallel`` above 1) and whatever else the
server does meanwhile are counted in (the README says so, where the leg is described).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from hybrid.errors import HybridError, PreemptedError


@dataclass(frozen=True)
class LocalShadowAnswer:
    """One local shadow answer, for the ledger: what the local model spent on it.

    Attributes:
        model: The local model's id.
        prompt_tokens: Its prompt's tokens.
        completion_tokens: Tokens it generated (until it stopped, for one stopped early).
        latency_s: Seconds the local model worked on it: from the start of each of its jobs
            on the low-priority lane to its end, its waits for the lane left out.
        cpu_s: Process CPU seconds over that time.
        gpu_joules: The GPUs' energy over that time, None without an energy counter.
        status: ``ok`` (it ended: an empty answer, or one cut at its cap, too),
            ``cancelled`` (a client request needed its slot and stopped it) or ``error``.
        error: Why it failed, for ``status="error"``.
        estimated: The token counts were read from its events, not reported by its end (it
            stopped early).
    """

    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cpu_s: float
    gpu_joules: float | None
    status: Literal["ok", "cancelled", "error"] = "ok"
    error: str | None = None
    estimated: bool = False


@dataclass(frozen=True)
class _Reading:
    """The clock, the process CPU time and the GPUs' energy counter at one moment."""

    perf: float
    cpu: float
    gpu: float | None


class Meter:
    """Adds up the clock, the process CPU time and the GPUs' energy across the jobs the local
    model runs for one local shadow answer (see the module docstring).

    Args:
        perf: Monotonic seconds.
        cpu: Process CPU seconds.
        gpu_energy: The GPUs' energy counter in joules (None without one).
    """

    def __init__(
        self,
        perf: Callable[[], float],
        cpu: Callable[[], float],
        gpu_energy: Callable[[], float | None],
    ) -> None:
        self._perf, self._cpu, self._gpu_energy = perf, cpu, gpu_energy
        # Entered on the local model's worker thread, read on the event loop.
        self._lock = threading.Lock()
        self._seconds = self._cpu_s = 0.0
        self._gpu_joules: float | None = 0.0
        self._since: _Reading | None = None
        self._jobs = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        """Meter the time inside: the local backend enters it on its worker thread as a job of
        the answer starts on the model, and leaves it as the job ends or is stopped."""
        started = self._now()
        with self._lock:
            self._since = started
            self._jobs += 1
        try:
            yield
        finally:
            ended = self._now()
            with self._lock:
                self._since = None
                self._add(started, ended)

    def read(
        self, model: str, prompt: int, completion: int, stopped: HybridError | None = None
    ) -> LocalShadowAnswer:
        """What the answer spent, until now (a job still running counts until now).

        Args:
            model: The local model's id.
            prompt: Its prompt's tokens.
            completion: The tokens it generated.
            stopped: What stopped it before its end (a client request, a failure), if anything.
        """
        now = self._now()
        with self._lock:
            seconds, cpu_s, gpu_joules = self._seconds, self._cpu_s, self._gpu_joules
            if self._since is not None:
                seconds += max(now.perf - self._since.perf, 0.0)
                cpu_s += max(now.cpu - self._since.cpu, 0.0)
                gpu_joules = _joules(gpu_joules, self._since, now)
            elif self._jobs == 0 and now.gpu is None:
                gpu_joules = None  # no energy counter (and nothing ran)
        status: Literal["ok", "cancelled", "error"] = "ok"
        if stopped is not None:
            status = "cancelled" if isinstance(stopped, PreemptedError) else "error"
        return LocalShadowAnswer(
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_s=seconds,
            cpu_s=cpu_s,
            gpu_joules=gpu_joules,
            status=status,
            error=str(stopped) if status == "error" else None,
            estimated=stopped is not None,
        )

    def _now(self) -> _Reading:
        return _Reading(self._perf(), self._cpu(), self._gpu_energy())

    def _add(self, started: _Reading, ended: _Reading) -> None:
        self._seconds += max(ended.perf - started.perf, 0.0)
        self._cpu_s += max(ended.cpu - started.cpu, 0.0)
        self._gpu_joules = _joules(self._gpu_joules, started, ended)


def _joules(total: float | None, started: _Reading, ended: _Reading) -> float | None:
    """``total`` plus the GPUs' energy between two readings; None once a reading had none."""
    if total is None or started.gpu is None or ended.gpu is None:
        return None
    return total + max(ended.gpu - started.gpu, 0.0)
