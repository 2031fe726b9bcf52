"""The one ETA estimator (distance to the frontier over the measured release rate) and the
poll hint that points at the waiter's turn."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketgate.waitingroom.admission import AdmissionPolicy
from ticketgate.waitingroom.eta import (
    MAX_POLL_MS,
    MIN_POLL_MS,
    MIN_SAMPLES,
    SPREAD_STEPS,
    TURN_POLL_MS,
    estimate,
    poll_after_ms,
    poll_ceiling_ms,
    release_rate,
)
from ticketgate.waitingroom.model import AdmissionCounts, Frontier
from ticketgate.waitingroom.settings import MinWaitRule

MINUTE = 60_000
NONE = AdmissionCounts(0, 0, 0, 0)
OPEN = (MinWaitRule(1_000, 0),)
FIVE = AdmissionPolicy(window=1_000, min_wait=OPEN, capacity=10, refill_per_sec=5.0)
EMPTY = Frontier(tokens=0.0, used=0)


def test_without_admissions_the_configured_rate_stands_in_with_no_confidence() -> None:
    guess = estimate(FIVE, EMPTY, NONE, 100)
    assert (guess.eta_ms, guess.eta_sec, guess.confidence, guess.rate_per_sec) == (
        20_000,
        20,
        0.0,
        0.0,
    )


def test_the_eta_is_the_distance_to_the_frontier() -> None:
    frontier = Frontier(tokens=3.0, used=0)
    assert estimate(FIVE, frontier, NONE, 10).eta_ms == 1_400, "7 places at 5/s"
    assert estimate(FIVE, frontier, NONE, 3).eta_ms == 0, "within the frontier: now"
    assert estimate(FIVE, Frontier(2.5, 0), NONE, 3).eta_sec == 1, "never 0 while not ready"


def test_the_minimum_wait_left_counts_when_longer() -> None:
    policy = AdmissionPolicy(100, (MinWaitRule(100, 5_000),), 10, 5.0)
    frontier = Frontier(tokens=10.0, used=0)
    assert estimate(policy, frontier, NONE, 4, waited_ms=1_000).eta_ms == 4_000
    assert estimate(policy, frontier, NONE, 4).eta_ms == 0, "None: the tail's ETA ignores it"


def test_a_steady_rate_reads_the_same_in_every_window() -> None:
    counts = AdmissionCounts(60, 300, 900, 15 * MINUTE)
    assert release_rate(counts, Frontier(5.0, 900), 10) == pytest.approx(1.0)


def test_a_young_sale_divides_by_the_time_it_really_ran() -> None:
    """The admin's old figure divided the last minute by 60 s on a 30-s-old sale."""
    counts = AdmissionCounts(150, 150, 150, 30_000)
    assert release_rate(counts, Frontier(1.0, 150), capacity=1) == pytest.approx(5.0)


def test_a_young_sale_does_not_read_the_initial_fill_as_release() -> None:
    # Capacity 10 spent at once, then 5/s for 20 s: 110 admissions, 2 places unused now.
    counts = AdmissionCounts(110, 110, 110, 20_000)
    assert release_rate(counts, Frontier(2.0, 110), capacity=10) == pytest.approx(102 / 20)


def test_the_measured_rate_wins_once_there_are_enough_samples() -> None:
    counts = AdmissionCounts(60, 300, 900, 15 * MINUTE)
    guess = estimate(FIVE, EMPTY, counts, 600)
    assert (guess.eta_sec, guess.confidence) == (600, 1.0)
    assert guess.rate_per_sec == pytest.approx(1.0)


def test_few_samples_keep_the_configured_rate() -> None:
    counts = AdmissionCounts(MIN_SAMPLES - 1, MIN_SAMPLES - 1, MIN_SAMPLES - 1, 60_000)
    guess = estimate(FIVE, Frontier(10.0, 19), counts, 60)
    assert (guess.eta_sec, guess.confidence) == (10, 0.0)
    assert guess.rate_per_sec > 0, "the measured rate is still reported"


