"""In-process queue store: the embedded default when no Redis is configured.

Same semantics as the Redis store (the contract suite runs against both). Each method runs
to completion without awaiting, which makes it atomic on one event loop; that is also why it
refuses to serve more than one worker process.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from sortedcontainers import SortedKeyList, SortedList

from ticketgate.waitingroom.admission import HELD_OFFSET, AdmissionPolicy, Bucket, stopped
from ticketgate.waitingroom.eta import WINDOWS_MS, entry_grace_ms
from ticketgate.waitingroom.model import (
    MARK_EVERY,
    OVERRIDE_FIELDS,
    REGISTERED_FIELD,
    AdmissionCounts,
    ClaimOutcome,
    EnterOutcome,
    EnterResult,
    EventExists,
    EventNotFound,
    EventOverrides,
    EventState,
    EventStats,
    Frontier,
    JoinResult,
    LeaveOutcome,
    QueueClosed,
    Registration,
    SoldOut,
    StatusResult,
    UserAlreadyAdmitted,
    WaiterState,
)
from ticketgate.waitingroom.settings import QueueSettings

_K = TypeVar("_K")
_V = TypeVar("_V")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _expired_head(
    entries: dict[_K, _V], now_ms: int, limit: int, expiry: Callable[[_V], int]
) -> list[_K]:
    """Expired keys at the front of `entries`, at most `limit`.

    Every entry gets the same TTL when inserted and is never re-inserted, so insertion
    order is expiry order: the scan stops at the first live entry instead of walking all
    of them (300k Idempotency-Keys would otherwise be scanned on every sweep).
    """
    found: list[_K] = []
    for key, value in entries.items():
        if len(found) >= limit or expiry(value) > now_ms:
            break
        found.append(key)
    return found


def _seen_rank(item: tuple[int, int]) -> tuple[int, str]:
    """A (last seen ms, seq) entry's place in `seen_order`: Redis orders a ZSET's equal scores
    by the member's bytes, so seq 10 comes before seq 2 when both were seen in one ms, and the
    sweeper takes the same ghosts from both stores."""
    return item[0], str(item[1])


@dataclass
class _Event:
    bucket: Bucket | None = None  # written by the first grant or hold, as in Redis
    seq: int = 0
    epoch_ms: int = 0
    waiting: SortedList = field(default_factory=SortedList)  # seqs; held ones - HELD_OFFSET
    held: set[int] = field(default_factory=set)  # seqs whose earmarks are held (admission.py)
    last_seen: dict[int, int] = field(default_factory=dict)
    seen_order: SortedKeyList = field(default_factory=lambda: SortedKeyList(key=_seen_rank))
    users: dict[str, tuple[int, int]] = field(default_factory=dict)
    seq_user: dict[int, str] = field(default_factory=dict)
    idempotency: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    admitted: dict[int, int] = field(default_factory=dict)
    admitted_order: SortedList = field(default_factory=SortedList)
    admitted_users: dict[str, int] = field(default_factory=dict)  # one admission per person
    reservations: dict[int, tuple[str, int]] = field(default_factory=dict)
    leases: dict[int, tuple[str, int]] = field(default_factory=dict)  # seq -> (id, until ms)
    config: dict[str, str] = field(default_factory=dict)  # raw overrides, as Redis keeps them
    marks: SortedList = field(default_factory=SortedList)  # (seq, joined_ms), see MARK_EVERY

    def overrides(self) -> EventOverrides:
        return EventOverrides.from_raw([self.config.get(name) for name in OVERRIDE_FIELDS])

    def key(self, seq: int) -> int:
        """`seq`'s place in `waiting`: held waiters rank first, as in the Redis ZSET."""
        return seq - HELD_OFFSET if seq in self.held else seq

    def rank(self, seq: int) -> int:
        return int(self.waiting.bisect_left(self.key(seq))) + 1

    def head(self) -> int:
        first = int(self.waiting[0])
        return first + HELD_OFFSET if first < 0 else first


