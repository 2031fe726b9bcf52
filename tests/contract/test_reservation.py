"""The reservation armed by a granted enter, on both stores: claimed by one attempt at a time
(a lease), used up only by an attempt that held seats, by its user, before it expires.

Issue 10 item 5: the old single step consumed the reservation before the backend call, so a
409, 503 or 504 sent the fan back to the end of the queue.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import join_many
from ticketgate.waitingroom.model import ClaimOutcome, EnterOutcome
from ticketgate.waitingroom.store import QueueStore

LEASE_MS = 5_000


async def _admit(store: QueueStore, event_id: str, user: str) -> int:
    waiter = await store.join(event_id, user, "")
    result = await store.enter(event_id, waiter.seq, waiter.joined_ms, user)
    assert result.outcome is EnterOutcome.GRANTED
    return waiter.seq


async def claim(
    store: QueueStore,
    event_id: str,
    seq: int,
    user: str = "alice",
    lease: str = "l1",
    lease_ms: int = LEASE_MS,
) -> ClaimOutcome:
    return await store.claim_reservation(event_id, seq, user, lease, lease_ms)


async def test_a_hold_uses_the_reservation_up(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    assert await claim(store, event_id, seq) is ClaimOutcome.CLAIMED
    await store.settle_reservation(event_id, seq, "l1", used=True)
    assert await claim(store, event_id, seq, lease="l2") is ClaimOutcome.GONE


async def test_a_failed_attempt_leaves_it_usable(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    for attempt in range(3):  # seat taken, backend down, backend timed out
        assert await claim(store, event_id, seq, lease=f"f{attempt}") is ClaimOutcome.CLAIMED
        await store.settle_reservation(event_id, seq, f"f{attempt}", used=False)
    assert await claim(store, event_id, seq, lease="ok") is ClaimOutcome.CLAIMED
    await store.settle_reservation(event_id, seq, "ok", used=True)
    assert await claim(store, event_id, seq, lease="late") is ClaimOutcome.GONE


async def test_concurrent_claims_are_serialised(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    outcomes = await asyncio.gather(
        *(claim(store, event_id, seq, lease=f"c{n}") for n in range(20))
    )
    assert outcomes.count(ClaimOutcome.CLAIMED) == 1
    assert outcomes.count(ClaimOutcome.BUSY) == 19
    holder = f"c{outcomes.index(ClaimOutcome.CLAIMED)}"
    # Another attempt's settle does not free the holder's lease.
    await store.settle_reservation(event_id, seq, "c-other", used=False)
    assert await claim(store, event_id, seq, lease="next") is ClaimOutcome.BUSY
    await store.settle_reservation(event_id, seq, holder, used=False)
    assert await claim(store, event_id, seq, lease="next") is ClaimOutcome.CLAIMED


async def test_a_lapsed_lease_frees_the_reservation(store: QueueStore, event_id: str) -> None:
    """A gateway that died mid-attempt never settles: its lease lapses by itself."""
    seq = await _admit(store, event_id, "alice")
    assert await claim(store, event_id, seq, lease="dead", lease_ms=200) is ClaimOutcome.CLAIMED
    assert await claim(store, event_id, seq, lease="early") is ClaimOutcome.BUSY
    await asyncio.sleep(0.3)
    assert await claim(store, event_id, seq, lease="new") is ClaimOutcome.CLAIMED
    await store.settle_reservation(event_id, seq, "dead", used=False)  # too late: no effect
    assert await claim(store, event_id, seq, lease="third") is ClaimOutcome.BUSY


async def test_a_hold_uses_it_up_even_after_the_lease_lapsed(
    store: QueueStore, event_id: str
) -> None:
    seq = await _admit(store, event_id, "alice")
    assert await claim(store, event_id, seq, lease="slow", lease_ms=100) is ClaimOutcome.CLAIMED
    await asyncio.sleep(0.2)
    await store.settle_reservation(event_id, seq, "slow", used=True)
    assert await claim(store, event_id, seq, lease="after") is ClaimOutcome.GONE


async def test_another_user_cannot_claim_it(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    assert await claim(store, event_id, seq, user="mallory") is ClaimOutcome.GONE
    assert await claim(store, event_id, seq, user="") is ClaimOutcome.GONE
    assert await claim(store, event_id, seq) is ClaimOutcome.CLAIMED, (
        "a refused attempt does not burn the owner's reservation"
    )


async def test_it_is_bound_to_its_event(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    assert await claim(store, f"{event_id}-b", seq) is ClaimOutcome.GONE
    assert await claim(store, event_id, seq) is ClaimOutcome.CLAIMED


@pytest.mark.queue_settings(reservation_token_ttl_ms=300)
async def test_an_expired_reservation_is_gone(store: QueueStore, event_id: str) -> None:
    seq = await _admit(store, event_id, "alice")
    await asyncio.sleep(0.4)
    assert await claim(store, event_id, seq) is ClaimOutcome.GONE


@pytest.mark.queue_settings(reservation_token_ttl_ms=400)
async def test_a_failed_attempt_does_not_extend_the_expiry(
    store: QueueStore, event_id: str
) -> None:
    seq = await _admit(store, event_id, "alice")
    assert await claim(store, event_id, seq, lease="f") is ClaimOutcome.CLAIMED
    await store.settle_reservation(event_id, seq, "f", used=False)
    await asyncio.sleep(0.5)
    assert await claim(store, event_id, seq, lease="g") is ClaimOutcome.GONE


async def test_nothing_is_armed_before_a_grant(store: QueueStore, event_id: str) -> None:
    (waiter,) = await join_many(store, event_id, 1)
    assert await claim(store, event_id, waiter.seq, user="") is ClaimOutcome.GONE
    assert await claim(store, event_id, 999) is ClaimOutcome.GONE
