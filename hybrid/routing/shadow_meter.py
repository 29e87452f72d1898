"""What a local shadow answer spent, for its ledger leg.

A local shadow answer (:meth:`~hybrid.routing.shadow.Shadowing.offer_local`) runs on this
machine, so its cost is its electricity: a :class:`Meter` reads the clock, the process CPU time
and the GPUs' energy as it starts, and again when it ends or is stopped, into a
:class:`LocalShadowAnswer` that the receiver of the comparison records like a local answer's.
"""

from __future__ import annotations

from collections.abc import Callable
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
        latency_s: Seconds from its start (before its prompt was prepared) to its end,
            waiting for the low-priority lane included.
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


class Meter:
    """Reads the clock, the process CPU time and the GPUs' energy as a local shadow answer
    starts, and what it spent when it ends.

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
        self._started, self._cpu_started = perf(), cpu()
        self._gpu_started = gpu_energy()

    def read(
        self, model: str, prompt: int, completion: int, stopped: HybridError | None = None
    ) -> LocalShadowAnswer:
        """What the answer spent, until now.

        Args:
            model: The local model's id.
            prompt: Its prompt's tokens.
            completion: The tokens it generated.
            stopped: What stopped it before its end (a client request, a failure), if anything.
        """
        gpu = self._gpu_energy()
        gpu_joules = None
        if gpu is not None and self._gpu_started is not None:
            gpu_joules = max(gpu - self._gpu_started, 0.0)
        status: Literal["ok", "cancelled", "error"] = "ok"
        if stopped is not None:
            status = "cancelled" if isinstance(stopped, PreemptedError) else "error"
        return LocalShadowAnswer(
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_s=max(self._perf() - self._started, 0.0),
            cpu_s=max(self._cpu() - self._cpu_started, 0.0),
            gpu_joules=gpu_joules,
            status=status,
            error=str(stopped) if status == "error" else None,
            estimated=stopped is not None,
        )