class MemoryQueueStore:
    name = "memory"

    def __init__(self, settings: QueueSettings, clock: Callable[[], int] = wall_clock_ms) -> None:
        self._settings = settings
        self._clock = clock
        self._events: dict[str, _Event] = {}

    def _event(self, event_id: str) -> _Event:
        event = self._events.get(event_id)
        if event is None:
            event = self._events[event_id] = _Event()
        return event

    @staticmethod
    def _frontier(event: _Event, policy: AdmissionPolicy, now: int) -> Frontier:
        return policy.frontier(event.bucket, now, len(event.held))

    def _remove_waiter(self, event: _Event, seq: int) -> None:
        event.waiting.discard(event.key(seq))
        event.held.discard(seq)
        seen = event.last_seen.pop(seq, None)
        if seen is not None:
            event.seen_order.discard((seen, seq))
        user = event.seq_user.pop(seq, None)
        if user is not None and event.users.get(user, (0, 0))[0] == seq:
            del event.users[user]

    @staticmethod
    def _earlier_life(event: _Event, joined_ms: int | None) -> bool:
        """The token was issued before this event's sequence (re)started, e.g. before a
        restart lost the queue: its seq names someone else's place now."""
        return joined_ms is not None and joined_ms < event.epoch_ms

    def _is_stale(self, event: _Event, seq: int, now_ms: int) -> bool:
        seen = event.last_seen.get(seq)
        return seen is None or now_ms - seen > self._settings.heartbeat_ttl_ms

    async def join(self, event_id: str, user_id: str, idempotency_key: str) -> JoinResult:
        now = self._clock()
        known = self._events.get(event_id)
        if not self._settings.auto_create_events and (
            known is None or REGISTERED_FIELD not in known.config
        ):
            raise EventNotFound("no such event (it is not registered)")
        event = self._event(event_id)
        idem_slot = f"{user_id}\x00{idempotency_key}" if idempotency_key else ""
        if idem_slot:
            held = event.idempotency.get(idem_slot)
            if held is not None and held[2] > now:
                seq, joined, _ = held
                return JoinResult(seq, joined, self._position(event, seq), duplicate=False)
        if user_id:
            existing = event.users.get(user_id)
            if existing is not None and existing[0] in event.last_seen:
                seq, joined = existing
                if not self._is_stale(event, seq, now):
                    return JoinResult(seq, joined, self._position(event, seq), duplicate=True)
                self._remove_waiter(event, seq)
        if user_id and user_id in event.admitted_users:
            raise UserAlreadyAdmitted("this user was admitted to this event already")
        if event.config.get("soldout") == "1":
            raise SoldOut("this event is sold out")
        if event.config.get("closed") == "1":
            raise QueueClosed("this event's queue is closed to new waiters")
        event.seq += 1
        seq = event.seq
        if seq == 1:
            event.epoch_ms = now  # a new life: see _earlier_life
        event.waiting.add(seq)
        event.last_seen[seq] = now
        event.seen_order.add((now, seq))
        if user_id:
            event.users[user_id] = (seq, now)
            event.seq_user[seq] = user_id
        if seq % MARK_EVERY == 1:
            event.marks.add((seq, now))
            head = event.head()
            while event.marks and event.marks[0][0] < head - (MARK_EVERY - 1):
                event.marks.pop(0)
        if idem_slot:
            event.idempotency.pop(idem_slot, None)  # re-insert at the end: expiry order
            event.idempotency[idem_slot] = (seq, now, now + self._settings.idempotency_ttl_ms)
        return JoinResult(seq, now, len(event.waiting), duplicate=False)

    @staticmethod
    def _position(event: _Event, seq: int) -> int:
        if seq not in event.last_seen:
            return 0
        return event.rank(seq)

    def _counts(self, event: _Event, now: int) -> AdmissionCounts:
        order = event.admitted_order
        counts = [len(order) - order.bisect_left((now - window, -1)) for window in WINDOWS_MS]
        covered = now - order[0][0] if order else 0
        return AdmissionCounts(counts[0], counts[1], counts[2], covered)

    async def status(self, event_id: str, seq: int, joined_ms: int | None = None) -> StatusResult:
        now = self._clock()
        event = self._event(event_id)
        if self._earlier_life(event, joined_ms):
            return self._status_result(event, WaiterState.EXPIRED, 0, now)
        if seq in event.last_seen:
            if self._is_stale(event, seq, now):
                self._remove_waiter(event, seq)
                return self._status_result(event, WaiterState.EXPIRED, 0, now)
            old = event.last_seen[seq]
            event.seen_order.discard((old, seq))
            event.last_seen[seq] = now
            event.seen_order.add((now, seq))
            position = event.rank(seq)
            return self._status_result(event, WaiterState.WAITING, position, now)
        state = WaiterState.ADMITTED if seq in event.admitted else WaiterState.EXPIRED
        return self._status_result(event, state, 0, now)

    def _status_result(
        self, event: _Event, state: WaiterState, position: int, now: int
    ) -> StatusResult:
        overrides = event.overrides()
        policy = AdmissionPolicy.of(self._settings, overrides)
        return StatusResult(
            state,
            position,
            now,
            self._counts(event, now),
            admission_window=policy.window,
            refill_per_sec=policy.refill_per_sec,
            frontier=self._frontier(event, policy, now),
            capacity=policy.capacity,
            event_state=EventState.of(
                paused=overrides.paused, closed=overrides.closed, sold_out=overrides.sold_out
            ),
        )

    async def enter(self, event_id: str, seq: int, joined_ms: int, user_id: str) -> EnterResult:
        now = self._clock()
        event = self._event(event_id)
        settings = self._settings
        if self._earlier_life(event, joined_ms):
            return EnterResult(EnterOutcome.EXPIRED, 0, now)
        if seq in event.admitted:
            return EnterResult(EnterOutcome.ALREADY_ADMITTED, 0, now)
        if user_id and user_id in event.admitted_users:
            return EnterResult(EnterOutcome.USER_ADMITTED, 0, now)
        if seq not in event.last_seen:
            return EnterResult(EnterOutcome.EXPIRED, 0, now)
        if self._is_stale(event, seq, now):
            self._remove_waiter(event, seq)
            return EnterResult(EnterOutcome.EXPIRED, 0, now)
        position = event.rank(seq)
        overrides = event.overrides()
        halt = stopped(overrides)
        if halt is not None:
            return EnterResult(halt, position, now)
        policy = AdmissionPolicy.of(settings, overrides)
        frontier = self._frontier(event, policy, now)
        decision = policy.decide(position, now - joined_ms, frontier.reach)
        if decision.outcome is not EnterOutcome.GRANTED:
            return EnterResult(decision.outcome, position, now, decision.wait_ms)
        event.bucket = policy.grant(frontier, now, held=seq in event.held)
        self._remove_waiter(event, seq)
        event.admitted[seq] = now
        event.admitted_order.add((now, seq))
        if user_id:
            event.admitted_users[user_id] = seq
        event.reservations[seq] = (user_id, now + settings.reservation_token_ttl_ms)
        self._trim(event, now)
        return EnterResult(EnterOutcome.GRANTED, position, now)

    def _trim(self, event: _Event, now: int) -> None:
        horizon = now - WINDOWS_MS[-1]
        order = event.admitted_order
        while order and order[0][0] < horizon:
            _, old_seq = order.pop(0)
            event.admitted.pop(old_seq, None)
        for old_seq in _expired_head(event.reservations, now, 100, lambda v: v[1]):
            del event.reservations[old_seq]
            event.leases.pop(old_seq, None)

    async def leave(
        self, event_id: str, seq: int, user_id: str, joined_ms: int | None = None
    ) -> LeaveOutcome:
        event = self._events.get(event_id)
        if event is None or self._earlier_life(event, joined_ms) or seq not in event.last_seen:
            return LeaveOutcome.NOT_WAITING
        self._remove_waiter(event, seq)
        return LeaveOutcome.LEFT

    async def sweep(self, event_id: str, batch: int) -> int:
        now = self._clock()
        event = self._events.get(event_id)
        if event is None:
            return 0
        cutoff = now - self._settings.heartbeat_ttl_ms
        stale = [item for item in event.seen_order.islice(0, batch) if item[0] < cutoff]
        lapsing = sum(1 for _, seq in stale if seq in event.held)
        for _, seq in stale:
            self._remove_waiter(event, seq)
        overrides = event.overrides()
        policy = AdmissionPolicy.of(self._settings, overrides)
        frontier = self._frontier(event, policy, now)
        late: list[int] = []
        if stopped(overrides) is None:  # while nobody may enter, nobody is late
            door = event.waiting.islice(
                event.waiting.bisect_left(0), event.waiting.bisect_left(0) + policy.door(frontier)
            )
            grace = entry_grace_ms(self._settings.heartbeat_ttl_ms)
            late = [seq for seq in door if now - event.last_seen[seq] > grace]
        for seq in late:
            event.waiting.discard(seq)
            event.held.add(seq)
            event.waiting.add(seq - HELD_OFFSET)
        if late or lapsing:
            event.bucket = policy.hold(frontier, now, len(late), lapsing)
        for key in _expired_head(event.idempotency, now, batch, lambda v: v[2]):
            del event.idempotency[key]
        return len(stale)

    async def claim_reservation(
        self, event_id: str, seq: int, user_id: str, lease_id: str, lease_ms: int
    ) -> ClaimOutcome:
        now = self._clock()
        event = self._events.get(event_id)
        if event is None:
            return ClaimOutcome.GONE
        held = event.reservations.get(seq)
        if held is None or held[0] != user_id or held[1] <= now:
            return ClaimOutcome.GONE
        lease = event.leases.get(seq)
        if lease is not None and lease[1] > now:
            return ClaimOutcome.BUSY
        event.leases[seq] = (lease_id, now + lease_ms)
        return ClaimOutcome.CLAIMED

    async def settle_reservation(self, event_id: str, seq: int, lease_id: str, used: bool) -> None:
        event = self._events.get(event_id)
        if event is None:
            return
        if used:
            event.reservations.pop(seq, None)
        lease = event.leases.get(seq)
        if lease is not None and lease[0] == lease_id:
            del event.leases[seq]

    async def event_stats(self, event_id: str) -> EventStats:
        now = self._clock()
        event = self._events.get(event_id)
        if event is None:
            policy = AdmissionPolicy.of(self._settings)
            return EventStats(
                0,
                now,
                AdmissionCounts(0, 0, 0, 0),
                0,
                EventOverrides(),
                Frontier(policy.capacity, 0),
                registered=False,
            )
        head_ms = 0
        if event.waiting:
            at = event.marks.bisect_right((event.head(), now + 1))
            if at:
                head_ms = event.marks[at - 1][1]
        overrides = event.overrides()
        frontier = self._frontier(event, AdmissionPolicy.of(self._settings, overrides), now)
        return EventStats(
            len(event.waiting),
            now,
            self._counts(event, now),
            head_ms,
            overrides,
            frontier,
            registered=REGISTERED_FIELD in event.config,
        )

    async def configure(
        self,
        event_id: str,
        changes: Mapping[str, str],
        registration: Registration = Registration.ANY,
    ) -> tuple[EventOverrides, EventOverrides]:
        known = self._events.get(event_id)
        registered = known is not None and REGISTERED_FIELD in known.config
        if registration is Registration.REGISTERED and not registered:
            raise EventNotFound(f"event {event_id} is not registered")
        if registration is Registration.CREATE and registered:
            raise EventExists(f"event {event_id} is registered already")
        event = self._event(event_id)
        if registration is Registration.CREATE:
            event.config[REGISTERED_FIELD] = str(self._clock())
        before = event.overrides()
        for name, value in changes.items():
            if value:
                event.config[name] = value
            else:
                event.config.pop(name, None)
        return before, event.overrides()

    async def register_events(self, waiting: Mapping[str, int]) -> None:
        """Nothing to do: this store's own table of events is the registry."""

    async def list_events(self, limit: int) -> list[str]:
        events = self._events
        return heapq.nlargest(limit, events, key=lambda e: len(events[e].waiting))

    async def waiting_count(self, event_id: str) -> int:
        event = self._events.get(event_id)
        return 0 if event is None else len(event.waiting)

    async def start(self) -> None:
        """Nothing to prepare: the tables are made as events appear."""

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._events.clear()
