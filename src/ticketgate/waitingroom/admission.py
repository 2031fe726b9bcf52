"""Admission policy: who may leave the queue now, and when the others' turn comes.

The rule (README "Admission"): the event's bucket releases admission capacity at
`refill_per_sec`, holding at most `capacity` released-but-unused places. That unused capacity is
earmarked for the head of the line in order: with `earmarked` = E, the waiters at positions
1..E may enter now (within the admission window and after their minimum wait), nobody else.
A grant uses one earmark; positions behind the door are served strictly as capacity is released.

Why this order is fair and the promise holds:
- once a waiter is within the frontier it stays within it (an enter behind it also takes one
  earmark from behind it; one ahead moves it up by one), so `ready_for_entry` is a promise;
- nobody behind a waiter is admitted before it unless it is itself within the frontier, so a
  waiter who polls as told is passed only by those who stood within `capacity` places of
  the head with it;
- a fan within the frontier who does not come (unseen for eta.entry_grace_ms: longer than any
  poll interval it can have been told) does not stop the
  line: the sweeper takes its earmark out of the bucket and holds it for it (it moves to the
  very front and may still enter, until swept as a ghost), so the bucket refills and its
  capacity flows to the next places — otherwise `capacity` absent fans would stall the door
  until the heartbeat TTL swept them;
- grants never exceed released capacity: no borrowing, no bypass (a held earmark is one the
  bucket released).

This module is the one place the rule lives: whether anyone may enter (`stopped`), who may
(`AdmissionPolicy.decide`), what
the bucket holds at an instant (`frontier`), what a grant draws from it (`grant`) and what the
sweeper's hold takes out of it (`door`, `hold`). The memory store and the status view call
them; the Redis store hands `script_args()` to its Lua scripts (frontier.lua, enter.lua,
sweep.lua), which apply the same arithmetic in the same atomic step, each step named after the
method it mirrors. tests/contract/test_store_state.py runs both stores on one clock through
random sequences and requires the same answers and state, bucket included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from ticketgate.waitingroom.model import EnterOutcome, EventOverrides, Frontier
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings

# Held waiters stay in the order (ZSET `wait` in Redis, scored by seq) with their score
# lowered by this much, so they rank first and keep their order among themselves.
HELD_OFFSET = 10**15


def min_wait_ms(position: int, rules: tuple[MinWaitRule, ...]) -> int | None:
    """Minimum time waited before `position` may enter; None when outside every rule."""
    for rule in rules:
        if position <= rule.max_position:
            return rule.min_wait_ms
    return None


def refilled(
    tokens: float, updated_ms: int, now_ms: int, capacity: float, refill_per_ms: float
) -> float:
    """Unused released capacity at `now_ms`: the bucket refills fractionally and holds at most
    `capacity` (a lowered capacity binds at once)."""
    if now_ms > updated_ms:
        tokens += (now_ms - updated_ms) * refill_per_ms
    return tokens if tokens < capacity else capacity  # min(), without the call (every status)


def stopped(overrides: EventOverrides) -> EnterOutcome | None:
    """Why nobody is admitted to the event now, before any place is looked at: SOLD_OUT, then
    PAUSED (EventState.of's order); None while admissions run. While stopped nobody is late
    either: the sweeper holds no earmark."""
    if overrides.sold_out:
        return EnterOutcome.SOLD_OUT
    if overrides.paused:
        return EnterOutcome.PAUSED
    return None


class Bucket(NamedTuple):
    """What a store keeps of an event's bucket (Redis: the HASH tokens, ts, used, lapsed):
    the unused released capacity as of `updated_ms`, the admissions granted so far and the
    held earmarks that lapsed (model.Frontier). None until the first grant or hold: a bucket
    never written is full."""

    tokens: float
    updated_ms: int
    used: int = 0
    lapsed: int = 0


class Decision(NamedTuple):  # a tuple: one is made on every status call
    """What an enter at this instant would get: GRANTED, NOT_READY (outside the window or
    before the minimum wait) or THROTTLED (in the window, not yet within the frontier), and
    `wait_ms`, the time until every condition holds at the configured release rate
    (waiters ahead leaving only make it sooner)."""

    outcome: EnterOutcome
    wait_ms: int


GRANT = Decision(EnterOutcome.GRANTED, 0)


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """One event's effective admission settings (operator overrides over process settings)."""

    window: int
    min_wait: tuple[MinWaitRule, ...]
    capacity: int
    refill_per_sec: float
    # What the Lua scripts get (script_args) and every decision divides by: computed once.
    refill_per_ms: float = field(init=False, repr=False, compare=False)
    # The last position any min-wait rule covers (-1: none): min_wait_ms is None past it, so
    # status (most fans stand far past it) skips the rules (decide and the ETA ask both).
    min_wait_end: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "refill_per_ms", self.refill_per_sec / 1000.0)
        end = max((rule.max_position for rule in self.min_wait), default=-1)
        object.__setattr__(self, "min_wait_end", end)

    @classmethod
    def of(
        cls, settings: QueueSettings, overrides: EventOverrides | None = None
    ) -> AdmissionPolicy:
        o = overrides or EventOverrides()
        return cls(
            window=o.admission_window or settings.admission_window,
            min_wait=settings.min_wait,
            capacity=o.bucket_capacity or settings.bucket_capacity,
            refill_per_sec=o.bucket_refill_per_sec or settings.bucket_refill_per_sec,
        )

    def distance(self, position: int, reach: float) -> float:
        """Places between the waiter and the frontier (0 = within it)."""
        return max(0.0, position - min(reach, float(self.window)))

    def decide(self, position: int, waited_ms: int, reach: float) -> Decision:
        """The rule itself; `reach` is Frontier.reach at the same instant (held earmarks plus
        the bucket's refilled unused capacity)."""
        # self.distance inline (status decides on every call): 0 within the frontier
        distance = position - min(reach, float(self.window))
        frontier_ms = math.ceil(distance / self.refill_per_ms) if distance > 0.0 else 0
        needed = min_wait_ms(position, self.min_wait) if position <= self.min_wait_end else None
        if needed is None:  # past the last min-wait rule: not before the place moves up
            return Decision(EnterOutcome.NOT_READY, max(frontier_ms, 1))
        if position > self.window or waited_ms < needed:
            return Decision(EnterOutcome.NOT_READY, max(frontier_ms, needed - waited_ms, 1))
        if frontier_ms > 0:
            return Decision(EnterOutcome.THROTTLED, frontier_ms)
        return GRANT

    def frontier(self, bucket: Bucket | None, now_ms: int, held: int) -> Frontier:
        """The frontier at `now_ms` (lua/frontier.lua): the bucket refilled, full when never
        written; `held` is how many waiters hold an earmark."""
        if bucket is None:
            return Frontier(float(self.capacity), 0, held)
        tokens = refilled(
            bucket.tokens, bucket.updated_ms, now_ms, self.capacity, self.refill_per_ms
        )
        return Frontier(tokens, bucket.used, held, bucket.lapsed)

    @staticmethod
    def grant(frontier: Frontier, now_ms: int, held: bool) -> Bucket:
        """The bucket after one grant at `now_ms` (enter.lua): a held waiter brings the earmark
        it holds; anyone else takes one from the bucket."""
        tokens = frontier.tokens if held else frontier.tokens - 1.0
        return Bucket(tokens, now_ms, frontier.used + 1, frontier.lapsed)

    def door(self, frontier: Frontier) -> int:
        """How many of the first waiters (after the held ones) stand within the frontier: the
        ones whose earmarks the sweeper holds when they do not come."""
        return max(0, min(int(frontier.tokens), self.window - frontier.held))

    @staticmethod
    def hold(frontier: Frontier, now_ms: int, late: int, lapsing: int) -> Bucket:
        """The bucket after a sweep at `now_ms` (sweep.lua) held the earmarks of `late` waiters
        within the door (taken out of the bucket, which refills for the next places) and
        removed `lapsing` ghosts that held one (those earmarks lapse)."""
        return Bucket(frontier.tokens - late, now_ms, frontier.used, frontier.lapsed + lapsing)

    def script_args(self) -> tuple[int | str, ...]:
        """The policy as the Lua scripts take it (ARGV): window, capacity, refill per ms,
        then (max position, min wait ms) pairs; the scripts apply the event's overrides to the
        first three exactly as `of` does."""
        rules: list[int] = []
        for rule in self.min_wait:
            rules += [rule.max_position, rule.min_wait_ms]
        return (self.window, self.capacity, repr(self.refill_per_ms), *rules)
