"""Status carries the admission counts the ETA is computed from."""

from __future__ import annotations

import pytest

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
