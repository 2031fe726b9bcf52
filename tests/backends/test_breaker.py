"""The circuit breaker's state machine, driven by an injected clock."""

from __future__ import annotations

import pytest

from ticketgate.backends.breaker import BreakerOpen, BreakerState, CircuitBreaker


def state(breaker: CircuitBreaker) -> BreakerState:
    """The state, read through a call so the type checker does not pin it between reads."""
    return breaker.state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("reservation", failures=3, reset_sec=5.0, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        probe = breaker.acquire()
        breaker.failure(probe)


def test_closed_breaker_lets_calls_through_without_probing(breaker: CircuitBreaker) -> None:
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.acquire() is False
    breaker.check()
    assert breaker.retry_after_sec() == 0.0


def test_opens_after_n_consecutive_failures_not_before(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED
    fail(breaker, 1)
    assert state(breaker) is BreakerState.OPEN
    with pytest.raises(BreakerOpen) as refused:
        breaker.acquire()
    assert refused.value.retry_after_sec == pytest.approx(5.0)
    with pytest.raises(BreakerOpen):
        breaker.check()


def test_a_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.success(breaker.acquire())
    fail(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED
    fail(breaker, 1)
    assert state(breaker) is BreakerState.OPEN


def test_retry_after_counts_down_with_the_clock(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 3.5
    with pytest.raises(BreakerOpen) as refused:
        breaker.acquire()
    assert refused.value.retry_after_sec == pytest.approx(1.5)


def test_after_the_reset_exactly_one_probe_is_let_through(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    fail(breaker, 3)
    clock.now += 5.0
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.check()  # checking does not take the probe slot
    assert breaker.acquire() is True
    with pytest.raises(BreakerOpen) as second:
        breaker.acquire()
    assert second.value.retry_after_sec == 1.0
    with pytest.raises(BreakerOpen):
        breaker.check()


def test_probe_success_closes(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 5.0
    breaker.success(breaker.acquire())
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.acquire() is False
    fail(breaker, 2)  # the count starts again from zero
    assert state(breaker) is BreakerState.CLOSED


def test_probe_failure_reopens_for_a_full_reset_period(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    fail(breaker, 3)
    clock.now += 6.0
    breaker.failure(breaker.acquire())
    assert state(breaker) is BreakerState.OPEN
    clock.now += 4.9
    with pytest.raises(BreakerOpen):
        breaker.acquire()
    clock.now += 0.1
    assert breaker.acquire() is True


def test_a_cancelled_probe_frees_the_slot(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 5.0
    breaker.release(breaker.acquire())
    assert breaker.acquire() is True


def test_late_failures_of_calls_admitted_before_opening_do_not_extend_it(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    admitted = [breaker.acquire() for _ in range(5)]
    for probe in admitted[:3]:
        breaker.failure(probe)
    assert state(breaker) is BreakerState.OPEN
    clock.now += 4.0
    for probe in admitted[3:]:
        breaker.failure(probe)
    clock.now += 1.0
    assert state(breaker) is BreakerState.HALF_OPEN


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="failures"):
        CircuitBreaker("x", failures=0, reset_sec=1)
    with pytest.raises(ValueError, match="reset_sec"):
        CircuitBreaker("x", failures=1, reset_sec=0)
