"""One person, one admission per event: whatever mix of anonymous and signed-in joins a
user holds, the enter step grants one of them, atomically, on both stores."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import join_many, open_door
from ticketgate.waitingroom.model import EnterOutcome, UserAlreadyAdmitted, WaiterState
from ticketgate.waitingroom.store import QueueStore

OPEN_10 = {"admission_window": 10, "min_wait": open_door(10)}


@pytest.mark.queue_settings(**OPEN_10)
async def test_parallel_enters_with_many_anonymous_tokens_admit_one_user_once(
    store: QueueStore, event_id: str
) -> None:
    tokens = await join_many(store, event_id, 6)
    results = await asyncio.gather(
        *(store.enter(event_id, t.seq, t.joined_ms, "mallory") for t in tokens)
    )
    outcomes = [r.outcome for r in results]
    assert outcomes.count(EnterOutcome.GRANTED) == 1
    assert outcomes.count(EnterOutcome.USER_ADMITTED) == 5
    # the refused places stay in the queue: another person may still come in with one
    assert await store.waiting_count(event_id) == 5
    spare = next(
        t for t, r in zip(tokens, results, strict=True) if r.outcome is not EnterOutcome.GRANTED
    )
    other = await store.enter(event_id, spare.seq, spare.joined_ms, "trent")
    assert other.outcome is EnterOutcome.GRANTED


@pytest.mark.queue_settings(**OPEN_10)
async def test_a_signed_in_place_and_anonymous_places_grant_one_whatever_comes_first(
    store: QueueStore, event_id: str
) -> None:
    (anonymous,) = await join_many(store, event_id, 1)
    signed_in = await store.join(event_id, "mallory", "")
    first = await store.enter(event_id, anonymous.seq, anonymous.joined_ms, "mallory")
    assert first.outcome is EnterOutcome.GRANTED
    second = await store.enter(event_id, signed_in.seq, signed_in.joined_ms, "mallory")
    assert second.outcome is EnterOutcome.USER_ADMITTED
    assert (await store.status(event_id, signed_in.seq)).state is WaiterState.WAITING
    await store.leave(event_id, signed_in.seq, "mallory")
    with pytest.raises(UserAlreadyAdmitted):
        await store.join(event_id, "mallory", "")


@pytest.mark.queue_settings(**OPEN_10)
async def test_admission_is_per_event(store: QueueStore, event_id: str) -> None:
    here = await store.join(event_id, "", "")
    there = await store.join(f"{event_id}_b", "", "")
    assert (await store.enter(event_id, here.seq, here.joined_ms, "mallory")).outcome is (
        EnterOutcome.GRANTED
    )
    elsewhere = await store.enter(f"{event_id}_b", there.seq, there.joined_ms, "mallory")
    assert elsewhere.outcome is EnterOutcome.GRANTED
