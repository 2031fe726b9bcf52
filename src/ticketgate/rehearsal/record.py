"""What the fans saw, kept compactly enough for 20,000 of them (one record per fan, one
array of latencies per endpoint, per-second counters), for the analysis after the run."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field

# Answers that are part of a normal journey, per endpoint: everything else counts as an
# error (5xx, no answer, 429 RATE_LIMITED, a 4xx the journey never provokes).
EXPECTED: dict[str, frozenset[tuple[int, str]]] = {
    "signin": frozenset({(200, ""), (201, ""), (409, "USERNAME_TAKEN")}),
    "join": frozenset(
        {(202, ""), (409, "DUPLICATE_REQUEST"), (409, "QUEUE_CLOSED"), (409, "SOLD_OUT")}
    ),
    "status": frozenset({(200, "")}),
    "enter": frozenset(
        {
            (200, ""),
            (429, "ADMISSION_THROTTLED"),
            (409, "NOT_READY"),
            (409, "SOLD_OUT"),
            (503, "ADMISSIONS_PAUSED"),
        }
    ),
    "leave": frozenset({(200, "")}),
    "reserve": frozenset(
        {
            (201, ""),
            (409, "SEAT_UNAVAILABLE"),
            (409, "INSUFFICIENT_INVENTORY"),
            (409, "SEAT_LIMIT_EXCEEDED"),
        }
    ),
    "pay": frozenset({(200, "")}),
    "confirm": frozenset(
        {
            (200, ""),
            (412, "PAYMENT_NOT_APPROVED"),
            (409, "RESERVATION_NOT_HELD"),
            (410, "RESERVATION_EXPIRED"),
        }
    ),
    "reservation": frozenset({(200, "")}),
}
ENDPOINTS = tuple(EXPECTED)


def is_expected(endpoint: str, status: int, code: str) -> bool:
    return (status, "" if status < 300 else code) in EXPECTED[endpoint]


class Poll:
    """One status answer: when asked and answered (seconds since doors open), the place,
    the ETA shown (-1: none promised, e.g. while paused), readiness."""

    __slots__ = ("eta_sec", "position", "ready", "recv", "sent", "status")

    def __init__(
        self, sent: float, recv: float, status: str, position: int, eta_sec: int, ready: bool
    ) -> None:
        self.sent = sent
        self.recv = recv
        self.status = status
        self.position = position
        self.eta_sec = eta_sec
        self.ready = ready


class FanRecord:
    """One fan's journey. Times are seconds since doors opened (the rehearsal's clock)."""

    __slots__ = (
        "arrival",
        "disturbed",
        "failed_at",
        "grant_recv",
        "grant_sent",
        "join_recv",
        "join_sent",
        "kind",
        "n",
        "outcome",
        "payment",
        "polls",
        "position_hint",
        "probes",
        "quantity",
        "refusals",
        "reservation_id",
        "seats",
        "silent_at",
        "sold",
        "state",
        "user_id",
        "waiting_token",
    )

    def __init__(self, n: int, kind: str, arrival: float) -> None:
        self.n = n
        self.kind = kind  # "stay", "leave" or "ghost"
        self.arrival = arrival
        self.state = "arriving"
        self.outcome = ""
        self.join_sent = math.nan
        self.join_recv = math.nan
        self.position_hint = 0
        self.polls: list[Poll] = []
        # Enter answers that said "not now" (sent, recv, code).
        self.refusals: list[tuple[float, float, str]] = []
        self.grant_sent = math.nan
        self.grant_recv = math.nan
        self.silent_at = math.nan
        # Ghost probes: (seconds after TTL + sweep interval from silence, swept?).
        self.probes: list[tuple[float, bool]] = []
        self.quantity = 0
        self.payment = ""
        self.reservation_id = ""
        self.seats: tuple[str, ...] = ()
        self.sold = False
        self.disturbed = False  # saw an error answer: left out of the fairness comparison
        self.failed_at = math.nan  # when no answer came and the fan gave up (no_answer:*)
        self.user_id = ""
        # Kept so a harness can ask the gateway afterwards whether this token could enter
        # again (a double admission); never written to the report.
        self.waiting_token = ""

    @property
    def joined(self) -> bool:
        return not math.isnan(self.join_recv)

    @property
    def granted(self) -> bool:
        return not math.isnan(self.grant_recv)


@dataclass
class Stats:
    """Per-request facts, aggregated as they arrive."""

    latency_ms: dict[str, array[float]] = field(
        default_factory=lambda: {name: array("d") for name in ENDPOINTS}
    )
    answers: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    requests_per_sec: array[int] = field(default_factory=lambda: array("l"))
    errors_per_sec: array[int] = field(default_factory=lambda: array("l"))
    grants_per_sec: array[int] = field(default_factory=lambda: array("l"))
    lag_ms: array[float] = field(default_factory=lambda: array("d"))
    lag_max_per_sec: array[float] = field(default_factory=lambda: array("d"))
    gc_full_ms: array[float] = field(default_factory=lambda: array("d"))
    recent_errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    errors: int = 0

    @staticmethod
    def _bump(series: array[int], second: int) -> None:
        if second < 0:
            second = 0
        while len(series) <= second:
            series.append(0)
        series[second] += 1

    def request(self, endpoint: str, t: float, latency_s: float, status: int, code: str) -> bool:
        """Record one answer (status 0 = none, `code` the transport failure); True when it is
        an error."""
        self.latency_ms[endpoint].append(latency_s * 1000.0)
        self.answers[(endpoint, status, code)] += 1
        self.requests += 1
        second = int(t)
        self._bump(self.requests_per_sec, second)
        error = status == 0 or not is_expected(endpoint, status, code)
        if error:
            self.errors += 1
            self._bump(self.errors_per_sec, second)
            self.recent_errors[f"{endpoint} {status or ''} {code}".replace("  ", " ")] += 1
        return error

    def grant(self, t: float) -> None:
        self._bump(self.grants_per_sec, int(t))

    def lag(self, t: float, lag_ms: float) -> None:
        self.lag_ms.append(lag_ms)
        second = max(0, int(t))
        while len(self.lag_max_per_sec) <= second:
            self.lag_max_per_sec.append(0.0)
        if lag_ms > self.lag_max_per_sec[second]:
            self.lag_max_per_sec[second] = lag_ms
