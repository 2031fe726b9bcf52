"""Registered events and sold out, on both stores: with QUEUE_AUTO_CREATE_EVENTS=false a
join or an operator's change on an event nobody registered is EVENT_NOT_FOUND (a typo no
longer pauses the wrong event or opens a queue); sold out refuses newcomers and enters and
every waiter's next status says so."""

from __future__ import annotations

import pytest

from tests.contract.conftest import open_door, store_state
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.waitingroom.events import EventAdmin, SettingsChange
from ticketgate.waitingroom.model import (
    EnterOutcome,
    EventExists,
    EventNotFound,
    EventState,
    SoldOut,
    WaiterState,
)
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore


@pytest.fixture
def admin(store: QueueStore, queue_settings: QueueSettings) -> EventAdmin:
    return EventAdmin(WaitingRoom(store, queue_settings))


def _state(store: QueueStore, event_id: str, request: pytest.FixtureRequest) -> dict[str, object]:
    client = None if isinstance(store, MemoryQueueStore) else request.getfixturevalue("redis_sync")
    return store_state(store, event_id, client)


@pytest.mark.queue_settings(auto_create_events=False)
async def test_an_unregistered_event_refuses_joins_and_changes_and_keeps_nothing(
    store: QueueStore, admin: EventAdmin, event_id: str, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(EventNotFound):
        await store.join(event_id, "", "")
    with pytest.raises(EventNotFound):
        await store.join(event_id, "alice", "key-1")
    with pytest.raises(EventNotFound):
        await admin.update(event_id, SettingsChange(paused=True))
    with pytest.raises(EventNotFound):
        await admin.get(event_id)
    with pytest.raises(EventNotFound):
        await admin.sweep(event_id)
    assert _state(store, event_id, request) == {}, "a refused join or change stores nothing"

    view = await admin.create(event_id, SettingsChange(paused=True))
    assert view.registered
    assert view.settings.paused
    assert view.state is EventState.PAUSED
    assert event_id in await store.list_events(100)
    joined = await store.join(event_id, "", "")
    assert joined.position == 1
    with pytest.raises(EventExists):
        await admin.create(event_id, SettingsChange(paused=False))
    assert (await admin.get(event_id)).settings.paused, "a refused create changes nothing"
    _, resumed = await admin.update(event_id, SettingsChange(paused=False))
    assert resumed.state is EventState.OPEN


async def test_with_auto_create_any_event_is_joined_and_may_still_be_registered(
    store: QueueStore, admin: EventAdmin, event_id: str
) -> None:
    await store.join(event_id, "", "")
    assert not (await admin.get(event_id)).registered
    assert (await admin.create(event_id, SettingsChange())).registered


@pytest.mark.queue_settings(admission_window=5, min_wait=open_door(5))
async def test_sold_out_refuses_newcomers_and_enters_and_every_waiter_is_told(
    store: QueueStore, admin: EventAdmin, event_id: str
) -> None:
    alice = await store.join(event_id, "alice", "")
    anonymous = await store.join(event_id, "", "")
    _, view = await admin.update(event_id, SettingsChange(sold_out=True))
    assert view.state is EventState.SOLD_OUT
    assert view.settings.sold_out

    with pytest.raises(SoldOut):
        await store.join(event_id, "bob", "")
    with pytest.raises(SoldOut):
        await store.join(event_id, "", "")
    again = await store.join(event_id, "alice", "")
    assert (again.duplicate, again.seq) == (True, alice.seq), "those inside keep their places"
    for waiter in (alice, anonymous):
        status = await store.status(event_id, waiter.seq)
        assert (status.state, status.event_state) == (WaiterState.WAITING, EventState.SOLD_OUT)
    refused = await store.enter(event_id, alice.seq, alice.joined_ms, "alice")
    assert refused.outcome is EnterOutcome.SOLD_OUT

    await admin.update(event_id, SettingsChange(sold_out=False))
    assert (await store.status(event_id, alice.seq)).event_state is EventState.OPEN
    granted = await store.enter(event_id, alice.seq, alice.joined_ms, "alice")
    assert granted.outcome is EnterOutcome.GRANTED


@pytest.mark.parametrize(
    ("change", "state"),
    [
        (SettingsChange(), EventState.OPEN),
        (SettingsChange(paused=True), EventState.PAUSED),
        (SettingsChange(closed=True), EventState.CLOSED),
        (SettingsChange(closed=True, paused=True), EventState.PAUSED),
        (SettingsChange(closed=True, paused=True, sold_out=True), EventState.SOLD_OUT),
    ],
)
async def test_status_reports_the_event_state(
    store: QueueStore,
    admin: EventAdmin,
    event_id: str,
    change: SettingsChange,
    state: EventState,
) -> None:
    waiter = await store.join(event_id, "", "")
    await admin.update(event_id, change)
    assert (await store.status(event_id, waiter.seq)).event_state is state
