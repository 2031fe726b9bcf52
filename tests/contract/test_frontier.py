"""The serving frontier's promises (admission.py): held earmarks of fans who do not come, on
both stores, and a property test over random on-sales on a clock the test moves."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_SECRET
from tests.contract.conftest import Clock, join_many, open_door
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.waitingroom.eta import entry_grace_ms
from ticketgate.waitingroom.model import EnterOutcome, LeaveOutcome, QueueError, WaiterState
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore

FAST = 20.0  # per second: the bucket is full again 100 ms after a grant
TTL_MS = 4_000  # polls at most every second: the entry grace is 2 s
GRACE_MS = entry_grace_ms(TTL_MS)


@pytest.mark.queue_settings(
    admission_window=10,
    min_wait=open_door(10),
    bucket_capacity=2,
    bucket_refill_per_sec=FAST,
    heartbeat_ttl_ms=TTL_MS,
)
async def test_a_fan_who_does_not_come_has_its_earmark_held_and_the_line_flows(
    store: QueueStore, event_id: str
) -> None:
    silent, second, third, fourth = await join_many(store, event_id, 4)
    await asyncio.sleep(GRACE_MS / 1000 + 0.2)
    for waiter in (second, third, fourth):  # they keep polling; the head went quiet
        assert (await store.status(event_id, waiter.seq)).state is WaiterState.WAITING
    third_early = await store.enter(event_id, third.seq, third.joined_ms, "")
    assert third_early.outcome is EnterOutcome.THROTTLED, "a full bucket of 2: places 1 and 2"

    assert await store.sweep(event_id, 100) == 0, "held, not swept: the TTL has not passed"
    status = await store.status(event_id, second.seq)
    assert status.position == 2
    frontier = status.frontier
    assert (frontier.held, frontier.earmarked, frontier.used) == (1, 2, 0)
    await asyncio.sleep(0.1)  # the bucket refills the earmark the silent fan took with it
    flowed = await store.enter(event_id, third.seq, third.joined_ms, "")
    assert (flowed.outcome, flowed.position) == (EnterOutcome.GRANTED, 3)

    late = await store.enter(event_id, silent.seq, silent.joined_ms, "")
    assert (late.outcome, late.position) == (EnterOutcome.GRANTED, 1), "its earmark waited"
    after = (await store.status(event_id, fourth.seq)).frontier
    assert after.held == 0
    assert after.used == 2
    assert after.released == after.used + after.earmarked + after.lapsed


@pytest.mark.queue_settings(
    admission_window=10,
    min_wait=open_door(10),
    bucket_capacity=2,
    bucket_refill_per_sec=FAST,
    heartbeat_ttl_ms=TTL_MS,
)
async def test_redis_counts_held_waiters_of_an_event_without_the_held_field(
    redis_store: QueueStore, redis_sync: redis.Redis, event_id: str
) -> None:
    """An event written before the bucket HASH counted held earmarks (no 'held' field) has
    its held waiters counted in the order, a removal does not count one down from nothing,
    and the next grant writes the count; the property test in test_store_state.py holds the
    count to the memory store's held set for events that have it from their first join."""
    store = redis_store
    bucket = f"tg:{{{event_id}}}:bucket"
    silent, second, third = await join_many(store, event_id, 3)
    assert redis_sync.hget(bucket, "held") == b"0", "join starts the count"
    await asyncio.sleep(GRACE_MS / 1000 + 0.2)
    for waiter in (second, third):
        await store.status(event_id, waiter.seq)
    await store.sweep(event_id, 100)  # holds the silent head's earmark
    assert redis_sync.hget(bucket, "held") == b"1"

    redis_sync.hdel(bucket, "held")  # as an event from before the count
    assert (await store.status(event_id, second.seq)).frontier.held == 1, "counted in the order"
    assert await store.leave(event_id, silent.seq, "") is LeaveOutcome.LEFT
    assert redis_sync.hget(bucket, "held") is None, "no count to take one from"
    assert (await store.status(event_id, second.seq)).frontier.held == 0
    await asyncio.sleep(0.1)
    granted = await store.enter(event_id, second.seq, second.joined_ms, "")
    assert granted.outcome is EnterOutcome.GRANTED
    assert redis_sync.hget(bucket, "held") == b"0", "the grant writes the count"


