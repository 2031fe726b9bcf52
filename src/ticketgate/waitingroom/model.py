"""Values the waiting room hands between its service and its stores.

Stores return raw facts (rank, clock, admission counts); the service turns them into what a
client sees, so both stores share one interpretation.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec


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
    PAUSED = 6  # an operator paused this event's admissions
    USER_ADMITTED = 7  # this user was already admitted to this event (with another token)
    SOLD_OUT = 8  # the event is sold out: nobody is admitted


class EventState(enum.Enum):
    """The event as a waiter sees it in status. When several flags are set the one that
    matters most to a waiter wins: sold out (nothing left to wait for), then paused (nobody
    is admitted now), then closed (no newcomers, but those inside still go through)."""

    OPEN = "open"
    PAUSED = "paused"
    CLOSED = "closed"
    SOLD_OUT = "sold_out"

    @classmethod
    def of(cls, *, paused: bool, closed: bool, sold_out: bool) -> EventState:
        if sold_out:
            return cls.SOLD_OUT
        if paused:
            return cls.PAUSED
        return cls.CLOSED if closed else cls.OPEN


class ClaimOutcome(enum.IntEnum):
    """A reservation attempt's claim on the reservation armed by enter (the single-use token).

    The claim is a lease: one attempt at a time, and it lapses by itself if the gateway dies
    mid-attempt. Only an attempt that held seats uses the reservation up; a refused or failed
    one gives it back, usable until its own expiry.
    """

    GONE = 0  # used, expired, never armed, or another user's
    CLAIMED = 1  # this attempt holds the lease and must settle it
    BUSY = 2  # another attempt with the same reservation holds the lease now


class LeaveOutcome(enum.IntEnum):
    LEFT = 1
    NOT_WAITING = 2


class QueueError(Exception):
    """A domain refusal; `code` is one of the public API's wire error codes (README)."""

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
    """This waiting token was admitted already (a repeated enter)."""

    code = "DUPLICATE_REQUEST"


class UserAlreadyAdmitted(QueueError):
    """One person, one admission per event: this user was admitted to the event already,
    with another waiting token (or is signed in and joins again after an admission)."""

    code = "ALREADY_ADMITTED"


class SoldOut(QueueError):
    """The event is sold out: new joins and enters are refused; waiters see it in status."""

    code = "SOLD_OUT"


class EventNotFound(QueueError):
    """The event is not registered and QUEUE_AUTO_CREATE_EVENTS is off."""

    code = "EVENT_NOT_FOUND"


class EventExists(QueueError):
    """An operator registers an event that is registered already."""

    code = "EVENT_EXISTS"


class Registration(enum.Enum):
    """Which events a store's `configure` may change."""

    ANY = "any"  # whether registered or not (QUEUE_AUTO_CREATE_EVENTS=true)
    REGISTERED = "registered"  # registered ones only, else EventNotFound
    CREATE = "create"  # register it now, else EventExists


class Forbidden(QueueError):
    code = "FORBIDDEN"


class QueueClosed(QueueError):
    """An operator closed the event's queue: nobody new may join; those inside keep going."""

    code = "QUEUE_CLOSED"


class AdmissionsPaused(QueueError):
    """An operator paused the event's admissions; waiters keep their places meanwhile."""

    code = "ADMISSIONS_PAUSED"


class InvalidSetting(QueueError):
    """An operator asked for a value outside its range; the message names the field."""

    code = "INVALID_REQUEST"


class QueueUnavailable(QueueError):
    """The store cannot be reached now; callers answer 503 with Retry-After."""

    code = "QUEUE_UNAVAILABLE"


class Value(msgspec.Struct, frozen=True, gc=False):
    """The values made on every join and status call. A Struct is built in C (~60 ns, where
    a NamedTuple's Python-level __new__ takes ~210 ns and a frozen dataclass ~1.3 µs),
    compares and hashes by its fields, and holds no reference cycle (so gc=False)."""


class JoinResult(Value, frozen=True):
    seq: int
    joined_ms: int
    position: int
    duplicate: bool


class AdmissionCounts(Value, frozen=True):
    """Admissions of one event in the last 1, 5 and 15 minutes.

    `covered_ms` is the age of the oldest admission kept (at most 15 minutes), so a young
    on-sale divides by the time it has really run.
    """

    last_1m: int
    last_5m: int
    last_15m: int
    covered_ms: int


