"""Runtime settings per event (window, bucket, rate, paused, closed), event stats and the
registry: the same behaviour on both stores, read by join/status/enter in their own step."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import TEST_SECRET, make_redis_store
from tests.contract.conftest import join_many, open_door
from ticketgate.queuestore import redis_store
from ticketgate.waitingroom.events import EventAdmin, SettingsChange
from ticketgate.waitingroom.model import (
    MARK_EVERY,
    AdmissionsPaused,
    EnterOutcome,
    EventOverrides,
    EventState,
    InvalidSetting,
    QueueClosed,
    WaiterState,
)
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore

OPEN_5 = {"admission_window": 5, "min_wait": open_door(5)}


@pytest.fixture
def room(store: QueueStore, queue_settings: QueueSettings) -> WaitingRoom:
    return WaitingRoom(store, queue_settings)


@pytest.fixture
def admin(room: WaitingRoom) -> EventAdmin:
    return EventAdmin(room)


async def test_an_event_without_overrides_uses_the_process_settings(
    store: QueueStore, event_id: str, queue_settings: QueueSettings
) -> None:
    (waiter,) = await join_many(store, event_id, 1)
    status = await store.status(event_id, waiter.seq)
    assert status.admission_window == queue_settings.admission_window
    assert status.refill_per_sec == queue_settings.bucket_refill_per_sec
    assert status.event_state is EventState.OPEN
    stats = await store.event_stats(event_id)
    assert stats.overrides == EventOverrides()


@pytest.mark.queue_settings(**OPEN_5)
async def test_a_narrower_window_takes_effect_on_the_next_enter_and_reset_restores_it(
    store: QueueStore, event_id: str
) -> None:
    joined = await join_many(store, event_id, 3)
    third = joined[2]
    before, after = await store.configure(event_id, {"window": "2"})
    assert (before.admission_window, after.admission_window) == (None, 2)
    assert (await store.status(event_id, third.seq)).admission_window == 2
    refused = await store.enter(event_id, third.seq, third.joined_ms, "")
    assert (refused.outcome, refused.position) == (EnterOutcome.NOT_READY, 3)

    _, reset = await store.configure(event_id, {"window": ""})
    assert reset.admission_window is None
    assert (await store.status(event_id, third.seq)).admission_window == 5
    granted = await store.enter(event_id, third.seq, third.joined_ms, "")
    assert granted.outcome is EnterOutcome.GRANTED


@pytest.mark.queue_settings(**OPEN_5)
async def test_a_closed_queue_refuses_newcomers_but_keeps_those_inside(
    store: QueueStore, event_id: str
) -> None:
    inside = await store.join(event_id, "alice", "")
    await store.configure(event_id, {"closed": "1"})
    with pytest.raises(QueueClosed) as refused:
        await store.join(event_id, "bob", "")
    assert refused.value.code == "QUEUE_CLOSED"
    with pytest.raises(QueueClosed):
        await store.join(event_id, "", "")
    again = await store.join(event_id, "alice", "")  # a repeated join gets the place back
    assert (again.seq, again.duplicate) == (inside.seq, True)
    assert await store.waiting_count(event_id) == 1
    granted = await store.enter(event_id, inside.seq, inside.joined_ms, "alice")
    assert granted.outcome is EnterOutcome.GRANTED

    await store.configure(event_id, {"closed": ""})
    assert (await store.join(event_id, "bob", "")).duplicate is False


@pytest.mark.queue_settings(**OPEN_5)
async def test_paused_admissions_refuse_enter_and_nobody_is_ready(
    store: QueueStore, room: WaitingRoom, event_id: str
) -> None:
    joined = await room.join(event_id, "alice")
    await store.configure(event_id, {"paused": "1"})
    view = await room.status(joined.waiting_token)
    assert (view.status, view.position, view.ready_for_entry) == ("waiting", 1, False)
    with pytest.raises(AdmissionsPaused) as refused:
        await room.enter(joined.waiting_token, "alice")
    assert refused.value.code == "ADMISSIONS_PAUSED"
    assert refused.value.retry_after_sec
    assert await store.waiting_count(event_id) == 1  # the waiter keeps the place

    await store.configure(event_id, {"paused": ""})
    assert (await room.status(joined.waiting_token)).ready_for_entry is True
    admission = await room.enter(joined.waiting_token, "alice")
    assert admission.reservation_token


@pytest.mark.queue_settings(**OPEN_5)
async def test_bucket_capacity_and_rate_overrides_throttle_the_door(
    store: QueueStore, event_id: str
) -> None:
    first, second = await join_many(store, event_id, 2)
    await store.configure(event_id, {"capacity": "1", "refill": "0.01"})
    status = await store.status(event_id, second.seq)
    assert status.refill_per_sec == 0.01
    assert (await store.enter(event_id, first.seq, first.joined_ms, "")).outcome is (
        EnterOutcome.GRANTED
    )
    throttled = await store.enter(event_id, second.seq, second.joined_ms, "")
    assert throttled.outcome is EnterOutcome.THROTTLED
    assert 90_000 <= throttled.retry_after_ms <= 100_001  # one token at 0.01/s


@pytest.mark.queue_settings(
    admission_window=10,
    min_wait=open_door(10),
    bucket_capacity=2,
    bucket_refill_per_sec=0.001,
)
@pytest.mark.parametrize("when", ["before the first join", "after joins"])
async def test_a_raised_capacity_fills_a_new_events_bucket_on_both_stores(
    store: QueueStore, event_id: str, when: str
) -> None:
    """A new event's bucket starts full at the operator's capacity (5), not the process's
    (2): the memory store once granted 2 where Redis granted 5."""
    if when == "before the first join":
        await store.configure(event_id, {"capacity": "5"})
    joined = await join_many(store, event_id, 8)
    if when == "after joins":
        await store.configure(event_id, {"capacity": "5"})
    outcomes = [(await store.enter(event_id, j.seq, j.joined_ms, "")).outcome for j in joined]
    assert outcomes == [EnterOutcome.GRANTED] * 5 + [EnterOutcome.THROTTLED] * 3


async def test_stats_count_waiters_admissions_and_age_the_head(
    store: QueueStore, event_id: str
) -> None:
    joined = await join_many(store, event_id, MARK_EVERY + 3)
    granted = await store.enter(event_id, joined[0].seq, joined[0].joined_ms, "")
    assert granted.outcome is EnterOutcome.GRANTED
    await store.configure(event_id, {"paused": "1", "capacity": "7"})
    stats = await store.event_stats(event_id)
    assert stats.waiting == MARK_EVERY + 2
    assert stats.counts.last_1m == 1
    # The head (seq 2) is aged by the mark at seq 1: never younger than it really is.
    assert stats.head_joined_ms == joined[0].joined_ms
    assert stats.now_ms >= stats.head_joined_ms
    assert stats.overrides == EventOverrides(bucket_capacity=7, paused=True)

    for waiter in joined[1 : MARK_EVERY + 1]:  # the head moves past the next mark
        await store.leave(event_id, waiter.seq, "")
    stats = await store.event_stats(event_id)
    assert stats.waiting == 2
    assert stats.head_joined_ms == joined[MARK_EVERY].joined_ms


async def test_stats_of_an_unknown_event_are_zeros(store: QueueStore, event_id: str) -> None:
    stats = await store.event_stats(event_id)
    assert (stats.waiting, stats.counts.last_15m, stats.head_joined_ms) == (0, 0, 0)
    assert stats.overrides == EventOverrides()


async def test_the_listing_has_the_events_this_process_saw_most_waiting_first(
    store: QueueStore, room: WaitingRoom, admin: EventAdmin, event_id: str
) -> None:
    small, big = f"{event_id}-small", f"{event_id}-big"
    await join_many(store, small, 1)
    for user in range(3):
        await room.join(big, f"user-{user}")
    await room.join(small, "someone")
    await room.sweep_once()  # records the events in the registry
    views = await admin.list(1000)
    ids = [view.event_id for view in views]
    assert ids.index(big) < ids.index(small)
    by_id = {view.event_id: view for view in views}
    assert (by_id[big].waiting, by_id[small].waiting) == (3, 2)
    assert [v.waiting for v in views] == sorted((v.waiting for v in views), reverse=True)
    assert len(await admin.list(1)) == 1


async def test_admin_updates_validate_ranges_and_report_before_and_after(
    admin: EventAdmin, event_id: str, queue_settings: QueueSettings
) -> None:
    before, view = await admin.update(
        event_id, SettingsChange(admission_window=50, bucket_refill_per_sec=2.5, closed=True)
    )
    assert before == EventOverrides()
    assert view.settings.admission_window == 50
    assert view.settings.bucket_refill_per_sec == 2.5
    assert view.settings.bucket_capacity == queue_settings.bucket_capacity
    assert view.settings.closed is True
    assert event_id in [v.event_id for v in await admin.list(1000)]  # listed before any join

    before, view = await admin.update(
        event_id, SettingsChange(closed=False, reset=frozenset({"admission_window"}))
    )
    assert (before.admission_window, before.closed) == (50, True)
    assert view.settings.admission_window == queue_settings.admission_window
    assert view.overrides == EventOverrides(bucket_refill_per_sec=2.5)

    last_rule = queue_settings.min_wait[-1].max_position
    for bad, field in [
        (SettingsChange(admission_window=0), "admission_window"),
        (SettingsChange(admission_window=last_rule + 1), "admission_window"),
        (SettingsChange(bucket_capacity=0), "bucket_capacity"),
        (SettingsChange(bucket_refill_per_sec=0.0), "bucket_refill_per_sec"),
        (SettingsChange(reset=frozenset({"paused"})), "reset"),
    ]:
        with pytest.raises(InvalidSetting, match=field):
            await admin.update(event_id, bad)


async def test_sweep_now_removes_ghosts_of_one_event(
    store: QueueStore, admin: EventAdmin, event_id: str
) -> None:
    await join_many(store, event_id, 3)
    assert await admin.sweep(event_id) == 0  # nobody is a ghost yet


async def test_a_ghost_swept_now_is_counted(
    redis_address: str, event_id: str, redis_sync: redis.Redis
) -> None:
    settings = QueueSettings(token_secret=TEST_SECRET, heartbeat_ttl_ms=60_000)
    store = make_redis_store(redis_address, settings)
    try:
        await join_many(store, event_id, 4)
        redis_sync.zincrby(f"tg:{{{event_id}}}:seen", -120_000, "1")  # seq 1: unseen for 2 min
        admin = EventAdmin(WaitingRoom(store, settings))
        assert await admin.sweep(event_id) == 1
        assert await store.waiting_count(event_id) == 3
    finally:
        await store.close()


async def test_the_redis_registry_keeps_only_the_largest_events(
    redis_address: str, event_id: str, monkeypatch: pytest.MonkeyPatch, redis_sync: redis.Redis
) -> None:
    monkeypatch.setattr(redis_store, "REGISTRY_CAP", 3)
    store = make_redis_store(redis_address, QueueSettings())
    try:
        counts = {f"{event_id}-{n}": 1000 + n for n in range(5)}
        await store.register_events(counts)
        assert redis_sync.zcard(redis_store.REGISTRY_KEY) == 3
        assert await store.list_events(2) == [f"{event_id}-4", f"{event_id}-3"]
    finally:
        await store.close()


async def test_waiter_state_is_untouched_by_reading_stats(store: QueueStore, event_id: str) -> None:
    (waiter,) = await join_many(store, event_id, 1)
    await store.event_stats(event_id)
    assert (await store.status(event_id, waiter.seq)).state is WaiterState.WAITING
