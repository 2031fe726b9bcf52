"""The reservation armed by a granted enter: single use, by its user, before it expires."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import join_many
from ticketgate.waitingroom.model import EnterOutcome
from ticketgate.waitingroom.store import QueueStore


async def _admit(store: QueueStore, event_id: str, user: str) -> int:
    waiter = await store.join(event_id, user, "")
    result = await store.enter(event_id, waiter.seq, waiter.joined_ms, user)
    assert result.outcome is EnterOutcome.GRANTED
    return waiter.seq


async def test_a_reservation_is_consumed_once(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    assert await store.consume_reservation(event_id, seq, "alice") is True
    assert await store.consume_reservation(event_id, seq, "alice") is False


async def test_concurrent_consumes_succeed_exactly_once(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    used = await asyncio.gather(
        *(store.consume_reservation(event_id, seq, "alice") for _ in range(20))
    )
    assert used.count(True) == 1


async def test_another_user_cannot_consume_it(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    assert await store.consume_reservation(event_id, seq, "mallory") is False
    assert await store.consume_reservation(event_id, seq, "") is False
    assert await store.consume_reservation(event_id, seq, "alice") is True, (
        "a refused attempt does not burn the owner's reservation"
    )


async def test_it_is_bound_to_its_event(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    assert await store.consume_reservation(f"{event_id}-b", seq, "alice") is False
    assert await store.consume_reservation(event_id, seq, "alice") is True


@pytest.mark.queue_settings(reservation_token_ttl_ms=300)
async def test_an_expired_reservation_is_refused(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    await asyncio.sleep(0.4)
    assert await store.consume_reservation(event_id, seq, "alice") is False


async def test_nothing_is_armed_before_a_grant(store: QueueStore, event_id: str) -> None:
    (waiter,) = await join_many(store, event_id, 1)
    assert await store.consume_reservation(event_id, waiter.seq, "") is False
    assert await store.consume_reservation(event_id, 999, "alice") is False
