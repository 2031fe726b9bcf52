"""Day-long expiries of the memory store, on a clock the test moves.

Redis enforces these with PX; the memory store trims them itself, by insertion order.
"""

from __future__ import annotations

from tests.conftest import TEST_SECRET
from tests.contract.conftest import Clock
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.waitingroom.model import ClaimOutcome, EnterOutcome
from ticketgate.waitingroom.settings import QueueSettings

# A join's Idempotency-Key lives IDEMPOTENCY_TTL_SEC (here 10 min, not the default day).
IDEMPOTENCY_TTL_MS = 600_000


def _store(clock: Clock) -> MemoryQueueStore:
    settings = QueueSettings(
        token_secret=TEST_SECRET,
        heartbeat_ttl_ms=10 * IDEMPOTENCY_TTL_MS,
        idempotency_ttl_ms=IDEMPOTENCY_TTL_MS,
    )
    return MemoryQueueStore(settings, clock=clock)


async def test_an_idempotency_key_is_forgotten_after_its_ttl() -> None:
    clock = Clock()
    store = _store(clock)
    first = await store.join("evt", "", "key-1")
    clock.now_ms += IDEMPOTENCY_TTL_MS - 1
    assert (await store.join("evt", "", "key-1")).seq == first.seq
    clock.now_ms += 1
    again = await store.join("evt", "", "key-1")
    assert again.seq != first.seq
    clock.now_ms += IDEMPOTENCY_TTL_MS - 1
    assert (await store.join("evt", "", "key-1")).seq == again.seq, "re-armed for a full TTL"


async def test_sweeps_drop_expired_keys_oldest_first_in_batches() -> None:
    clock = Clock()
    store = _store(clock)
    for n in range(5):
        await store.join("evt", "", f"old-{n}")
        clock.now_ms += 1
    clock.now_ms += IDEMPOTENCY_TTL_MS
    await store.join("evt", "", "fresh")
    event = store._events["evt"]
    assert len(event.idempotency) == 6
    await store.sweep("evt", 2)
    assert len(event.idempotency) == 4
    await store.sweep("evt", 100)
    assert [key.split("\x00")[1] for key in event.idempotency] == ["fresh"]


async def test_unused_reservations_are_trimmed_by_later_admissions() -> None:
    clock = Clock()
    store = _store(clock)
    first = await store.join("evt", "ann", "")
    assert (await store.enter("evt", first.seq, first.joined_ms, "ann")).outcome is (
        EnterOutcome.GRANTED
    )
    clock.now_ms += store._settings.reservation_token_ttl_ms
    second = await store.join("evt", "bob", "")
    await store.enter("evt", second.seq, second.joined_ms, "bob")
    assert set(store._events["evt"].reservations) == {second.seq}
    assert await store.claim_reservation("evt", first.seq, "ann", "l", 5_000) is (ClaimOutcome.GONE)
    assert await store.claim_reservation("evt", second.seq, "bob", "l", 5_000) is (
        ClaimOutcome.CLAIMED
    )