@pytest.mark.queue_settings(
    admission_window=10,
    min_wait=open_door(10),
    bucket_capacity=1,
    bucket_refill_per_sec=0.01,
    heartbeat_ttl_ms=2_000,  # entry grace 1.5 s
)
async def test_a_held_earmark_lapses_when_its_fan_is_swept(
    store: QueueStore, event_id: str
) -> None:
    silent, waiting = await join_many(store, event_id, 2)
    await asyncio.sleep(entry_grace_ms(2_000) / 1000 + 0.1)
    await store.status(event_id, waiting.seq)
    await store.sweep(event_id, 100)
    held = (await store.status(event_id, waiting.seq)).frontier
    assert (held.held, held.lapsed, held.released) == (1, 0, 1)
    await asyncio.sleep(0.6)
    await store.status(event_id, waiting.seq)
    assert await store.sweep(event_id, 100) == 1
    lapsed = (await store.status(event_id, waiting.seq)).frontier
    assert (lapsed.held, lapsed.lapsed, lapsed.released, lapsed.used) == (0, 1, 1, 0)
    assert (await store.status(event_id, silent.seq)).state is WaiterState.EXPIRED


# --- property: random on-sales on the memory store, on a clock the test moves ---------------


@dataclass
class Fan:
    order: int  # join order
    token: str
    silent: bool = False
    admitted_at: int | None = None  # index in the admission order


@dataclass
class Sale:
    fans: list[Fan] = field(default_factory=list)
    admitted: list[Fan] = field(default_factory=list)


ROUND = st.tuples(
    st.integers(0, 2_500),  # ms the clock moves
    st.integers(0, 3),  # fans who join
    st.lists(st.integers(0, 200), max_size=2),  # fans who go silent
    st.booleans(),  # the sweeper runs
)


Round = tuple[int, int, list[int], bool]


async def _on_sale(capacity: int, rate: float, rounds: list[Round]) -> None:
    clock = Clock()
    queue = QueueSettings(
        token_secret=TEST_SECRET,
        admission_window=1_000,
        min_wait=open_door(1_000),
        bucket_capacity=capacity,
        bucket_refill_per_sec=rate,
        heartbeat_ttl_ms=20_000,
    )
    room = WaitingRoom(MemoryQueueStore(queue, clock=clock), queue)
    sale = Sale()
    start = clock.now_ms
    for advance, joining, silencing, sweep in rounds:
        clock.now_ms += advance
        for _ in range(joining):
            joined = await room.join("evt", "")
            sale.fans.append(Fan(len(sale.fans), joined.waiting_token))
        for pick in silencing:
            if sale.fans:
                sale.fans[pick % len(sale.fans)].silent = True
        if sweep:
            await room.sweep_event("evt")
        # Everyone who keeps polling polls once this round and enters at once when ready.
        for fan in sale.fans:
            if fan.silent or fan.admitted_at is not None:
                continue
            view = await room.status(fan.token)
            if view.status == "expired":
                fan.silent = True  # swept: it did not poll in time (a long clock jump)
                continue
            frontier = view.frontier
            assert frontier.used <= frontier.released
            assert frontier.released <= capacity + math.floor(
                (clock.now_ms - start) * rate / 1000 + 1e-9
            ), "nothing is granted beyond what the bucket released"
            if not view.ready_for_entry:
                continue
            try:
                await room.enter(fan.token, f"user-{fan.order}")
            except QueueError as refusal:
                raise AssertionError(f"ready, then refused: {refusal.code}") from None
            fan.admitted_at = len(sale.admitted)
            sale.admitted.append(fan)
    for fan in sale.fans:
        if fan.silent:
            continue
        before = sale.admitted if fan.admitted_at is None else sale.admitted[: fan.admitted_at]
        overtaken = sum(1 for other in before if other.order > fan.order)
        assert overtaken <= capacity, (fan.order, overtaken)


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 5),
    rate=st.sampled_from([0.5, 1.0, 5.0, 20.0]),
    rounds=st.lists(ROUND, min_size=5, max_size=40),
)
def test_random_on_sales_keep_order_and_never_grant_beyond_the_release(
    capacity: int, rate: float, rounds: list[Round]
) -> None:
    """For any sequence of joins, polls, silences, enters and sweeps: a fan who keeps polling
    and enters when ready is granted at once and overtaken by at most the bucket capacity,
    and no grant exceeds the capacity the bucket released."""
    asyncio.run(_on_sale(capacity, rate, rounds))
