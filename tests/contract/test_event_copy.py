"""The Redis store keeps a copy of each event's overrides and bucket between status calls
(version.lua): every fan polling one event would otherwise read the same event state. These
tests hold the copy to what Redis has, with the writes made by another worker (a second
store on the same Redis, as a second gateway process), and prove the copy is used."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis

from tests.conftest import make_redis_store
from tests.contract.conftest import join_many, lose_event_data, open_door
from ticketgate.queuestore.redis_store import RedisQueueStore
from ticketgate.waitingroom.eta import entry_grace_ms
from ticketgate.waitingroom.model import EnterOutcome, EventState
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore

SLOW = 0.001  # per second: tokens do not visibly refill within a test
TTL_MS = 4_000  # the entry grace is 2 s


@pytest.fixture
async def other_worker(
    redis_address: str, queue_settings: QueueSettings
) -> AsyncIterator[RedisQueueStore]:
    """A second Redis store on the same Redis: another gateway process's view."""
    store = make_redis_store(redis_address, queue_settings)
    await store.start()
    yield store
    await store.close()


def _hmget_calls(client: redis.Redis) -> int:
    """HMGETs Redis ran (it counts the commands scripts call): status.lua reads the bucket's
    version with one, the event's overrides and bucket with two more."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return stats.get("cmdstat_hmget", {}).get("calls", 0)


@pytest.mark.queue_settings(admission_window=10, min_wait=open_door(10))
async def test_redis_reads_an_events_state_once_until_it_changes(
    redis_store: QueueStore,
    other_worker: RedisQueueStore,
    redis_sync: redis.Redis,
    event_id: str,
) -> None:
    store = redis_store
    _first, *fans = await join_many(store, event_id, 6)
    before = _hmget_calls(redis_sync)
    await store.status(event_id, fans[0].seq)
    assert _hmget_calls(redis_sync) - before == 3, "the first status reads the event"
    before = _hmget_calls(redis_sync)
    for fan in fans:
        await store.status(event_id, fan.seq)
    assert _hmget_calls(redis_sync) - before == len(fans), "the copy is current: one HMGET each"

    await other_worker.configure(event_id, {"paused": "1"})
    before = _hmget_calls(redis_sync)
    assert (await store.status(event_id, fans[0].seq)).event_state is EventState.PAUSED
    assert _hmget_calls(redis_sync) - before == 3, "an override changed: read again"


@pytest.mark.queue_settings(
    admission_window=10, min_wait=open_door(10), bucket_capacity=5, bucket_refill_per_sec=SLOW
)
async def test_another_workers_overrides_and_grants_show_up_on_the_next_status(
    redis_store: QueueStore, other_worker: RedisQueueStore, event_id: str
) -> None:
    store = redis_store
    first, _second, fan = await join_many(store, event_id, 3)
    seen = await store.status(event_id, fan.seq)
    assert (seen.capacity, seen.frontier.used, seen.event_state) == (5, 0, EventState.OPEN)
    assert seen.frontier.tokens == 5.0

    await other_worker.configure(event_id, {"capacity": "3", "refill": "0.002", "window": "7"})
    seen = await store.status(event_id, fan.seq)
    assert (seen.capacity, seen.refill_per_sec, seen.admission_window) == (3, 0.002, 7)
    assert seen.frontier.tokens == 3.0, "a lowered capacity binds at once"

    granted = await other_worker.enter(event_id, first.seq, first.joined_ms, "")
    assert granted.outcome is EnterOutcome.GRANTED
    seen = await store.status(event_id, fan.seq)
    assert seen.frontier.used == 1
    assert seen.position == 2
    assert 2.0 <= seen.frontier.tokens < 2.01, "the grant took one earmark"
    assert seen.counts.last_1m == 1

    await other_worker.configure(event_id, {"soldout": "1"})
    assert (await store.status(event_id, fan.seq)).event_state is EventState.SOLD_OUT
    await other_worker.configure(event_id, {"soldout": "", "capacity": ""})
    seen = await store.status(event_id, fan.seq)
    assert (seen.event_state, seen.capacity) == (EventState.OPEN, 5)


def _counting_calls(client: redis.Redis) -> int:
    """ZRANGEs Redis ran: status.lua's admissions() (lua/counts.lua) starts with one."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return stats.get("cmdstat_zrange", {}).get("calls", 0)