def test_a_stall_in_the_last_minute_lowers_confidence() -> None:
    steady = AdmissionCounts(60, 300, 900, 15 * MINUTE)
    slowed = AdmissionCounts(30, 270, 870, 15 * MINUTE)
    stalled = AdmissionCounts(0, 240, 840, 15 * MINUTE)
    confidence = [estimate(FIVE, EMPTY, c, 10).confidence for c in (steady, slowed, stalled)]
    assert confidence[0] > confidence[1] > confidence[2] == 0.0
    assert estimate(FIVE, EMPTY, stalled, 10).eta_sec > 10


@given(
    st.integers(0, 10**6),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 15 * MINUTE),
    st.floats(0, 10),
)
def test_estimates_are_sane(
    position: int, c1: int, c5: int, c15: int, covered: int, tokens: float
) -> None:
    counts = AdmissionCounts(min(c1, c5, c15), min(c5, c15), c15, covered)
    frontier = Frontier(tokens, c15)
    guess = estimate(FIVE, frontier, counts, position)
    assert guess.eta_sec >= 0
    assert (guess.eta_sec == 0) == (guess.eta_ms == 0)
    assert 0.0 <= guess.confidence <= 1.0
    assert guess.rate_per_sec >= 0.0
    assert estimate(FIVE, frontier, counts, position + 1).eta_ms >= guess.eta_ms


def test_a_ready_waiter_polls_in_a_second_if_it_does_not_enter() -> None:
    assert poll_after_ms(True, 0, 300_000) == MIN_POLL_MS


@pytest.mark.parametrize(
    ("turn_in_ms", "expected"),
    [(0, TURN_POLL_MS), (40, TURN_POLL_MS), (1_400, 1_400), (29_999, 29_999), (10**7, MAX_POLL_MS)],
)
def test_a_waiter_polls_when_its_turn_comes(turn_in_ms: int, expected: int) -> None:
    assert poll_after_ms(False, turn_in_ms, 300_000) == expected


def test_poll_at_most_a_quarter_of_the_heartbeat_ttl() -> None:
    assert poll_after_ms(False, 60_000, 20_000) == 5_000


def test_far_waiters_spread_their_polls_over_the_last_quarter_of_the_cap() -> None:
    waits = {poll_after_ms(False, 10**6, 300_000, position) for position in range(1, 1_000)}
    assert min(waits) >= MAX_POLL_MS * 3 // 4
    assert max(waits) == MAX_POLL_MS
    assert len(waits) == SPREAD_STEPS


@pytest.mark.parametrize("ttl_ms", [40, 200, 399])
def test_a_short_heartbeat_ttl_shortens_even_the_minimum_poll(ttl_ms: int) -> None:
    assert poll_after_ms(False, 0, ttl_ms) == ttl_ms // 4
    assert poll_after_ms(True, 0, ttl_ms) == ttl_ms // 4


@given(st.booleans(), st.integers(0, 10**8), st.integers(4, 86_400_000), st.integers(0, 10**6))
def test_an_attentive_client_is_never_told_to_wait_past_its_ttl(
    ready: bool, turn_in_ms: int, ttl_ms: int, position: int
) -> None:
    wait = poll_after_ms(ready, turn_in_ms, ttl_ms, position)
    assert 1 <= wait <= ttl_ms // 4
    assert wait <= MAX_POLL_MS
    if not ready and turn_in_ms < ttl_ms // 4:
        assert wait <= max(turn_in_ms, TURN_POLL_MS), "never past the turn"


def test_the_kept_poll_ceiling_answers_as_the_rule_for_any_number_of_ttls() -> None:
    """poll_after_ms keeps poll_ceiling_ms per TTL (bounded): more TTLs than it keeps, asked
    twice, answer as the rule does."""
    for _ in range(2):
        for ttl_ms in range(1, 200_000, 1_000):
            assert poll_after_ms(True, 0, ttl_ms) == min(MIN_POLL_MS, poll_ceiling_ms(ttl_ms))
            assert poll_after_ms(False, 10**9, ttl_ms) == poll_ceiling_ms(ttl_ms)
