"""Heartbeat without ghosts: status keeps a waiter alive, the silent ones are swept."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import join_many, positions
from ticketgate.waitingroom.model import EnterOutcome, WaiterState
from ticketgate.waitingroom.store import QueueStore

TTL_MS = 300
POLL_EVERY = 0.06


async def _poll_for(store: QueueStore, event_id: str, seqs: list[int], seconds: float) -> None:
    """Poll like attentive clients for `seconds`, asserting they stay waiting."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while loop.time() < until:
        results = await asyncio.gather(*(store.status(event_id, seq) for seq in seqs))
        assert all(r.state is WaiterState.WAITING for r in results)
        await asyncio.sleep(POLL_EVERY)


@pytest.mark.queue_settings(heartbeat_ttl_ms=TTL_MS)
async def test_a_waiter_who_stops_polling_is_swept_and_no_longer_counts(
    store: QueueStore, event_id: str
) -> None:
    first, ghost, third, fourth = await join_many(store, event_id, 4)
    alive = [first.seq, third.seq, fourth.seq]

    await _poll_for(store, event_id, alive, TTL_MS / 1000 * 1.5)

    assert await store.sweep(event_id, 100) == 1, "only the silent waiter is a ghost"
    assert await store.sweep(event_id, 100) == 0
    assert await positions(store, event_id, [first, third, fourth]) == [1, 2, 3]
    assert await store.waiting_count(event_id) == 3
    swept = await store.status(event_id, ghost.seq)
    assert swept.state is WaiterState.EXPIRED
    assert swept.position == 0
    assert (await store.enter(event_id, ghost.seq, ghost.joined_ms, "")).outcome is (
        EnterOutcome.EXPIRED
    )


@pytest.mark.queue_settings(heartbeat_ttl_ms=TTL_MS)
async def test_a_polling_waiter_survives_past_the_ttl(store: QueueStore, event_id: str) -> None:
    (waiter,) = await join_many(store, event_id, 1)
    await _poll_for(store, event_id, [waiter.seq], TTL_MS / 1000 * 2.5)
    assert await store.sweep(event_id, 100) == 0
    assert (await store.status(event_id, waiter.seq)).position == 1


@pytest.mark.queue_settings(heartbeat_ttl_ms=TTL_MS)
async def test_a_ghost_asking_for_status_after_the_ttl_is_expired_without_a_sweep(
    store: QueueStore, event_id: str
) -> None:
    ghost, behind = await join_many(store, event_id, 2)
    await asyncio.sleep(TTL_MS / 1000 + 0.1)
    late = await store.status(event_id, ghost.seq)
    assert late.state is WaiterState.EXPIRED
    assert await store.waiting_count(event_id) == 1
    assert (await store.status(event_id, behind.seq)).state is WaiterState.EXPIRED
    assert await store.waiting_count(event_id) == 0


@pytest.mark.queue_settings(heartbeat_ttl_ms=TTL_MS)
async def test_a_ghost_trying_to_enter_after_the_ttl_is_expired(
    store: QueueStore, event_id: str
) -> None:
    (ghost,) = await join_many(store, event_id, 1)
    await asyncio.sleep(TTL_MS / 1000 + 0.1)
    result = await store.enter(event_id, ghost.seq, ghost.joined_ms, "")
    assert result.outcome is EnterOutcome.EXPIRED
    assert await store.waiting_count(event_id) == 0


@pytest.mark.queue_settings(heartbeat_ttl_ms=TTL_MS)
async def test_sweep_works_in_bounded_batches(store: QueueStore, event_id: str) -> None:
    await join_many(store, event_id, 5)
    await asyncio.sleep(TTL_MS / 1000 + 0.1)
    assert [await store.sweep(event_id, 2) for _ in range(4)] == [2, 2, 1, 0]
    assert await store.waiting_count(event_id) == 0


@pytest.mark.queue_settings(heartbeat_ttl_ms=TTL_MS)
async def test_sweep_removes_the_oldest_silence_first(store: QueueStore, event_id: str) -> None:
    _early, late, keeper = await join_many(store, event_id, 3)
    await asyncio.sleep(TTL_MS / 1000 / 2)
    await store.status(event_id, late.seq)
    await store.status(event_id, keeper.seq)
    await asyncio.sleep(TTL_MS / 1000 / 2 + 0.1)
    # Only `early` has been silent for longer than the TTL; `late` refreshed halfway.
    assert await store.sweep(event_id, 1) == 1
    assert await store.sweep(event_id, 1) == 0
    assert await positions(store, event_id, [late, keeper]) == [1, 2]


async def test_sweeping_an_unknown_event_removes_nothing(store: QueueStore, event_id: str) -> None:
    assert await store.sweep(event_id, 100) == 0
    (fresh,) = await join_many(store, event_id, 1)
    assert await store.sweep(event_id, 100) == 0, "a fresh waiter is not a ghost"
    assert (await store.status(event_id, fresh.seq)).position == 1
