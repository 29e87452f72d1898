"""``LiveSampler``: keeps a fresh :class:`LiveSample` that other parts read without blocking.

A daemon thread calls the read function about once per ``interval_s`` and swaps the result in;
:meth:`LiveSampler.latest` only returns the last one, so route handlers and the metrics endpoint
never wait on psutil or NVML.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from hybrid.hardware.snapshot import LiveSample

# How long stop() waits for a read in flight; the thread is a daemon, so a read stuck in a
# driver cannot hold up interpreter exit beyond this.
STOP_TIMEOUT_S = 5.0


class LiveSampler:
    """Samples the machine in the background at a fixed interval.

    Usage::

        sampler = LiveSampler(probe.sample)
        sampler.start()          # takes the first sample before returning
        sampler.latest()         # never blocks
        sampler.stop()

    A read that raises after start is logged (once per run of failures) and the previous
    sample is kept, so ``latest()`` goes stale rather than failing.
    """

    def __init__(self, read: Callable[[], LiveSample], *, interval_s: float = 1.0) -> None:
        """Create a stopped sampler.

        Args:
            read: Takes one sample; should be cheap and non-blocking (``HardwareProbe.sample``).
            interval_s: Seconds between samples.

        Raises:
            ValueError: ``interval_s`` is not positive.
        """
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._read = read
        self._interval_s = interval_s
        self._latest: LiveSample | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Take one sample now, then keep sampling in a daemon thread.

        Calling it while running does nothing.

        Raises:
            Exception: Whatever the first read raises; the thread is not started then.
        """
        if self.running:
            return
        self._latest = self._read()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stopping,), name="hybrid-live-sampler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait (at most :data:`STOP_TIMEOUT_S`) for the thread to end.

        ``latest()`` keeps returning the last sample.  Calling it when stopped does nothing.
        If a read is stuck past the timeout, ``running`` stays True.
        """
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout=STOP_TIMEOUT_S)
        if thread.is_alive():
            # A read stuck in a driver: leave the daemon thread to die with the process, and
            # keep it visible through `running` rather than pretend it stopped.
            logging.getLogger(__name__).warning(
                "the live hardware sampler did not stop within %.0f s", STOP_TIMEOUT_S
            )
            return
        self._thread = None

    def latest(self) -> LiveSample:
        """Return the most recent sample without blocking.

        Raises:
            RuntimeError: ``start()`` was never called, so there is no sample yet.
        """
        sample = self._latest
        if sample is None:
            raise RuntimeError("LiveSampler.latest() called before start(): no sample yet")
        return sample

    def latest_or_none(self) -> LiveSample | None:
        """The most recent sample, or None before the first one."""
        return self._latest

    def __enter__(self) -> LiveSampler:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, stopping: threading.Event) -> None:
        failing = False
        # Event.wait doubles as the sleep, so stop() wakes the thread at once.
        while not stopping.wait(self._interval_s):
            try:
                sample = self._read()
            except Exception:
                if not failing:
                    logging.getLogger(__name__).exception(
                        "live hardware sample failed; keeping the previous one"
                    )
                failing = True
                continue
            failing = False
            # Rebinding one attribute is atomic, so readers see the old sample or the new one.
            self._latest = sample
