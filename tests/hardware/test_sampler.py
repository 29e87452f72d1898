"""LiveSampler with a fake read function; waits on events, never on the clock."""

from __future__ import annotations

import threading

import pytest

from hybrid.hardware.sampler import LiveSampler
from hybrid.hardware.snapshot import LiveSample

WAIT_S = 10.0  # a generous bound for a background thread to get scheduled, not a timing assert


def sample(n: int) -> LiveSample:
    return LiveSample(
        taken_at=float(n),
        cpu_percent=float(n),
        memory_available_bytes=1000 - n,
        memory_percent=10.0,
        gpu_utilization_percent=None,
        battery_percent=None,
        on_battery=None,
    )


class CountingRead:
    """Returns sample(1), sample(2), ...; sets ``reached`` once ``target`` reads happened."""

    def __init__(self, target: int, *, fail_after: int | None = None) -> None:
        self.calls = 0
        self.target = target
        self.fail_after = fail_after
        self.reached = threading.Event()

    def __call__(self) -> LiveSample:
        self.calls += 1
        if self.calls >= self.target:
            self.reached.set()
        if self.fail_after is not None and self.calls > self.fail_after:
            raise OSError("sensor went away")
        return sample(self.calls)


def test_start_takes_a_sample_before_returning() -> None:
    read = CountingRead(target=1)
    sampler = LiveSampler(read, interval_s=3600)
    sampler.start()
    try:
        assert sampler.latest() == sample(1)
    finally:
        sampler.stop()


def test_latest_follows_the_background_reads() -> None:
    read = CountingRead(target=4)
    with LiveSampler(read, interval_s=0.001) as sampler:
        assert read.reached.wait(WAIT_S)
        assert sampler.latest().cpu_percent >= 3


def test_stop_wakes_a_sleeping_sampler_at_once() -> None:
    # With an hour between reads, only the stop event can end the thread.
    sampler = LiveSampler(CountingRead(target=1), interval_s=3600)
    sampler.start()
    assert sampler.running

    sampler.stop()

    assert not sampler.running
    assert sampler.latest() == sample(1)  # the last sample stays readable


def test_failing_reads_keep_the_last_good_sample() -> None:
    read = CountingRead(target=3, fail_after=1)
    with LiveSampler(read, interval_s=0.001) as sampler:
        assert read.reached.wait(WAIT_S)
        assert sampler.latest() == sample(1)
        assert sampler.running


def test_latest_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        LiveSampler(CountingRead(target=1)).latest()


def test_first_read_failing_raises_from_start_without_a_thread() -> None:
    def broken() -> LiveSample:
        raise OSError("no /proc")

    sampler = LiveSampler(broken)
    with pytest.raises(OSError, match="no /proc"):
        sampler.start()
    assert not sampler.running


def test_sampler_can_be_restarted() -> None:
    read = CountingRead(target=1)
    sampler = LiveSampler(read, interval_s=3600)
    sampler.start()
    sampler.stop()
    sampler.start()
    try:
        assert sampler.running
        assert sampler.latest() == sample(2)
    finally:
        sampler.stop()


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        LiveSampler(CountingRead(target=1), interval_s=0)
