"""Enter: one atomic step decides eligibility, draws from the bucket and removes the waiter."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from tests.contract.conftest import Stopwatch, join_many, open_door, positions
from ticketgate.waitingroom.model import EnterOutcome, UserAlreadyAdmitted, WaiterState
from ticketgate.waitingroom.settings import MinWaitRule
from ticketgate.waitingroom.store import QueueStore


async def test_concurrent_enters_on_one_token_grant_exactly_once(
    store: QueueStore, event_id: str
) -> None:
    waiter, behind = await join_many(store, event_id, 2)
    results = await asyncio.gather(
        *(store.enter(event_id, waiter.seq, waiter.joined_ms, "alice") for _ in range(50))
    )
    outcomes = [r.outcome for r in results]
    assert outcomes.count(EnterOutcome.GRANTED) == 1
    assert set(outcomes) <= {
        EnterOutcome.GRANTED,
        EnterOutcome.ALREADY_ADMITTED,
        EnterOutcome.EXPIRED,
    }
    assert await store.waiting_count(event_id) == 1
    assert (await store.status(event_id, waiter.seq)).state is WaiterState.ADMITTED
    assert (await store.status(event_id, behind.seq)).position == 1


async def test_entering_again_after_a_grant_is_already_admitted(
    store: QueueStore, event_id: str
) -> None:
    (waiter,) = await join_many(store, event_id, 1)
    granted = await store.enter(event_id, waiter.seq, waiter.joined_ms, "")
    assert (granted.outcome, granted.position) == (EnterOutcome.GRANTED, 1)
    again = await store.enter(event_id, waiter.seq, waiter.joined_ms, "")
    assert again.outcome is EnterOutcome.ALREADY_ADMITTED


async def test_entering_after_leaving_is_expired(store: QueueStore, event_id: str) -> None:
    (waiter,) = await join_many(store, event_id, 1)
    await store.leave(event_id, waiter.seq, "")
    result = await store.enter(event_id, waiter.seq, waiter.joined_ms, "")
    assert result.outcome is EnterOutcome.EXPIRED
    never_joined = await store.enter(event_id, waiter.seq + 1, waiter.joined_ms, "")
    assert never_joined.outcome is EnterOutcome.EXPIRED


TOP = 200
CAPACITY = 20
REFILL_PER_SEC = 2.0


@pytest.mark.queue_settings(
    admission_window=TOP,
    min_wait=open_door(TOP),
    bucket_capacity=CAPACITY,
    bucket_refill_per_sec=REFILL_PER_SEC,
)
@pytest.mark.parametrize("order", ["queue order", "reversed", "shuffled"])
async def test_concurrent_enters_by_the_top_200_go_to_the_head_within_released_capacity(
    store: QueueStore, event_id: str, order: str
) -> None:
    joined = await join_many(store, event_id, TOP)
    attempts = list(joined)
    if order == "reversed":
        attempts.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(attempts)

    clock = Stopwatch()
    results = await asyncio.gather(
        *(store.enter(event_id, j.seq, j.joined_ms, f"user-{j.seq}") for j in attempts)
    )
    refill_allowance = math.ceil(clock.elapsed * REFILL_PER_SEC) + 1

    outcomes = [r.outcome for r in results]
    granted = outcomes.count(EnterOutcome.GRANTED)
    assert CAPACITY <= granted <= CAPACITY + refill_allowance, "no grant beyond the release"
    winners = {
        j.seq for j, r in zip(attempts, results, strict=True) if r.outcome is EnterOutcome.GRANTED
    }
    assert winners == {j.seq for j in joined[:granted]}, "the head of the line, in order"
    assert set(outcomes) == {EnterOutcome.GRANTED, EnterOutcome.THROTTLED}
    throttled = [r for r in results if r.outcome is EnterOutcome.THROTTLED]
    assert all(r.retry_after_ms > 0 for r in throttled)
    assert await store.waiting_count(event_id) == TOP - granted


@pytest.mark.queue_settings(
    admission_window=TOP,
    min_wait=open_door(TOP),
    bucket_capacity=CAPACITY,
    bucket_refill_per_sec=REFILL_PER_SEC,
)
async def test_the_head_entering_one_by_one_cannot_drain_the_queue_past_the_bucket(
    store: QueueStore, event_id: str
) -> None:
    joined = await join_many(store, event_id, TOP)
    clock = Stopwatch()
    granted = 0
    for waiter in joined:
        result = await store.enter(event_id, waiter.seq, waiter.joined_ms, "")
        if result.outcome is not EnterOutcome.GRANTED:
            assert result.outcome is EnterOutcome.THROTTLED
            assert result.position == 1
            break
        granted += 1
    assert CAPACITY <= granted <= CAPACITY + math.ceil(clock.elapsed * REFILL_PER_SEC)


@pytest.mark.queue_settings(admission_window=3, min_wait=open_door(3))
async def test_only_the_admission_window_may_enter(store: QueueStore, event_id: str) -> None:
    joined = await join_many(store, event_id, 5)
    outside = await store.enter(event_id, joined[3].seq, joined[3].joined_ms, "")
    assert (outside.outcome, outside.position) == (EnterOutcome.NOT_READY, 4)
    assert outside.retry_after_ms > 0, "outside the window the turn is still ahead"
    head = await store.enter(event_id, joined[0].seq, joined[0].joined_ms, "")
    assert head.outcome is EnterOutcome.GRANTED
    moved_in = await store.enter(event_id, joined[3].seq, joined[3].joined_ms, "")
    assert (moved_in.outcome, moved_in.position) == (EnterOutcome.GRANTED, 3)


SLOW = 0.01  # per second: no refill within a test


@pytest.mark.queue_settings(
    admission_window=10, min_wait=open_door(10), bucket_capacity=2, bucket_refill_per_sec=SLOW
)
async def test_released_capacity_is_earmarked_for_the_head_in_order(
    store: QueueStore, event_id: str
) -> None:
    joined = await join_many(store, event_id, 5)
    third = await store.enter(event_id, joined[2].seq, joined[2].joined_ms, "")
    assert (third.outcome, third.position) == (EnterOutcome.THROTTLED, 3), (
        "two places released: they belong to positions 1 and 2, not to whoever asks first"
    )
    assert third.retry_after_ms == math.ceil(1 / (SLOW / 1000))
    second = await store.enter(event_id, joined[1].seq, joined[1].joined_ms, "")
    assert (second.outcome, second.position) == (EnterOutcome.GRANTED, 2)
    moved_up = await store.enter(event_id, joined[2].seq, joined[2].joined_ms, "")
    assert (moved_up.outcome, moved_up.position) == (EnterOutcome.THROTTLED, 2), (
        "the one place left is the head's"
    )
    head = await store.enter(event_id, joined[0].seq, joined[0].joined_ms, "")
    assert (head.outcome, head.position) == (EnterOutcome.GRANTED, 1)
    empty = await store.enter(event_id, joined[2].seq, joined[2].joined_ms, "")
    assert (empty.outcome, empty.position) == (EnterOutcome.THROTTLED, 1)
    frontier = (await store.status(event_id, joined[2].seq)).frontier
    assert (frontier.released, frontier.used, frontier.earmarked) == (2, 2, 0)


@pytest.mark.queue_settings(
    admission_window=10, min_wait=open_door(10), bucket_capacity=3, bucket_refill_per_sec=SLOW
)
async def test_a_head_who_does_not_come_keeps_its_place_while_the_rest_flow_past(
    store: QueueStore, event_id: str
) -> None:
    silent, *rest = await join_many(store, event_id, 6)
    flowed = [await store.enter(event_id, j.seq, j.joined_ms, "") for j in rest[:3]]
    assert [(r.outcome, r.position) for r in flowed] == [
        (EnterOutcome.GRANTED, 2),
        (EnterOutcome.GRANTED, 2),
        (EnterOutcome.THROTTLED, 2),
    ], "the earmarks beyond the absent head's flow to the next places"
    status = await store.status(event_id, silent.seq)
    assert (status.position, status.frontier.earmarked, status.frontier.used) == (1, 1, 2)
    late = await store.enter(event_id, silent.seq, silent.joined_ms, "")
    assert (late.outcome, late.position) == (EnterOutcome.GRANTED, 1), "its earmark waited"


MIN_WAIT_MS = 300


@pytest.mark.queue_settings(
    admission_window=4,
    min_wait=(MinWaitRule(1, 0), MinWaitRule(4, MIN_WAIT_MS)),
)
async def test_min_wait_gives_not_ready_with_the_time_left(
    store: QueueStore, event_id: str
) -> None:
    head, second, _ = await join_many(store, event_id, 3)
    early = await store.enter(event_id, second.seq, second.joined_ms, "")
    assert early.outcome is EnterOutcome.NOT_READY
    assert early.position == 2
    assert 0 < early.retry_after_ms <= MIN_WAIT_MS
    assert early.retry_after_ms == MIN_WAIT_MS - (early.now_ms - second.joined_ms)

    assert (await store.enter(event_id, head.seq, head.joined_ms, "")).outcome is (
        EnterOutcome.GRANTED
    )
    await asyncio.sleep(early.retry_after_ms / 1000 + 0.02)
    late = await store.enter(event_id, second.seq, second.joined_ms, "")
    assert late.outcome is EnterOutcome.GRANTED


@pytest.mark.queue_settings(
    admission_window=4,
    min_wait=(MinWaitRule(1, 0), MinWaitRule(4, 60_000)),
)
async def test_moving_to_the_front_lowers_the_min_wait(store: QueueStore, event_id: str) -> None:
    head, second = await join_many(store, event_id, 2)
    waiting = await store.enter(event_id, second.seq, second.joined_ms, "")
    assert waiting.outcome is EnterOutcome.NOT_READY
    await store.leave(event_id, head.seq, "")
    promoted = await store.enter(event_id, second.seq, second.joined_ms, "")
    assert (promoted.outcome, promoted.position) == (EnterOutcome.GRANTED, 1)


REFILL_MS = 200


@pytest.mark.queue_settings(
    admission_window=10,
    min_wait=open_door(10),
    bucket_capacity=1,
    bucket_refill_per_sec=1000 / REFILL_MS,
)
async def test_throttled_says_when_the_next_token_is_due_and_keeps_fractions(
    store: QueueStore, event_id: str
) -> None:
    first, second = await join_many(store, event_id, 2)
    assert (await store.enter(event_id, first.seq, first.joined_ms, "")).outcome is (
        EnterOutcome.GRANTED
    )
    throttled = await store.enter(event_id, second.seq, second.joined_ms, "")
    assert throttled.outcome is EnterOutcome.THROTTLED
    assert 0 < throttled.retry_after_ms <= REFILL_MS + 1

    await asyncio.sleep(REFILL_MS / 1000 / 2)
    half = await store.enter(event_id, second.seq, second.joined_ms, "")
    assert half.outcome is EnterOutcome.THROTTLED
    waited = half.now_ms - throttled.now_ms
    # The half token that refilled meanwhile was kept, so the wait left shrank by as much.
    assert abs(half.retry_after_ms - (throttled.retry_after_ms - waited)) <= 2

    await asyncio.sleep(half.retry_after_ms / 1000 + 0.01)
    done = await store.enter(event_id, second.seq, second.joined_ms, "")
    assert done.outcome is EnterOutcome.GRANTED


@pytest.mark.queue_settings(
    admission_window=10,
    min_wait=open_door(10),
    bucket_capacity=3,
    bucket_refill_per_sec=0.01,
)
async def test_the_bucket_holds_its_capacity_as_a_burst(store: QueueStore, event_id: str) -> None:
    joined = await join_many(store, event_id, 5)
    outcomes = [(await store.enter(event_id, j.seq, j.joined_ms, "")).outcome for j in joined]
    assert outcomes == [EnterOutcome.GRANTED] * 3 + [EnterOutcome.THROTTLED] * 2
    assert await positions(store, event_id, joined[3:]) == [1, 2]


@pytest.mark.queue_settings(
    admission_window=10,
    min_wait=open_door(10),
    bucket_capacity=1,
    bucket_refill_per_sec=0.01,
)
async def test_each_event_has_its_own_bucket(store: QueueStore, event_id: str) -> None:
    for event in (event_id, f"{event_id}-b"):
        first, second = await join_many(store, event, 2)
        assert (await store.enter(event, first.seq, first.joined_ms, "")).outcome is (
            EnterOutcome.GRANTED
        )
        assert (await store.enter(event, second.seq, second.joined_ms, "")).outcome is (
            EnterOutcome.THROTTLED
        )


async def test_a_user_admitted_once_cannot_join_again(store: QueueStore, event_id: str) -> None:
    """One admission per person: after alice's grant her place is gone (not a duplicate)
    and a new join is refused at once instead of after a whole wait at the door."""
    first = await store.join(event_id, "alice", "")
    await store.enter(event_id, first.seq, first.joined_ms, "alice")
    with pytest.raises(UserAlreadyAdmitted):
        await store.join(event_id, "alice", "")
    bob = await store.join(event_id, "bob", "")
    assert not bob.duplicate