class Frontier(Value, frozen=True):
    """The serving frontier of one event at one instant.

    `tokens` is the released, unused capacity in the bucket (fractional while it refills);
    `held` the earmarks taken out of the bucket by waiters who did not come within the entry
    grace (they stand first in line and keep them until they enter or are swept); `used`
    every admission granted; `lapsed` the held earmarks whose waiters were swept. Positions
    1..`earmarked` may enter now; `released` is everything the bucket has let through.
    """

    tokens: float
    used: int
    held: int = 0
    lapsed: int = 0

    @property
    def reach(self) -> float:
        """How far down the line the frontier reaches (fractional)."""
        return self.tokens + self.held

    @property
    def earmarked(self) -> int:
        return max(0, int(self.tokens)) + self.held

    @property
    def released(self) -> int:
        return self.used + self.earmarked + self.lapsed


class StatusResult(Value, frozen=True):
    """`admission_window`, `capacity`, `refill_per_sec` and `event_state` are the event's
    effective settings (operator override, else the process settings) and `frontier` its
    serving frontier, all read in the same store step as the waiter's place."""

    state: WaiterState
    position: int
    now_ms: int
    counts: AdmissionCounts
    admission_window: int
    refill_per_sec: float
    frontier: Frontier
    capacity: int
    event_state: EventState = EventState.OPEN


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


class StatusView(Value, frozen=True):
    """What a waiter sees on each poll; `frontier` is the event's, so a client can see its
    distance to the door (position - frontier.earmarked). `eta_sec` is None when no ETA can
    be promised: the event is paused or sold out (`event_state` says which)."""

    status: str
    position: int
    eta_sec: int | None
    eta_confidence: float
    waiting_time: int
    ready_for_entry: bool
    poll_after_ms: int
    frontier: Frontier
    event_state: EventState = EventState.OPEN


# Field names of an event's runtime overrides as the stores keep them (a Redis HASH
# `tg:{event_id}:cfg`, a dict in memory). An absent field means "the process setting".
# `soldout` is a flag like `paused`: set by an operator today, by an inventory watcher later
# (anything that can call EventAdmin.update), read by join, status and enter in their step.
OVERRIDE_FIELDS = ("window", "capacity", "refill", "paused", "closed", "soldout")
# Set (to the registration time in ms) when an operator registers the event; the same HASH,
# so join reads it in its own step (QUEUE_AUTO_CREATE_EVENTS=false refuses other events).
REGISTERED_FIELD = "registered"


@dataclass(frozen=True, slots=True)
class EventOverrides:
    """What an operator changed for one event at runtime; None = the process setting."""

    admission_window: int | None = None
    bucket_capacity: int | None = None
    bucket_refill_per_sec: float | None = None
    paused: bool = False
    closed: bool = False
    sold_out: bool = False

    @classmethod
    def from_raw(cls, values: Sequence[str | None]) -> EventOverrides:
        """Decode the stores' raw field values, in OVERRIDE_FIELDS order ('' or None = unset)."""
        window, capacity, refill, paused, closed, sold_out = (v or None for v in values)
        return cls(
            admission_window=int(window) if window else None,
            bucket_capacity=int(capacity) if capacity else None,
            bucket_refill_per_sec=float(refill) if refill else None,
            paused=paused == "1",
            closed=closed == "1",
            sold_out=sold_out == "1",
        )

    @property
    def state(self) -> EventState:
        return EventState.of(paused=self.paused, closed=self.closed, sold_out=self.sold_out)


@dataclass(frozen=True, slots=True)
class EventStats:
    """One event as the operator sees it, read in one store step.

    `head_joined_ms` is when the head waiter joined, to within MARK_EVERY joins (the stores
    note the join time of every MARK_EVERY-th waiter only, not of each); 0 when nobody waits.
    """

    waiting: int
    now_ms: int
    counts: AdmissionCounts
    head_joined_ms: int
    overrides: EventOverrides
    frontier: Frontier
    registered: bool = False  # an operator registered it (POST /api/v1/admin/events)


# The stores remember the join time of every MARK_EVERY-th seq (1, 33, 65, ...): enough to
# age the head of the queue without a per-waiter timestamp (memory per waiter matters).
MARK_EVERY = 32
