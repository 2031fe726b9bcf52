"""Estimated time to admission from sliding windows of recent admissions.

Rate = 0.5·r(1 min) + 0.3·r(5 min) + 0.2·r(15 min). Each window is divided by the time it
actually covers (an on-sale 40 s old has no 15-minute history), so early estimates are not
three times too pessimistic. No hour-of-day fudge: the data say how fast the door opens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ticketgate.waitingroom.model import AdmissionCounts

WINDOWS_MS = (60_000, 300_000, 900_000)
WEIGHTS = (0.5, 0.3, 0.2)
FULL_CONFIDENCE_SAMPLES = 100
MIN_POLL_MS = 1_000
MAX_POLL_MS = 30_000


@dataclass(frozen=True, slots=True)
class Estimate:
    eta_sec: int
    confidence: float
    rate_per_sec: float


def admission_rate(counts: AdmissionCounts, covered_ms: int) -> float:
    """Weighted admissions per second; `covered_ms` is the age of the oldest sample kept."""
    rate = 0.0
    for count, window_ms, weight in zip(
        (counts.last_1m, counts.last_5m, counts.last_15m), WINDOWS_MS, WEIGHTS, strict=True
    ):
        span_ms = min(window_ms, max(covered_ms, 1_000))
        rate += weight * count * 1000.0 / span_ms
    return rate


def estimate(
    position: int, counts: AdmissionCounts, covered_ms: int, nominal_rate: float
) -> Estimate:
    """ETA for `position`; falls back to the configured refill rate with confidence 0."""
    rate = admission_rate(counts, covered_ms) if counts.last_15m else 0.0
    if rate <= 0.0:
        eta = math.ceil(position / nominal_rate) if nominal_rate > 0 else 0
        return Estimate(eta_sec=eta, confidence=0.0, rate_per_sec=0.0)
    samples = min(1.0, counts.last_15m / FULL_CONFIDENCE_SAMPLES)
    short = counts.last_1m * 1000.0 / min(WINDOWS_MS[0], max(covered_ms, 1_000))
    long = counts.last_15m * 1000.0 / min(WINDOWS_MS[2], max(covered_ms, 1_000))
    agreement = min(short, long) / max(short, long) if max(short, long) > 0 else 0.0
    return Estimate(
        eta_sec=math.ceil(position / rate),
        confidence=round(samples * agreement, 2),
        rate_per_sec=rate,
    )


def poll_after_ms(position: int, eta_sec: int, admission_window: int, heartbeat_ttl_ms: int) -> int:
    """When the client should poll next: soon near the door, rarely far back.

    A tenth of the ETA keeps 300k waiters from becoming 150k req/s, and the cap at a quarter
    of the heartbeat TTL keeps an attentive client from being swept as a ghost; that cap
    wins over the one-second floor when the TTL is configured shorter than four seconds.
    """
    ceiling = max(1, min(MAX_POLL_MS, heartbeat_ttl_ms // 4))
    floor = min(MIN_POLL_MS, ceiling)
    if position <= admission_window:
        return floor
    return int(max(floor, min(ceiling, eta_sec * 100)))