@pytest.mark.queue_settings(
    admission_window=10, min_wait=open_door(10), bucket_capacity=5, bucket_refill_per_sec=SLOW
)
async def test_after_a_change_the_calls_send_the_new_copies_and_nothing_is_read_again(
    redis_store: QueueStore,
    other_worker: RedisQueueStore,
    redis_sync: redis.Redis,
    event_id: str,
) -> None:
    """The store packs what its copies send (the counts and the event's version) with the
    keys, once per change of either: after each change one status reads again, and the next
    ones send the new copies, so Redis reads neither again."""
    store = redis_store
    first, *fans = await join_many(store, event_id, 6)

    async def reads_after_one_status() -> tuple[int, int]:
        await store.status(event_id, fans[0].seq)  # reads what changed
        hmgets, counts = _hmget_calls(redis_sync), _counting_calls(redis_sync)
        for fan in fans[1:]:
            await store.status(event_id, fan.seq)
        return _hmget_calls(redis_sync) - hmgets, _counting_calls(redis_sync) - counts

    steady = (len(fans) - 1, 0)  # one HMGET of the version each, no counting
    assert await reads_after_one_status() == steady
    await other_worker.configure(event_id, {"capacity": "4"})  # the copy changes
    assert await reads_after_one_status() == steady
    granted = await other_worker.enter(event_id, first.seq, first.joined_ms, "")
    assert granted.outcome is EnterOutcome.GRANTED  # the counts and the copy change
    assert await reads_after_one_status() == steady
    # Only the counts change (as when their exact span ends with the clock): the admissions
    # granted move without a version bump, so one status counts again and the copy stays.
    redis_sync.hincrby(f"tg:{{{event_id}}}:bucket", "used", 1)
    assert await reads_after_one_status() == steady


@pytest.mark.queue_settings(
    admission_window=10,
    min_wait=open_door(10),
    bucket_capacity=2,
    bucket_refill_per_sec=SLOW,
    heartbeat_ttl_ms=TTL_MS,
)
async def test_another_workers_sweep_shows_up_on_the_next_status(
    redis_store: QueueStore, other_worker: RedisQueueStore, event_id: str
) -> None:
    """A sweep holds the earmark of a fan within the frontier who does not come: the bucket
    gives it up (tokens) and the held count takes it, both seen by a worker that kept a copy."""
    store = redis_store
    _silent, fan = await join_many(store, event_id, 2)
    before = await store.status(event_id, fan.seq)
    assert (before.frontier.tokens, before.frontier.held) == (2.0, 0)
    await asyncio.sleep(entry_grace_ms(TTL_MS) / 1000 + 0.2)
    await store.status(event_id, fan.seq)  # the fan is seen; the silent one is late
    await other_worker.sweep(event_id, 100)
    after = await store.status(event_id, fan.seq)
    assert after.frontier.held == 1
    assert 1.0 <= after.frontier.tokens < 1.01, "the held earmark left the bucket"


@pytest.mark.queue_settings(
    admission_window=10, min_wait=open_door(10), bucket_capacity=4, bucket_refill_per_sec=SLOW
)
async def test_a_copy_from_an_earlier_life_of_the_event_is_not_used(
    redis_store: QueueStore, event_id: str, request: pytest.FixtureRequest
) -> None:
    """Redis loses the event (a restart without persistence) and a new life starts: the new
    bucket's version never equals the lost one's, so the full new bucket is read."""
    store = redis_store
    first, fan = await join_many(store, event_id, 2)
    await store.enter(event_id, first.seq, first.joined_ms, "")
    old = await store.status(event_id, fan.seq)
    assert (old.frontier.used, round(old.frontier.tokens)) == (1, 3)

    lose_event_data(store, event_id, request)
    (newcomer,) = await join_many(store, event_id, 1)
    # a second write, as the lost life had (join, grant): a plain counter would be back at
    # the version the copy holds
    await store.configure(event_id, {"window": "10"})
    new = await store.status(event_id, newcomer.seq)
    assert (new.frontier.used, new.frontier.tokens, new.position) == (0, 4.0, 1)
