"""Admission rules: the window, min waits by position, and the fractional token bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketgate.config import MinWaitRule, QueueSettings
from ticketgate.waitingroom.admission import TokenBucket, eligible_in_ms, min_wait_ms

DEFAULT = QueueSettings()


@pytest.mark.parametrize(
    ("position", "expected"),
    [(1, 0), (10, 0), (11, 2_000), (50, 2_000), (51, 5_000), (100, 5_000), (101, None)],
)
def test_default_min_waits_follow_the_design(position: int, expected: int | None) -> None:
    assert min_wait_ms(position, DEFAULT.min_wait) == expected


def test_no_rules_means_no_one_is_eligible() -> None:
    assert min_wait_ms(1, ()) is None


@pytest.mark.parametrize(
    ("position", "waited", "expected"),
    [
        (1, 0, 0),
        (10, 0, 0),
        (11, 0, 2_000),
        (11, 1_500, 500),
        (11, 2_000, 0),
        (11, 60_000, 0),
        (100, 4_999, 1),
        (101, 10**9, None),
    ],
)
def test_eligible_in_ms(position: int, waited: int, expected: int | None) -> None:
    assert eligible_in_ms(position, waited, DEFAULT) == expected


def test_the_window_wins_over_wider_min_wait_rules() -> None:
    narrow = QueueSettings(admission_window=5, min_wait=(MinWaitRule(100, 0),), bypass_top=5)
    assert eligible_in_ms(5, 0, narrow) == 0
    assert eligible_in_ms(6, 0, narrow) is None


def test_positions_past_the_last_rule_are_never_eligible() -> None:
    gap = QueueSettings(admission_window=100, min_wait=(MinWaitRule(10, 0),))
    assert eligible_in_ms(11, 10**9, gap) is None


@given(st.integers(1, 200), st.integers(0, 10**7))
def test_eligibility_is_monotone_in_time_waited(position: int, waited: int) -> None:
    now = eligible_in_ms(position, waited, DEFAULT)
    later = eligible_in_ms(position, waited + 1_000, DEFAULT)
    if now is None:
        assert later is None
    else:
        assert later is not None
        assert later == max(0, now - 1_000)


def _bucket(capacity: float = 3, per_sec: float = 50.0, tokens: float | None = None) -> TokenBucket:
    return TokenBucket(
        capacity=capacity,
        refill_per_ms=per_sec / 1000,
        tokens=capacity if tokens is None else tokens,
        updated_ms=0,
    )


def test_a_full_bucket_serves_its_capacity_then_throttles() -> None:
    bucket = _bucket(capacity=3)
    assert [bucket.try_take(0) for _ in range(3)] == [0, 0, 0]
    assert bucket.try_take(0) == 21, "at 50/s the next token is due in 20 ms (+1 to land after)"


def test_refill_keeps_fractions() -> None:
    bucket = _bucket(capacity=1, tokens=0)
    assert bucket.try_take(10) == 11, "half a token refilled after 10 ms; 10 ms to go"
    assert bucket.tokens == pytest.approx(0.5)
    assert bucket.try_take(15) == 6
    assert bucket.try_take(20) == 0
    assert bucket.tokens == pytest.approx(0.0)


def test_refill_stops_at_capacity() -> None:
    bucket = _bucket(capacity=2, tokens=0)
    bucket.refill(10_000_000)
    assert bucket.tokens == 2
    assert [bucket.try_take(10_000_000) for _ in range(3)][:2] == [0, 0]


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket = _bucket(capacity=1, tokens=0)
    bucket.updated_ms = 1_000
    bucket.refill(500)
    assert (bucket.tokens, bucket.updated_ms) == (0, 1_000)


def test_borrowing_lets_the_top_through_an_empty_bucket_up_to_a_limit() -> None:
    bucket = _bucket(capacity=1, tokens=0)
    assert bucket.try_take(0) > 0, "no borrowing: an empty bucket throttles"
    assert [bucket.try_take(0, borrow=2) for _ in range(2)] == [0, 0]
    assert bucket.tokens == -2
    retry = bucket.try_take(0, borrow=2)
    assert retry == 21, "the debt must shrink by one token (20 ms at 50/s) first"
    assert bucket.try_take(retry, borrow=2) == 0
    assert bucket.try_take(retry, borrow=0) > 0, "without borrowing, the debt comes first"


@given(
    capacity=st.integers(1, 50),
    per_sec=st.floats(0.5, 500),
    borrow=st.integers(0, 10),
    steps=st.lists(st.tuples(st.integers(0, 200), st.booleans()), max_size=200),
)
def test_grants_never_exceed_capacity_plus_refill_plus_borrowing(
    capacity: int, per_sec: float, borrow: int, steps: list[tuple[int, bool]]
) -> None:
    bucket = _bucket(capacity=capacity, per_sec=per_sec)
    now = granted = 0
    for advance, at_top in steps:
        now += advance
        retry = bucket.try_take(now, borrow if at_top else 0)
        if retry == 0:
            granted += 1
        else:
            assert retry >= 1
            # The promise in `retry` holds: a take at that time succeeds.
            probe = TokenBucket(bucket.capacity, bucket.refill_per_ms, bucket.tokens, now)
            assert probe.try_take(now + retry, borrow if at_top else 0) == 0
            if retry > 1:
                probe = TokenBucket(bucket.capacity, bucket.refill_per_ms, bucket.tokens, now)
                assert probe.try_take(now + retry - 2, borrow if at_top else 0) > 0
    assert granted <= capacity + now * per_sec / 1000 + borrow + 1e-6
