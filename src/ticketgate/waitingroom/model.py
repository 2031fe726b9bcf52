"""Values the waiting room hands between its service and its stores.

Stores return raw facts (rank, clock, admission counts); the service turns them into what a
client sees, so both stores share one interpretation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WaiterState(enum.IntEnum):
    """Where a waiting token stands; the integers are also what the Lua scripts return."""

    WAITING = 1
    ADMITTED = 2
    EXPIRED = 3


class EnterOutcome(enum.IntEnum):
    GRANTED = 1
    NOT_READY = 2
    THROTTLED = 3
    ALREADY_ADMITTED = 4
    EXPIRED = 5


class LeaveOutcome(enum.IntEnum):
    LEFT = 1
    NOT_WAITING = 2


class QueueError(Exception):
    """A domain refusal; `code` is one of the wire error codes of DESIGN.md §3."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, retry_after_sec: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_sec = retry_after_sec


class TokenNotFound(QueueError):
    code = "TOKEN_NOT_FOUND"


class TokenExpired(QueueError):
    code = "TOKEN_EXPIRED"


class NotReady(QueueError):
    code = "NOT_READY"


class AdmissionThrottled(QueueError):
    code = "ADMISSION_THROTTLED"


class AlreadyAdmitted(QueueError):
    code = "DUPLICATE_REQUEST"


class Forbidden(QueueError):
    code = "FORBIDDEN"


class QueueUnavailable(QueueError):
    """The store cannot be reached now; callers answer 503 with Retry-After."""

    code = "QUEUE_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class JoinResult:
    seq: int
    joined_ms: int
    position: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class AdmissionCounts:
    """Admissions of one event in the last 1, 5 and 15 minutes.

    `covered_ms` is the age of the oldest admission kept (at most 15 minutes), so a young
    on-sale divides by the time it has really run.
    """

    last_1m: int
    last_5m: int
    last_15m: int
    covered_ms: int


@dataclass(frozen=True, slots=True)
class StatusResult:
    state: WaiterState
    position: int
    now_ms: int
    counts: AdmissionCounts


@dataclass(frozen=True, slots=True)
class EnterResult:
    outcome: EnterOutcome
    position: int
    now_ms: int
    retry_after_ms: int = 0


@dataclass(frozen=True, slots=True)
class Admission:
    """What a granted enter gives the client."""

    reservation_token: str
    ttl_sec: int


@dataclass(frozen=True, slots=True)
class StatusView:
    """What a waiter sees on each poll."""

    status: str
    position: int
    eta_sec: int
    eta_confidence: float
    waiting_time: int
    ready_for_entry: bool
    poll_after_ms: int
