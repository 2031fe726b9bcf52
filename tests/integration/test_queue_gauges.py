"""Queue gauges read from a real Redis store at scrape time, bounded to the largest events."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client.metrics_core import Metric

from tests.conftest import TEST_SECRET, make_redis_store
from tests.contract.conftest import join_many
from ticketgate.observability.queue_gauges import QueueGauges
from ticketgate.waitingroom.events import EventAdmin
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings


def _samples(families: Iterable[Metric], name: str) -> dict[str, float]:
    (family,) = [f for f in families if f.name == name]
    return {sample.labels["event_id"]: sample.value for sample in family.samples}


async def test_refresh_and_collect_report_waiting_users_and_admission_rate(
    redis_address: str, event_id: str
) -> None:
    settings = QueueSettings(
        token_secret=TEST_SECRET,
        admission_window=5,
        min_wait=(MinWaitRule(5, 0),),
        bucket_capacity=10,
        bucket_refill_per_sec=0.001,
    )
    store = make_redis_store(redis_address, settings)
    await store.start()
    try:
        room = WaitingRoom(store, settings)
        busy, quiet, tiny = f"{event_id}-busy", f"{event_id}-quiet", f"{event_id}-tiny"
        joined = await join_many(store, busy, 9)
        for waiter in joined[:3]:  # 3 admitted in the last minute
            granted = await store.enter(busy, waiter.seq, waiter.joined_ms, "")
            assert granted.outcome.name == "GRANTED"
        await join_many(store, quiet, 2)
        await join_many(store, tiny, 1)
        room.active_events.update({busy, quiet, tiny})
        await room.sweep_once()  # records the events in the registry

        gauges = QueueGauges(EventAdmin(room), top=2)
        assert next(iter(gauges.collect())).samples == []  # nothing before the first refresh
        await gauges.refresh()
        families = list(gauges.collect())
        assert [f.type for f in families] == ["gauge"] * 5
        waiting = _samples(families, "queue_waiting_users")
        rate = _samples(families, "queue_admission_rate")
        assert len(waiting) == 2  # bounded to the top 2 of the whole registry
        if busy in waiting:  # other tests on this Redis may hold larger events
            assert waiting[busy] == 6
            # 3 admissions out of the initial fill of 10: nothing measured as released yet.
            assert rate[busy] == pytest.approx(0, abs=0.01)
            frontier = {
                part: _samples(families, f"queue_frontier_{part}")[busy]
                for part in ("released", "used", "earmarked")
            }
            assert frontier == {"released": 10, "used": 3, "earmarked": 7}
        wide = QueueGauges(EventAdmin(room), top=10_000)
        await wide.refresh()
        waiting = _samples(list(wide.collect()), "queue_waiting_users")
        assert (waiting[busy], waiting[quiet], waiting[tiny]) == (6, 2, 1)
        assert _samples(list(wide.collect()), "queue_admission_rate")[quiet] == 0
    finally:
        await store.close()
