"""Status carries the admission counts the ETA is computed from."""

from __future__ import annotations

import asyncio

import pytest
import redis

from tests.contract.conftest import Stopwatch, join_many, open_door
from ticketgate.waitingroom.model import EnterOutcome, WaiterState
from ticketgate.waitingroom.store import QueueStore


async def test_a_fresh_event_has_no_admissions(store: QueueStore, event_id: str) -> None:
    (waiter,) = await join_many(store, event_id, 1)
    status = await store.status(event_id, waiter.seq)
    counts = status.counts
    assert (counts.last_1m, counts.last_5m, counts.last_15m, counts.covered_ms) == (0, 0, 0, 0)


@pytest.mark.queue_settings(admission_window=10, min_wait=open_door(10))
async def test_admissions_show_up_in_every_window(store: QueueStore, event_id: str) -> None:
    joined = await join_many(store, event_id, 5)
    clock = Stopwatch()
    for waiter in joined[:3]:
        result = await store.enter(event_id, waiter.seq, waiter.joined_ms, "")
        assert result.outcome is EnterOutcome.GRANTED

    waiting = await store.status(event_id, joined[3].seq)
    assert waiting.position == 1
    counts = waiting.counts
    assert (counts.last_1m, counts.last_5m, counts.last_15m) == (3, 3, 3)
    assert 0 <= counts.covered_ms <= clock.elapsed * 1000 + 5

    admitted = await store.status(event_id, joined[0].seq)
    assert admitted.state is WaiterState.ADMITTED
    assert admitted.counts.last_15m == 3


@pytest.mark.queue_settings(admission_window=10, min_wait=open_door(10))
async def test_refusals_and_leaves_are_not_admissions(store: QueueStore, event_id: str) -> None:
    first, second, third = await join_many(store, event_id, 3)
    await store.leave(event_id, first.seq, "")
    await store.enter(event_id, first.seq, first.joined_ms, "")
    await store.enter(event_id, second.seq, second.joined_ms, "")
    await store.enter(event_id, second.seq, second.joined_ms, "")
    counts = (await store.status(event_id, third.seq)).counts
    assert (counts.last_1m, counts.last_5m, counts.last_15m) == (1, 1, 1)


@pytest.mark.queue_settings(admission_window=10, min_wait=open_door(10))
async def test_an_admission_after_a_status_shows_up_in_the_next_one(
    store: QueueStore, event_id: str
) -> None:
    """A store may keep an event's counts between status calls (the Redis store does, so
    fans polling one event do not count its admissions again); a new admission must still
    show up on the very next status, and the covered time keeps growing without one."""
    first, second, third = await join_many(store, event_id, 3)
    assert (await store.status(event_id, third.seq)).counts.last_1m == 0
    assert (await store.enter(event_id, first.seq, first.joined_ms, "")).outcome is (
        EnterOutcome.GRANTED
    )
    after_one = (await store.status(event_id, third.seq)).counts
    assert (after_one.last_1m, after_one.last_5m, after_one.last_15m) == (1, 1, 1)
    await asyncio.sleep(0.05)
    later = (await store.status(event_id, third.seq)).counts
    assert (later.last_1m, later.last_5m, later.last_15m) == (1, 1, 1)
    assert later.covered_ms >= after_one.covered_ms + 40
    assert (await store.enter(event_id, second.seq, second.joined_ms, "")).outcome is (
        EnterOutcome.GRANTED
    )
    assert (await store.status(event_id, third.seq)).counts.last_15m == 2


def _counting_calls(client: redis.Redis) -> int:
    """Commands only counts.lua runs in status (Redis counts the commands a script calls;
    ZCOUNT is left out: the frontier counts the held earmarks with it on every status)."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    names = ("cmdstat_zrangebyscore", "cmdstat_zrange")
    return sum(stats.get(name, {}).get("calls", 0) for name in names)


def admit_before(client: redis.Redis, event_id: str, ages_ms: dict[str, int]) -> None:
    """Admissions `ages_ms` old by Redis' clock, written as enter.lua keeps them (seq: age)."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    client.zadd(f"tg:{{{event_id}}}:adm", {seq: now_ms - age for seq, age in ages_ms.items()})


@pytest.mark.queue_settings(admission_window=10, min_wait=open_door(10))
async def test_redis_counts_an_events_admissions_once_until_they_change(
    redis_store: QueueStore, redis_sync: redis.Redis, event_id: str
) -> None:
    store = redis_store
    first, second, *fans = await join_many(store, event_id, 6)
    await store.enter(event_id, first.seq, first.joined_ms, "")
    before = _counting_calls(redis_sync)
    assert (await store.status(event_id, fans[0].seq)).counts.last_1m == 1
    assert _counting_calls(redis_sync) > before, "the first status counts"
    before = _counting_calls(redis_sync)
    for fan in fans:
        assert (await store.status(event_id, fan.seq)).counts.last_1m == 1
    assert _counting_calls(redis_sync) == before, "the same counts: not counted again"
    await store.enter(event_id, second.seq, second.joined_ms, "")
    assert (await store.status(event_id, fans[0].seq)).counts.last_1m == 2
    assert _counting_calls(redis_sync) > before, "a new admission: counted again"


async def test_redis_counts_again_when_an_admission_leaves_its_window(
    redis_store: QueueStore, redis_sync: redis.Redis, event_id: str
) -> None:
    """Without a new admission the kept counts go stale only when the oldest admission in a
    window leaves it: here one granted 58.5 s ago, which leaves the last minute in 1.5 s."""
    (fan,) = await join_many(redis_store, event_id, 1)
    admit_before(redis_sync, event_id, {"999": 60_000 - 1_500})
    counts = (await redis_store.status(event_id, fan.seq)).counts
    assert (counts.last_1m, counts.last_5m, counts.last_15m) == (1, 1, 1)
    await asyncio.sleep(1.6)
    counts = (await redis_store.status(event_id, fan.seq)).counts
    assert (counts.last_1m, counts.last_5m, counts.last_15m) == (0, 1, 1)
    assert counts.covered_ms > 60_000


async def test_redis_counts_each_window_of_older_admissions(
    redis_store: QueueStore, redis_sync: redis.Redis, event_id: str
) -> None:
    """Admissions 10 and 30 s, 200 s and 600 s old: each window counts its own, status, its
    kept copy and the operator's stats alike."""
    (fan,) = await join_many(redis_store, event_id, 1)
    admit_before(
        redis_sync, event_id, {"901": 600_000, "902": 200_000, "903": 30_000, "904": 10_000}
    )
    for counts in (
        (await redis_store.status(event_id, fan.seq)).counts,
        (await redis_store.status(event_id, fan.seq)).counts,
        (await redis_store.event_stats(event_id)).counts,
    ):
        assert (counts.last_1m, counts.last_5m, counts.last_15m) == (2, 3, 4)
        assert 600_000 <= counts.covered_ms < 660_000
