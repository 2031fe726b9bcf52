"""Strict FIFO: order comes from the join sequence, positions close up when anyone leaves."""

from __future__ import annotations

import asyncio
import itertools

from tests.contract.conftest import join_many, positions
from ticketgate.waitingroom.model import LeaveOutcome, WaiterState
from ticketgate.waitingroom.store import QueueStore

CONCURRENT_JOINS = 2_000


async def test_fifo_holds_for_2000_concurrent_joins(store: QueueStore, event_id: str) -> None:
    joined = await asyncio.gather(
        *(store.join(event_id, f"user-{i}" if i % 2 else "", "") for i in range(CONCURRENT_JOINS))
    )

    seqs = [j.seq for j in joined]
    assert len(set(seqs)) == CONCURRENT_JOINS, "every join gets its own sequence number"
    assert not any(j.duplicate for j in joined)
    # The position a join reports is the queue length right after it, so in seq order the
    # join-time positions are exactly 1..N: no two joins saw the same tail.
    by_seq = sorted(joined, key=lambda j: j.seq)
    assert [j.position for j in by_seq] == list(range(1, CONCURRENT_JOINS + 1))
    # Joined-at times never run backwards along the sequence.
    joined_at = [j.joined_ms for j in by_seq]
    assert joined_at == sorted(joined_at)

    now = await positions(store, event_id, by_seq)
    assert now == list(range(1, CONCURRENT_JOINS + 1)), "positions are the seq order, no inversion"
    assert await store.waiting_count(event_id) == CONCURRENT_JOINS


async def test_a_leave_moves_everyone_behind_up_by_one(store: QueueStore, event_id: str) -> None:
    joined = await join_many(store, event_id, 10)
    before = await positions(store, event_id, joined)
    assert before == list(range(1, 11))

    assert await store.leave(event_id, joined[3].seq, "") is LeaveOutcome.LEFT

    after = await positions(store, event_id, joined)
    assert after[:3] == before[:3], "those ahead keep their place"
    assert after[3] == 0
    assert after[4:] == [p - 1 for p in before[4:]], "everyone behind moves up by one"
    assert await store.waiting_count(event_id) == 9
    gone = await store.status(event_id, joined[3].seq)
    assert gone.state is WaiterState.EXPIRED
    assert gone.position == 0


async def test_leaving_twice_or_after_entering_is_not_waiting(
    store: QueueStore, event_id: str
) -> None:
    first, second = await join_many(store, event_id, 2)
    assert await store.leave(event_id, first.seq, "") is LeaveOutcome.LEFT
    assert await store.leave(event_id, first.seq, "") is LeaveOutcome.NOT_WAITING
    assert await store.leave(event_id, 10_000, "") is LeaveOutcome.NOT_WAITING
    assert await store.leave(f"{event_id}-other", second.seq, "") is LeaveOutcome.NOT_WAITING
    assert (await store.status(event_id, second.seq)).position == 1


async def test_the_head_leaving_promotes_the_next_to_the_front(
    store: QueueStore, event_id: str
) -> None:
    joined = await join_many(store, event_id, 3)
    for leaving, next_head in itertools.pairwise(joined):
        await store.leave(event_id, leaving.seq, "")
        assert (await store.status(event_id, next_head.seq)).position == 1
    assert await store.waiting_count(event_id) == 1


async def test_events_are_separate_queues(store: QueueStore, event_id: str) -> None:
    other = f"{event_id}-b"
    a1 = await store.join(event_id, "", "")
    b1 = await store.join(other, "", "")
    a2 = await store.join(event_id, "", "")
    assert (a1.position, b1.position, a2.position) == (1, 1, 2)
    await store.leave(other, b1.seq, "")
    assert (await store.status(event_id, a2.seq)).position == 2
    assert await store.waiting_count(other) == 0
    assert await store.waiting_count(event_id) == 2


async def test_a_new_join_lands_behind_everyone_still_waiting(
    store: QueueStore, event_id: str
) -> None:
    joined = await join_many(store, event_id, 5)
    await store.leave(event_id, joined[1].seq, "")
    late = await store.join(event_id, "", "")
    assert late.seq > joined[-1].seq
    assert late.position == 5
    assert (await store.status(event_id, late.seq)).position == 5
