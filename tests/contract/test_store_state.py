"""Both stores keep the same state, not just the same answers: after the same joins,
leaves, enters and sweeps, every structure of an event (order, heartbeats, the users and
owners HASHes, admissions, reservations, idempotency keys, overrides) is equal. A Redis
structure the memory store cleans but Redis does not (the users HASH of swept signed-in
waiters once grew without bound) shows up here as a difference."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from tests.conftest import TEST_SECRET, make_redis_store
from tests.contract.conftest import open_door, store_state
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.waitingroom.model import EnterOutcome, JoinResult, WaiterState
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore

HEARTBEAT_MS = 1_000
SETTINGS = QueueSettings(
    token_secret=TEST_SECRET,
    heartbeat_ttl_ms=HEARTBEAT_MS,
    admission_window=10,
    min_wait=open_door(10),
)


@pytest.fixture
async def both(redis_address: str) -> AsyncIterator[tuple[MemoryQueueStore, QueueStore]]:
    memory = MemoryQueueStore(SETTINGS)
    on_redis = make_redis_store(redis_address, SETTINGS)
    await on_redis.start()
    yield memory, on_redis
    await on_redis.close()


async def test_both_stores_keep_the_same_state_after_leave_enter_and_sweep(
    both: tuple[MemoryQueueStore, QueueStore], redis_sync: redis.Redis
) -> None:
    memory, on_redis = both
    event_id = f"evt_{uuid.uuid4().hex[:12]}"
    stores: tuple[QueueStore, ...] = (memory, on_redis)

    async def each(step: str, call: object) -> list[object]:
        results = []
        for store in stores:
            results.append(await call(store))  # type: ignore[operator]
        memory_state = store_state(memory, event_id, None)
        redis_state = store_state(on_redis, event_id, redis_sync)
        assert memory_state == redis_state, f"stores differ after {step}"
        return results

    places: dict[str, list[JoinResult]] = {}
    for user, key in (
        ("alice", ""),
        ("bob", ""),
        ("", ""),
        ("carol", "k-carol"),
        ("", "k-anon"),
        ("dave", ""),
        ("erin", ""),
        ("", ""),
    ):
        name = user or f"anon{len(places)}"
        joined = await each(f"join {name}", lambda s, u=user, k=key: s.join(event_id, u, k))
        places[name] = joined  # type: ignore[assignment]
        assert len({(j.seq, j.position) for j in places[name]}) == 1, "same seq and position"

    def seq(name: str) -> int:
        return places[name][0].seq

    def joined_ms(name: str, index: int) -> int:
        return places[name][index].joined_ms

    # leave: bob's place and his users/owners entries go
    await each("leave bob", lambda s: s.leave(event_id, seq("bob"), "bob"))
    # enter: alice with her own place, an anonymous place entered by frank
    granted = await each(
        "enter alice",
        lambda s: s.enter(event_id, seq("alice"), joined_ms("alice", stores.index(s)), "alice"),
    )
    assert all(r.outcome is EnterOutcome.GRANTED for r in granted)  # type: ignore[attr-defined]
    await each(
        "enter anon2 as frank",
        lambda s: s.enter(event_id, seq("anon2"), joined_ms("anon2", stores.index(s)), "frank"),
    )
    # sweep: everyone but carol and erin goes silent past the heartbeat TTL
    deadline = asyncio.get_running_loop().time() + HEARTBEAT_MS / 1000 + 0.3
    while asyncio.get_running_loop().time() < deadline:
        for store in stores:
            for name in ("carol", "erin"):
                state = (await store.status(event_id, seq(name))).state
                assert state is WaiterState.WAITING
        await asyncio.sleep(0.1)
    removed = await each("sweep", lambda s: s.sweep(event_id, 100))
    assert removed == [3, 3], "dave and two anonymous waiters"

    final = store_state(on_redis, event_id, redis_sync)
    assert final["users"] == {"carol": seq("carol"), "erin": seq("erin")}
    assert final["owners"] == {seq("carol"): "carol", seq("erin"): "erin"}
    assert final["admitted_users"] == {"alice": seq("alice"), "frank": seq("anon2")}


async def test_a_stale_signed_in_waiter_removed_by_status_or_enter_leaves_no_user_entry(
    both: tuple[MemoryQueueStore, QueueStore], redis_sync: redis.Redis
) -> None:
    """Status and enter expire a silent waiter themselves, without the sweeper."""
    memory, on_redis = both
    event_id = f"evt_{uuid.uuid4().hex[:12]}"
    for store in (memory, on_redis):
        gone_by_status = await store.join(event_id, "gus", "")
        gone_by_enter = await store.join(event_id, "hal", "")
        await asyncio.sleep(HEARTBEAT_MS / 1000 + 0.1)
        assert (await store.status(event_id, gone_by_status.seq)).state is WaiterState.EXPIRED
        entered = await store.enter(event_id, gone_by_enter.seq, gone_by_enter.joined_ms, "hal")
        assert entered.outcome is EnterOutcome.EXPIRED
    state = store_state(on_redis, event_id, redis_sync)
    assert state == store_state(memory, event_id, None)
    assert (state["users"], state["owners"], state["waiting"]) == ({}, {}, [])
