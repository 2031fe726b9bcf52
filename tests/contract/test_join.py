"""Join is idempotent per authenticated user and per Idempotency-Key, never for anonymous."""

from __future__ import annotations

import asyncio

import pytest

from ticketgate.waitingroom.model import WaiterState
from ticketgate.waitingroom.store import QueueStore


async def test_same_user_joining_again_gets_the_existing_place(
    store: QueueStore, event_id: str
) -> None:
    first = await store.join(event_id, "alice", "")
    await store.join(event_id, "bob", "")
    again = await store.join(event_id, "alice", "")
    assert not first.duplicate
    assert again.duplicate
    assert (again.seq, again.joined_ms, again.position) == (first.seq, first.joined_ms, 1)
    assert await store.waiting_count(event_id) == 2


async def test_concurrent_joins_by_one_user_hold_one_place(
    store: QueueStore, event_id: str
) -> None:
    results = await asyncio.gather(*(store.join(event_id, "alice", "") for _ in range(20)))
    assert len({r.seq for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert await store.waiting_count(event_id) == 1


async def test_anonymous_joins_are_never_deduplicated(store: QueueStore, event_id: str) -> None:
    results = [await store.join(event_id, "", "") for _ in range(3)]
    assert len({r.seq for r in results}) == 3
    assert [r.position for r in results] == [1, 2, 3]
    assert not any(r.duplicate for r in results)


async def test_same_user_in_another_event_is_a_new_waiter(store: QueueStore, event_id: str) -> None:
    here = await store.join(event_id, "alice", "")
    there = await store.join(f"{event_id}-b", "alice", "")
    assert not there.duplicate
    assert there.position == 1
    assert (await store.status(event_id, here.seq)).position == 1


@pytest.mark.parametrize("user", ["alice", ""])
async def test_same_idempotency_key_replays_the_same_place(
    store: QueueStore, event_id: str, user: str
) -> None:
    first = await store.join(event_id, user, "key-1")
    await store.join(event_id, "", "")
    replay = await store.join(event_id, user, "key-1")
    assert (replay.seq, replay.joined_ms) == (first.seq, first.joined_ms)
    assert replay.position == 1
    assert not replay.duplicate, "a replay is the same response, not a duplicate-user refusal"
    assert await store.waiting_count(event_id) == 2


async def test_idempotency_keys_are_scoped_by_user(store: QueueStore, event_id: str) -> None:
    alice = await store.join(event_id, "alice", "shared-key")
    bob = await store.join(event_id, "bob", "shared-key")
    anonymous = await store.join(event_id, "", "shared-key")
    assert len({alice.seq, bob.seq, anonymous.seq}) == 3
    assert await store.waiting_count(event_id) == 3


async def test_different_keys_by_one_anonymous_client_are_different_waiters(
    store: QueueStore, event_id: str
) -> None:
    one = await store.join(event_id, "", "key-1")
    two = await store.join(event_id, "", "key-2")
    assert one.seq != two.seq


async def test_a_key_replay_after_leaving_reports_no_position(
    store: QueueStore, event_id: str
) -> None:
    first = await store.join(event_id, "", "key-1")
    await store.leave(event_id, first.seq, "")
    replay = await store.join(event_id, "", "key-1")
    assert replay.seq == first.seq
    assert replay.position == 0
    assert await store.waiting_count(event_id) == 0


async def test_a_user_who_left_can_join_again_at_the_tail(store: QueueStore, event_id: str) -> None:
    first = await store.join(event_id, "alice", "")
    await store.join(event_id, "bob", "")
    await store.leave(event_id, first.seq, "alice")
    again = await store.join(event_id, "alice", "")
    assert not again.duplicate
    assert again.seq > first.seq
    assert again.position == 2
    assert (await store.status(event_id, first.seq)).state is WaiterState.EXPIRED


@pytest.mark.queue_settings(heartbeat_ttl_ms=300)
async def test_a_user_whose_place_expired_joins_again_at_the_tail(
    store: QueueStore, event_id: str
) -> None:
    stale = await store.join(event_id, "alice", "")
    await asyncio.sleep(0.4)
    again = await store.join(event_id, "alice", "")
    assert not again.duplicate, "an expired place is not handed back"
    assert again.seq != stale.seq
    assert again.position == 1, "the expired place no longer counts ahead of the new one"
    assert (await store.status(event_id, stale.seq)).state is WaiterState.EXPIRED
    assert (await store.status(event_id, again.seq)).position == 1


@pytest.mark.queue_settings(idempotency_ttl_ms=700)
async def test_the_idempotency_key_lives_idempotency_ttl_sec_not_a_day(
    store: QueueStore, event_id: str
) -> None:
    first = await store.join(event_id, "", "key-1")
    assert (await store.join(event_id, "", "key-1")).seq == first.seq
    await asyncio.sleep(0.8)
    assert (await store.join(event_id, "", "key-1")).seq != first.seq
