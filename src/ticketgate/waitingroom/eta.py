"""The one ETA estimator: fans' status, the admin API and the metrics all call `estimate`.

A waiter's turn comes when the serving frontier reaches its place (admission.py), so the ETA
is arithmetic: the places between the waiter and the frontier, divided by the rate at which
the bucket releases capacity (plus what is left of the waiter's minimum wait).

The release rate is measured, not assumed: admissions in the last 1, 5 and 15 minutes
(weighted 0.5, 0.3, 0.2), each divided by the time its window really covers (a sale 30 s old
has no minute of history), and corrected by the change in unused capacity over the window:
the bucket starts full, so the first `capacity` admissions of a sale came out of the initial
fill, not out of the release, and would otherwise read as a burst rate. Until MIN_SAMPLES
admissions over MIN_SPAN_MS exist, the configured rate is used, with confidence 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ticketgate.waitingroom.admission import AdmissionPolicy, min_wait_ms
from ticketgate.waitingroom.model import AdmissionCounts, Frontier

WINDOWS_MS = (60_000, 300_000, 900_000)
WEIGHTS = (0.5, 0.3, 0.2)
MIN_SAMPLES = 20
MIN_SPAN_MS = 5_000
FULL_CONFIDENCE_SAMPLES = 100
MIN_POLL_MS = 1_000
TURN_POLL_MS = 100
MAX_POLL_MS = 30_000
SPREAD_STEPS = 8


class Estimate(NamedTuple):  # a tuple: one is made on every status call
    """`eta_ms` until the waiter may enter (0 = now) and `eta_sec`, the same in whole seconds
    (at least 1 while it is not 0); `rate_per_sec` is the measured release rate (0 before any
    admission) and `confidence` how far to trust it (0 while the configured rate is used)."""

    eta_sec: int
    eta_ms: int
    confidence: float
    rate_per_sec: float


def _window_rates(
    counts: AdmissionCounts, frontier: Frontier, capacity: int
) -> tuple[float, float, float]:
    """Release per second in the 1-, 5- and 15-minute windows (status's hot path: unrolled)."""
    covered = counts.covered_ms
    span = covered if covered > 1_000 else 1_000
    # The initial fill spent so far; held and lapsed earmarks were released but not admitted.
    # A window reaching back to the sale's first admission (the bucket was full then)
    # subtracts it; an older sale's windows start and end with about the same unused
    # capacity, so their admissions are the release.
    initial = capacity - frontier.tokens - frontier.held - frontier.lapsed
    if initial < 0.0:
        initial = 0.0
    m1, m5, m15 = WINDOWS_MS
    r1 = (counts.last_1m - initial if covered < m1 else counts.last_1m) * 1000.0 / min(m1, span)
    r5 = (counts.last_5m - initial if covered < m5 else counts.last_5m) * 1000.0 / min(m5, span)
    r15 = (
        (counts.last_15m - initial if covered < m15 else counts.last_15m) * 1000.0 / min(m15, span)
    )
    return (r1 if r1 > 0.0 else 0.0, r5 if r5 > 0.0 else 0.0, r15 if r15 > 0.0 else 0.0)


def release_rate(counts: AdmissionCounts, frontier: Frontier, capacity: int) -> float:
    """Measured capacity released per second (weighted windows); 0 before any admission."""
    if not counts.last_15m:
        return 0.0
    r1, r5, r15 = _window_rates(counts, frontier, capacity)
    w1, w5, w15 = WEIGHTS
    return w1 * r1 + w5 * r5 + w15 * r15


class Rate(NamedTuple):
    """The part of an estimate that is the same for every waiter of one event at one instant
    (`rate_of`): status keeps it per event state (WaitingRoom) instead of measuring it again
    for each fan. `per_sec` is what distances are divided by (the measured rate, or the
    configured one while the measurement is not trusted), `measured` and `confidence` as in
    Estimate."""

    per_sec: float
    measured: float
    confidence: float


def rate_of(policy: AdmissionPolicy, frontier: Frontier, counts: AdmissionCounts) -> Rate:
    """The release rate an estimate divides by; it reads only `counts`, the frontier's
    tokens, held and lapsed earmarks and the policy's capacity and refill (the key status
    caches it by)."""
    measured = confidence = 0.0
    rate = policy.refill_per_sec
    samples = counts.last_15m
    if samples:
        r1, r5, r15 = _window_rates(counts, frontier, policy.capacity)
        w1, w5, w15 = WEIGHTS
        measured = w1 * r1 + w5 * r5 + w15 * r15
        if samples >= MIN_SAMPLES and counts.covered_ms >= MIN_SPAN_MS and measured > 0.0:
            rate = measured
            high = r1 if r1 > r15 else r15
            agreement = (r15 if r1 > r15 else r1) / high if high > 0.0 else 0.0
            confidence = round(min(1.0, samples / FULL_CONFIDENCE_SAMPLES) * agreement, 2)
    return Rate(rate, measured, confidence)


def estimate(
    policy: AdmissionPolicy,
    frontier: Frontier,
    counts: AdmissionCounts,
    position: int,
    waited_ms: int | None = None,
    rate: Rate | None = None,
) -> Estimate:
    """ETA of the waiter at `position`; `waited_ms` (None: ignore) adds its minimum wait.
    `rate` is `rate_of(policy, frontier, counts)` when the caller kept it."""
    if rate is None:
        rate = rate_of(policy, frontier, counts)
    # policy.distance inline (every status estimates)
    distance = position - min(frontier.tokens + frontier.held, float(policy.window))
    eta_ms = math.ceil(distance * 1000.0 / rate.per_sec) if distance > 0.0 else 0
    if waited_ms is not None:
        needed = min_wait_ms(position, policy.min_wait) if position <= policy.min_wait_end else None
        if needed is not None and needed - waited_ms > eta_ms:
            eta_ms = needed - waited_ms
    if eta_ms <= 0:
        return Estimate(0, 0, rate.confidence, rate.measured)
    return Estimate(max(1, round(eta_ms / 1000)), eta_ms, rate.confidence, rate.measured)


def turn(
    policy: AdmissionPolicy, reach: float, rate_per_sec: float, position: int, waited_ms: int
) -> tuple[bool, int, int]:
    """What status asks of every waiting fan, in one pass: (whether an enter now would be
    granted, `estimate(...).eta_ms`, and the ms until every condition of the rule holds at
    the soonest: the lesser of `decide(...).wait_ms` and that ETA). `reach` is the
    frontier's, `rate_per_sec` the Rate's per_sec.

    The same arithmetic as AdmissionPolicy.decide and `estimate`, which stay the rule and the
    estimator everywhere else; asked one after the other they compute the distance and the
    minimum wait twice and build two tuples, on the call every waiting fan repeats.
    tests/unit/test_status_rates.py holds the three values to theirs."""
    window = policy.window
    # (comparisons, not min/max: a builtin call through an argument tuple, ~5 per status)
    door = float(window)
    distance = position - (door if door < reach else reach)
    if distance > 0.0:
        frontier_ms = math.ceil(distance / policy.refill_per_ms)
        eta_ms = math.ceil(distance * 1000.0 / rate_per_sec)
    else:
        frontier_ms = eta_ms = 0
    if position > policy.min_wait_end:  # past the last min-wait rule
        wait_ms = frontier_ms if frontier_ms > 1 else 1
        return False, eta_ms, wait_ms if wait_ms < eta_ms else eta_ms
    # a rule covers every position up to min_wait_end: never None here
    left = (min_wait_ms(position, policy.min_wait) or 0) - waited_ms
    if left > eta_ms:
        eta_ms = left
    granted = False
    if position > window or left > 0:
        wait_ms = frontier_ms if frontier_ms > left else left
        if wait_ms < 1:
            wait_ms = 1
    elif frontier_ms > 0:
        wait_ms = frontier_ms
    else:
        wait_ms, granted = 0, True
    return granted, eta_ms, wait_ms if wait_ms < eta_ms else eta_ms


GRACE_MARGIN_MS = 1_000


def poll_ceiling_ms(heartbeat_ttl_ms: int) -> int:
    """The longest a client is ever told to wait between polls."""
    return max(1, min(MAX_POLL_MS, heartbeat_ttl_ms // 4))


def entry_grace_ms(heartbeat_ttl_ms: int) -> int:
    """A waiter within the frontier unseen this long is not coming (its earmark is held,
    admission.py): it has missed the longest poll it can have been told to make, by a second.
    A shorter grace would hold fans whose turn came between two polls, and let the line pass
    them; a longer one lets absent fans fill the bucket longer."""
    return poll_ceiling_ms(heartbeat_ttl_ms) + GRACE_MARGIN_MS


_CEILINGS: dict[int, int] = {}


def poll_after_ms(ready: bool, turn_in_ms: int, heartbeat_ttl_ms: int, position: int = 0) -> int:
    """When the client should poll next: at the moment its turn comes.

    A ready waiter should enter now (and poll again in a second if it does not). Otherwise
    the next poll lands when the frontier reaches the waiter, never sooner than 100 ms, and
    never later than a quarter of the heartbeat TTL (an attentive client must not be swept as
    a ghost) or 30 s; far back that cap sets the pace, so 300k waiters poll at most every 30 s.
    Waiters who joined in the same burst would all poll at that cap in the same instant, so
    it is spread over its last quarter by position (SPREAD_STEPS steps).
    """
    # every status asks, with the one process setting: poll_ceiling_ms by TTL, kept
    ceiling = _CEILINGS.get(heartbeat_ttl_ms)
    if ceiling is None:
        if len(_CEILINGS) >= 64:
            _CEILINGS.clear()
        ceiling = _CEILINGS[heartbeat_ttl_ms] = poll_ceiling_ms(heartbeat_ttl_ms)
    if ready:
        return min(MIN_POLL_MS, ceiling)
    if turn_in_ms >= ceiling:
        return ceiling - ceiling * (position % SPREAD_STEPS) // (4 * SPREAD_STEPS)
    soonest = TURN_POLL_MS if ceiling > TURN_POLL_MS else ceiling
    return turn_in_ms if turn_in_ms > soonest else soonest
