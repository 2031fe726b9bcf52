"""Operating events at runtime: register them, list them with live stats, change their
settings (pause, close, mark sold out), sweep now.

Settings an operator changes live in the queue store (the same place as the queue), never in
a worker's memory: the join, status and enter steps read them atomically with the queue, so
every worker and pod sees a change on its very next call. The process settings
(QueueSettings) stay the defaults for any field an operator has not set.

Registration lives in the same place (the `registered` field of the event's overrides), so
it is shared by every replica and read by join in its own step; with
QUEUE_AUTO_CREATE_EVENTS=false (the default outside development) an event nobody registered
is EVENT_NOT_FOUND to joins and to operators' changes, so a typo cannot pause the wrong event.
Sold out is one more flag there: an operator sets it today; an inventory watcher can set it
later through the same `update` (SettingsChange(sold_out=True)).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from ticketgate.waitingroom.admission import AdmissionPolicy
from ticketgate.waitingroom.eta import estimate
from ticketgate.waitingroom.model import (
    EventExists,
    EventNotFound,
    EventOverrides,
    EventState,
    EventStats,
    Frontier,
    InvalidSetting,
    Registration,
)
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import QueueSettings

LIST_DEFAULT = 100
LIST_MAX = 1_000
WINDOW_MIN = 1
CAPACITY_RANGE = (1, 1_000_000)
RATE_RANGE = (0.001, 100_000.0)  # per second; zero would stop the door: pause instead


@dataclass(frozen=True, slots=True)
class EventSettings:
    """The settings in effect for one event: overrides where set, process settings elsewhere."""

    admission_window: int
    bucket_capacity: int
    bucket_refill_per_sec: float
    paused: bool
    closed: bool
    sold_out: bool

    @classmethod
    def effective(cls, overrides: EventOverrides, defaults: QueueSettings) -> EventSettings:
        return cls(
            admission_window=overrides.admission_window or defaults.admission_window,
            bucket_capacity=overrides.bucket_capacity or defaults.bucket_capacity,
            bucket_refill_per_sec=(
                overrides.bucket_refill_per_sec or defaults.bucket_refill_per_sec
            ),
            paused=overrides.paused,
            closed=overrides.closed,
            sold_out=overrides.sold_out,
        )


@dataclass(frozen=True, slots=True)
class EventView:
    """One event as an operator sees it."""

    event_id: str
    waiting: int
    admitted_last_minute: int
    tail_eta_sec: int
    oldest_wait_sec: int
    settings: EventSettings
    overrides: EventOverrides
    frontier: Frontier
    admission_rate: float  # measured release rate per second (eta.release_rate)
    eta_confidence: float
    registered: bool = False

    @property
    def state(self) -> EventState:
        return self.overrides.state


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """A partial update: None leaves a field alone; `reset` names fields to return to the
    process setting."""

    admission_window: int | None = None
    bucket_capacity: int | None = None
    bucket_refill_per_sec: float | None = None
    paused: bool | None = None
    closed: bool | None = None
    sold_out: bool | None = None
    reset: frozenset[str] = frozenset()


_FIELD = {
    "admission_window": "window",
    "bucket_capacity": "capacity",
    "bucket_refill_per_sec": "refill",
    "paused": "paused",
    "closed": "closed",
    "sold_out": "soldout",
}
RESETTABLE = frozenset({"admission_window", "bucket_capacity", "bucket_refill_per_sec"})


class EventAdmin:
    def __init__(self, room: WaitingRoom) -> None:
        self.room = room
        self.store = room.store
        self.settings = room.settings

    @property
    def window_max(self) -> int:
        """Beyond the last min-wait rule nobody is ever eligible, so a wider window would
        promise admissions that cannot happen (admission.min_wait_ms)."""
        rules = self.settings.min_wait
        return rules[-1].max_position if rules else self.settings.admission_window

    def view(self, event_id: str, stats: EventStats) -> EventView:
        settings = EventSettings.effective(stats.overrides, self.settings)
        counts = stats.counts
        # The same estimator as a fan's status: the tail's distance to the frontier.
        policy = AdmissionPolicy.of(self.settings, stats.overrides)
        guess = estimate(policy, stats.frontier, counts, stats.waiting + 1, waited_ms=0)
        oldest = max(0, stats.now_ms - stats.head_joined_ms) if stats.head_joined_ms else 0
        return EventView(
            event_id=event_id,
            waiting=stats.waiting,
            admitted_last_minute=counts.last_1m,
            tail_eta_sec=guess.eta_sec,
            oldest_wait_sec=oldest // 1000,
            settings=settings,
            overrides=stats.overrides,
            frontier=stats.frontier,
            admission_rate=guess.rate_per_sec,
            eta_confidence=guess.confidence,
            registered=stats.registered,
        )

    @property
    def auto_create(self) -> bool:
        return self.settings.auto_create_events

    async def get(self, event_id: str) -> EventView:
        self.room.check_event_id(event_id)
        view = self.view(event_id, await self.store.event_stats(event_id))
        if not (view.registered or self.auto_create):
            raise EventNotFound(f"event {event_id} is not registered")
        return view

    async def list(self, limit: int = LIST_DEFAULT) -> list[EventView]:
        """The `limit` events with most waiters, each read fresh (one store step each)."""
        limit = max(1, min(LIST_MAX, limit))
        ids = await self.store.list_events(limit)
        stats = await asyncio.gather(*(self.store.event_stats(e) for e in ids))
        views = [self.view(e, s) for e, s in zip(ids, stats, strict=True)]
        views.sort(key=lambda v: (-v.waiting, v.event_id))
        return views

    def _encode(self, change: SettingsChange) -> dict[str, str]:
        raw: dict[str, str] = {}
        if change.admission_window is not None:
            if not WINDOW_MIN <= change.admission_window <= self.window_max:
                raise InvalidSetting(
                    f"admission_window must be between {WINDOW_MIN} and {self.window_max} "
                    "(the last QUEUE_MIN_WAIT position)"
                )
            raw["window"] = str(change.admission_window)
        if change.bucket_capacity is not None:
            low, high = CAPACITY_RANGE
            if not low <= change.bucket_capacity <= high:
                raise InvalidSetting(f"bucket_capacity must be between {low} and {high}")
            raw["capacity"] = str(change.bucket_capacity)
        if change.bucket_refill_per_sec is not None:
            low_rate, high_rate = RATE_RANGE
            if not low_rate <= change.bucket_refill_per_sec <= high_rate:
                raise InvalidSetting(
                    f"bucket_refill_per_sec must be between {low_rate} and {high_rate:g}"
                )
            raw["refill"] = repr(float(change.bucket_refill_per_sec))
        if change.paused is not None:
            raw["paused"] = "1" if change.paused else ""
        if change.closed is not None:
            raw["closed"] = "1" if change.closed else ""
        if change.sold_out is not None:
            raw["soldout"] = "1" if change.sold_out else ""
        for name in sorted(change.reset):
            if name not in RESETTABLE:
                raise InvalidSetting(f"reset: {name!r} is not one of {sorted(RESETTABLE)}")
            if _FIELD[name] in raw:
                raise InvalidSetting(f"reset: {name} is also being set")
            raw[_FIELD[name]] = ""
        return raw

    async def update(
        self, event_id: str, change: SettingsChange
    ) -> tuple[EventOverrides, EventView]:
        """Apply `change` atomically; return the overrides before it and the new view."""
        self.room.check_event_id(event_id)
        raw = self._encode(change)
        registration = Registration.ANY if self.auto_create else Registration.REGISTERED
        before, _ = await self.store.configure(event_id, raw, registration)
        return before, await self._listed(event_id)

    async def create(self, event_id: str, change: SettingsChange) -> EventView:
        """Register the event (EventExists when it is already), with `change` applied in the
        same step, so an on-sale can be prepared paused or with its own rate."""
        self.room.check_event_id(event_id)
        raw = self._encode(change)
        await self.store.configure(event_id, raw, Registration.CREATE)
        return await self._listed(event_id)

    async def ensure_registered(self, event_id: str) -> None:
        """Register the event unless it is already (an event seeded at start, such as the
        demo event of the in-process services)."""
        with contextlib.suppress(EventExists):
            await self.create(event_id, SettingsChange())

    async def _listed(self, event_id: str) -> EventView:
        view = await self.get(event_id)
        # Listed at once, even before anyone joins (an operator preparing an on-sale).
        await self.store.register_events({event_id: view.waiting})
        return view

    async def sweep(self, event_id: str) -> int:
        await self.get(event_id)  # EventNotFound for an unregistered one
        return await self.room.sweep_event(event_id)
