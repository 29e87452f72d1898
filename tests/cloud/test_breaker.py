from __future__ import annotations

from cloud_fakes import FakeClock

from hybrid.cloud.breaker import CircuitBreaker


def breaker(clock: FakeClock, failures: int = 3) -> CircuitBreaker:
    return CircuitBreaker(failures=failures, reset_s=30.0, clock=clock)


def test_opens_after_the_threshold_of_consecutive_failures() -> None:
    clock = FakeClock()
    circuit = breaker(clock)
    for _ in range(2):
        assert circuit.allow()
        circuit.record_failure()
    assert circuit.state == "closed"
    assert circuit.allow()
    circuit.record_failure()
    assert circuit.state == "open"
    assert not circuit.allow()
    assert circuit.snapshot() == {
        "state": "open",
        "consecutive_failures": 3,
        "retry_in_s": 30.0,
        "rate_limited": False,
    }


def test_a_success_resets_the_count() -> None:
    circuit = breaker(FakeClock())
    circuit.record_failure()
    circuit.record_failure()
    circuit.record_success()
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state == "closed"
    assert circuit.consecutive_failures == 2


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.record_failure()
    clock.now += 29.0
    assert not circuit.allow()
    assert circuit.snapshot()["retry_in_s"] == 1.0
    clock.now += 1.0
    assert circuit.state == "half_open"
    assert circuit.allow()
    assert not circuit.allow(), "a second request must wait for the probe's outcome"
    circuit.record_success()
    assert circuit.state == "closed"
    assert circuit.allow() and circuit.allow()
    assert circuit.snapshot() == {
        "state": "closed",
        "consecutive_failures": 0,
        "retry_in_s": None,
        "rate_limited": False,
    }


def test_a_failed_probe_opens_the_circuit_for_another_period() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.record_failure()
    clock.now += 30.0
    assert circuit.allow()
    circuit.record_failure()
    assert circuit.state == "open"
    clock.now += 29.0
    assert not circuit.allow()
    clock.now += 1.0
    assert circuit.allow()


def test_a_released_probe_frees_the_slot_without_a_verdict() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.record_failure()
    clock.now += 30.0
    assert circuit.allow()
    circuit.release()
    assert circuit.state == "half_open"
    assert circuit.allow()


def test_a_probe_that_never_reports_does_not_shut_the_circuit_forever() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.record_failure()
    clock.now += 30.0
    assert circuit.allow()
    clock.now += 10.0
    assert not circuit.allow()
    clock.now += 20.0
    assert circuit.allow()


def test_a_late_success_from_before_the_circuit_opened_does_not_close_it() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.record_failure()
    circuit.record_success()
    assert circuit.state == "open"
    assert not circuit.allow()


def test_a_longer_wait_the_provider_asked_for_keeps_the_circuit_open_until_it_passes() -> None:
    # Rate limited with "Retry-After: 120": a probe after reset_s (30 s) would be refused.
    clock = FakeClock()
    circuit = breaker(clock, failures=2)
    circuit.record_failure(wait_s=120.0)
    clock.now += 1.0
    circuit.record_failure(wait_s=120.0)
    assert circuit.snapshot()["retry_in_s"] == 120.0
    clock.now += 30.0
    assert circuit.state == "open"
    assert not circuit.allow()
    assert circuit.retry_in_s() == 90.0
    clock.now += 90.0
    assert circuit.state == "half_open"
    assert circuit.allow()


def test_an_earlier_failures_longer_wait_still_holds_when_the_circuit_opens() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=2)
    circuit.record_failure(wait_s=100.0)
    clock.now += 10.0
    circuit.record_failure()  # a timeout says no wait: the 90 s left of the 100 s still hold
    assert circuit.retry_in_s() == 90.0


def test_a_shorter_wait_than_the_reset_leaves_the_reset() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.record_failure(wait_s=5.0)
    assert circuit.retry_in_s() == 30.0
    clock.now += 30.0
    assert circuit.allow()


def test_a_probe_refused_with_a_long_wait_keeps_the_circuit_open_that_long() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.record_failure()
    clock.now += 30.0
    assert circuit.allow()
    circuit.record_failure(wait_s=60.0)
    clock.now += 59.0
    assert not circuit.allow()
    assert circuit.retry_in_s() == 1.0
    clock.now += 1.0
    assert circuit.allow()


def test_a_success_forgets_the_waits_asked_before_it() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=2)
    circuit.record_failure(wait_s=300.0)
    circuit.record_success()
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.retry_in_s() == 30.0


def test_a_circuit_rate_limits_opened_says_so_until_a_success_closes_it() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=2)
    circuit.record_failure(wait_s=60.0, rate_limited=True)
    assert not circuit.opened_by_rate_limits, "still closed"
    circuit.record_failure(wait_s=60.0, rate_limited=True)
    assert circuit.state == "open" and circuit.opened_by_rate_limits
    assert circuit.snapshot()["rate_limited"], "/health says why it is open"
    clock.now += 60.0
    assert circuit.allow()
    assert circuit.opened_by_rate_limits, "half-open, its probe in flight"
    circuit.record_success()
    assert circuit.state == "closed" and not circuit.opened_by_rate_limits


def test_a_circuit_a_mix_of_failures_opened_is_not_rate_limited() -> None:
    circuit = breaker(FakeClock(), failures=3)
    circuit.record_failure(wait_s=60.0, rate_limited=True)
    circuit.record_failure()  # a timeout
    circuit.record_failure(wait_s=60.0, rate_limited=True)
    assert circuit.state == "open"
    assert not circuit.opened_by_rate_limits


def test_a_failure_before_the_last_success_does_not_mix_into_the_next_opening() -> None:
    circuit = breaker(FakeClock(), failures=2)
    circuit.record_failure()
    circuit.record_success()
    circuit.record_failure(rate_limited=True)
    circuit.record_failure(rate_limited=True)
    assert circuit.opened_by_rate_limits


def test_the_failed_probe_that_reopens_the_circuit_says_whether_it_is_rate_limited() -> None:
    clock = FakeClock()
    circuit = breaker(clock, failures=1)
    circuit.record_failure()  # a 5xx opens it
    assert not circuit.opened_by_rate_limits
    clock.now += 30.0
    assert circuit.allow()
    circuit.record_failure(wait_s=10.0, rate_limited=True)  # the probe is rate limited
    assert circuit.state == "open" and circuit.opened_by_rate_limits
    clock.now += 30.0
    assert circuit.allow()
    circuit.record_failure()  # the next probe times out
    assert circuit.state == "open" and not circuit.opened_by_rate_limits
