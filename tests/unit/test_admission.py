"""The admission rule: window, min waits by position, and the serving frontier."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketgate.waitingroom.admission import (
    AdmissionPolicy,
    Bucket,
    Decision,
    min_wait_ms,
    refilled,
    stopped,
)
from ticketgate.waitingroom.model import EnterOutcome, EventOverrides, Frontier
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings

DEFAULT = QueueSettings()
POLICY = AdmissionPolicy.of(DEFAULT)  # window 100, capacity 500, 50/s
GRANTED, NOT_READY, THROTTLED = (
    EnterOutcome.GRANTED,
    EnterOutcome.NOT_READY,
    EnterOutcome.THROTTLED,
)


@pytest.mark.parametrize(
    ("position", "expected"),
    [(1, 0), (10, 0), (11, 2_000), (50, 2_000), (51, 5_000), (100, 5_000), (101, None)],
)
def test_default_min_waits_follow_the_design(position: int, expected: int | None) -> None:
    assert min_wait_ms(position, DEFAULT.min_wait) == expected


def test_no_rules_means_no_one_is_eligible() -> None:
    assert min_wait_ms(1, ()) is None
    assert AdmissionPolicy(10, (), 10, 1.0).decide(1, 10**9, 10.0).outcome is NOT_READY


@pytest.mark.parametrize(
    ("position", "waited", "tokens", "expected"),
    [
        (1, 0, 1.0, Decision(GRANTED, 0)),
        (1, 0, 0.999, Decision(THROTTLED, 1)),  # 0.001 of a place at 50/s: 0.02 ms, rounded up
        (1, 0, 0.0, Decision(THROTTLED, 20)),
        (3, 0, 2.0, Decision(THROTTLED, 20)),
        (3, 0, 3.5, Decision(GRANTED, 0)),
        (11, 1_500, 500.0, Decision(NOT_READY, 500)),  # min wait left, frontier already there
        (11, 0, 1.0, Decision(NOT_READY, 2_000)),  # frontier 200 ms away, min wait 2 s
        (11, 2_000, 1.0, Decision(THROTTLED, 200)),
        (100, 4_999, 500.0, Decision(NOT_READY, 1)),
        (101, 10**9, 500.0, Decision(NOT_READY, 20)),  # one place past the window
    ],
)
def test_decide(position: int, waited: int, tokens: float, expected: Decision) -> None:
    assert POLICY.decide(position, waited, tokens) == expected


def test_the_window_wins_over_wider_min_wait_rules_and_a_fuller_bucket() -> None:
    narrow = AdmissionPolicy(5, (MinWaitRule(100, 0),), 500, 50.0)
    assert narrow.decide(5, 0, 500.0).outcome is GRANTED
    assert narrow.decide(6, 0, 500.0).outcome is NOT_READY


def test_overrides_win_over_process_settings() -> None:
    overrides = EventOverrides(admission_window=7, bucket_capacity=3, bucket_refill_per_sec=2.5)
    policy = AdmissionPolicy.of(DEFAULT, overrides)
    assert (policy.window, policy.capacity, policy.refill_per_sec) == (7, 3, 2.5)
    assert policy.min_wait == DEFAULT.min_wait


def test_script_args_carry_the_policy_for_the_lua_scripts() -> None:
    policy = AdmissionPolicy(4, (MinWaitRule(1, 0), MinWaitRule(4, 300)), 9, 2.5)
    assert policy.script_args() == (4, 9, repr(0.0025), 1, 0, 4, 300)


def test_frontier_counts_released_used_and_earmarked() -> None:
    frontier = Frontier(tokens=2.75, used=40)
    assert (frontier.released, frontier.used, frontier.earmarked) == (42, 40, 2)


def test_refill_is_fractional_capped_and_ignores_a_clock_going_backwards() -> None:
    assert refilled(0.0, 0, 10, capacity=3, refill_per_ms=0.05) == pytest.approx(0.5)
    assert refilled(0.0, 0, 10**7, capacity=3, refill_per_ms=0.05) == 3
    assert refilled(1.0, 1_000, 500, capacity=3, refill_per_ms=0.05) == 1.0
    assert refilled(5.0, 0, 0, capacity=3, refill_per_ms=0.05) == 3, "a lowered capacity binds"


def test_a_bucket_never_written_is_full_and_a_written_one_refills() -> None:
    policy = AdmissionPolicy(window=10, min_wait=(), capacity=3, refill_per_sec=50.0)
    assert policy.frontier(None, 5_000, held=2) == Frontier(3.0, 0, 2, 0)
    written = Bucket(tokens=0.5, updated_ms=1_000, used=7, lapsed=1)
    assert policy.frontier(written, 1_010, held=0) == Frontier(1.0, 7, 0, 1)


def test_a_grant_draws_one_earmark_unless_the_waiter_brings_its_own() -> None:
    frontier = Frontier(tokens=2.5, used=4, held=1, lapsed=1)
    assert AdmissionPolicy.grant(frontier, 9, held=False) == Bucket(1.5, 9, 5, 1)
    assert AdmissionPolicy.grant(frontier, 9, held=True) == Bucket(2.5, 9, 5, 1)


def test_a_hold_takes_late_earmarks_out_and_lapses_the_swept_ones() -> None:
    frontier = Frontier(tokens=2.25, used=4, held=1, lapsed=0)
    assert AdmissionPolicy.hold(frontier, 9, late=2, lapsing=1) == Bucket(0.25, 9, 4, 1)


@given(st.integers(1, 200), st.integers(0, 10**7), st.floats(0, 500))
def test_eligibility_only_grows_with_time(position: int, waited: int, tokens: float) -> None:
    now = POLICY.decide(position, waited, tokens)
    later = POLICY.decide(
        position,
        waited + 1_000,
        refilled(tokens, 0, 1_000, POLICY.capacity, POLICY.refill_per_ms),
    )
    if now.outcome is GRANTED:
        assert later.outcome is GRANTED
    assert later.wait_ms <= now.wait_ms


@given(
    capacity=st.integers(1, 50),
    per_sec=st.floats(0.5, 500),
    steps=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 60)), max_size=200),
)
def test_the_wait_is_a_promise_and_grants_never_exceed_the_release(
    capacity: int, per_sec: float, steps: list[tuple[int, int]]
) -> None:
    """A waiter told `wait_ms` is granted at that time (nobody else acting), not 2 ms
    earlier; and grants stay within the initial fill plus the refill."""
    policy = AdmissionPolicy(60, (MinWaitRule(60, 0),), capacity, per_sec)
    tokens, updated, now, granted = float(capacity), 0, 0, 0
    for advance, position in steps:
        now += advance
        tokens = refilled(tokens, updated, now, capacity, policy.refill_per_ms)
        updated = now
        decision = policy.decide(position, 0, tokens)
        if decision.outcome is GRANTED:
            tokens -= 1
            granted += 1
            continue
        at = refilled(tokens, now, now + decision.wait_ms, capacity, policy.refill_per_ms)
        if position <= capacity:
            assert policy.decide(position, 0, at).outcome is GRANTED
        if decision.wait_ms > 2:
            early = refilled(
                tokens, now, now + decision.wait_ms - 2, capacity, policy.refill_per_ms
            )
            assert policy.decide(position, 0, early).outcome is not GRANTED
    assert granted <= capacity + math.floor(now * per_sec / 1000 + 1e-9)


def test_sold_out_stops_admissions_before_a_pause_does() -> None:
    assert stopped(EventOverrides()) is None
    assert stopped(EventOverrides(closed=True)) is None, "closed stops newcomers, not admissions"
    assert stopped(EventOverrides(paused=True)) is EnterOutcome.PAUSED
    assert stopped(EventOverrides(paused=True, sold_out=True)) is EnterOutcome.SOLD_OUT


@given(
    st.lists(st.builds(MinWaitRule, st.integers(0, 500), st.integers(0, 60_000)), max_size=5).map(
        tuple
    ),
    st.integers(-5, 600),
)
def test_past_min_wait_end_no_rule_applies(rules: tuple[MinWaitRule, ...], position: int) -> None:
    """decide and the ETA skip the rules past min_wait_end: only where none would apply."""
    policy = AdmissionPolicy(window=100, min_wait=rules, capacity=10, refill_per_sec=5.0)
    if position > policy.min_wait_end:
        assert min_wait_ms(position, rules) is None
