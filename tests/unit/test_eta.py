"""ETA from sliding admission windows, and the poll hint that paces clients."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketgate.waitingroom.eta import (
    MAX_POLL_MS,
    MIN_POLL_MS,
    admission_rate,
    estimate,
    poll_after_ms,
)
from ticketgate.waitingroom.model import AdmissionCounts

MINUTE = 60_000
NONE = AdmissionCounts(0, 0, 0, 0)


def test_a_steady_rate_reads_the_same_in_every_window() -> None:
    counts = AdmissionCounts(60, 300, 900, 15 * MINUTE)
    assert admission_rate(counts, counts.covered_ms) == pytest.approx(1.0)


def test_a_young_on_sale_divides_by_the_time_it_really_ran() -> None:
    counts = AdmissionCounts(60, 60, 60, MINUTE)
    assert admission_rate(counts, counts.covered_ms) == pytest.approx(1.0)


def test_a_single_fresh_admission_is_not_read_as_a_huge_rate() -> None:
    counts = AdmissionCounts(1, 1, 1, 10)
    assert admission_rate(counts, counts.covered_ms) == pytest.approx(1.0)


def test_windows_are_weighted_half_three_tenths_two_tenths() -> None:
    counts = AdmissionCounts(120, 300, 900, 15 * MINUTE)
    assert admission_rate(counts, counts.covered_ms) == pytest.approx(0.5 * 2 + 0.3 + 0.2)


def test_without_admissions_the_eta_uses_the_configured_rate_with_no_confidence() -> None:
    guess = estimate(100, NONE, 0, nominal_rate=50.0)
    assert (guess.eta_sec, guess.confidence, guess.rate_per_sec) == (2, 0.0, 0.0)


def test_without_admissions_or_nominal_rate_the_eta_is_zero() -> None:
    assert estimate(100, NONE, 0, nominal_rate=0.0).eta_sec == 0


@pytest.mark.parametrize(("position", "eta"), [(0, 0), (1, 1), (3, 2), (4, 2), (5, 3)])
def test_the_eta_rounds_up(position: int, eta: int) -> None:
    counts = AdmissionCounts(120, 600, 1_800, 15 * MINUTE)  # 2 per second everywhere
    assert estimate(position, counts, counts.covered_ms, nominal_rate=50.0).eta_sec == eta


def test_the_measured_rate_wins_over_the_nominal_one() -> None:
    counts = AdmissionCounts(60, 300, 900, 15 * MINUTE)
    guess = estimate(600, counts, counts.covered_ms, nominal_rate=50.0)
    assert guess.eta_sec == 600
    assert guess.rate_per_sec == pytest.approx(1.0)


def test_many_agreeing_samples_give_full_confidence() -> None:
    counts = AdmissionCounts(60, 300, 900, 15 * MINUTE)
    assert estimate(10, counts, counts.covered_ms, 50.0).confidence == 1.0


def test_few_samples_give_little_confidence() -> None:
    counts = AdmissionCounts(10, 10, 10, 10_000)
    assert estimate(10, counts, counts.covered_ms, 50.0).confidence == 0.1


def test_a_stall_in_the_last_minute_lowers_confidence() -> None:
    steady = AdmissionCounts(60, 300, 900, 15 * MINUTE)
    stalled = AdmissionCounts(0, 240, 840, 15 * MINUTE)
    slowed = AdmissionCounts(30, 270, 870, 15 * MINUTE)
    confidence = [estimate(10, c, c.covered_ms, 50.0).confidence for c in (steady, slowed, stalled)]
    assert confidence[0] > confidence[1] > confidence[2] == 0.0
    assert estimate(10, stalled, stalled.covered_ms, 50.0).eta_sec > 10


@given(
    st.integers(0, 10**6),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 15 * MINUTE),
)
def test_estimates_are_sane(position: int, c1: int, c5: int, c15: int, covered: int) -> None:
    counts = AdmissionCounts(min(c1, c5, c15), min(c5, c15), c15, covered)
    guess = estimate(position, counts, covered, nominal_rate=50.0)
    assert guess.eta_sec >= 0
    assert 0.0 <= guess.confidence <= 1.0
    assert guess.rate_per_sec >= 0.0
    farther = estimate(position + 1, counts, covered, nominal_rate=50.0)
    assert farther.eta_sec >= guess.eta_sec


def test_poll_soon_inside_the_window() -> None:
    assert poll_after_ms(1, 0, 100, 300_000) == MIN_POLL_MS
    assert poll_after_ms(100, 500, 100, 300_000) == MIN_POLL_MS


@pytest.mark.parametrize(
    ("eta_sec", "expected"),
    [(0, MIN_POLL_MS), (5, MIN_POLL_MS), (50, 5_000), (299, 29_900), (3_600, MAX_POLL_MS)],
)
def test_poll_a_tenth_of_the_eta_outside_the_window(eta_sec: int, expected: int) -> None:
    assert poll_after_ms(101, eta_sec, 100, 300_000) == expected


def test_poll_at_most_a_quarter_of_the_heartbeat_ttl() -> None:
    assert poll_after_ms(5_000, 3_600, 100, 20_000) == 5_000


@pytest.mark.parametrize("ttl_ms", [500, 1_000, 2_000, 3_999])
def test_a_short_heartbeat_ttl_shortens_even_the_minimum_poll(ttl_ms: int) -> None:
    assert poll_after_ms(1, 0, 100, ttl_ms) == ttl_ms // 4
    assert poll_after_ms(5_000, 3_600, 100, ttl_ms) == ttl_ms // 4


@given(
    st.integers(1, 10**6),
    st.integers(0, 10**6),
    st.integers(1, 100_000),
    st.integers(4, 86_400_000),
)
def test_an_attentive_client_is_never_told_to_wait_past_its_ttl(
    position: int, eta_sec: int, window: int, ttl_ms: int
) -> None:
    wait = poll_after_ms(position, eta_sec, window, ttl_ms)
    assert 1 <= wait <= ttl_ms // 4
    assert wait <= MAX_POLL_MS
    assert poll_after_ms(position, eta_sec + 10, window, ttl_ms) >= wait
