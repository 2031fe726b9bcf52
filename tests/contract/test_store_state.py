"""Both stores keep the same state, not just the same answers: after the same joins,
leaves, enters and sweeps, every structure of an event (order, heartbeats, the users and
owners HASHes, admissions, reservations, idempotency keys, overrides) is equal. A Redis
structure the memory store cleans but Redis does not (the users HASH of swept signed-in
waiters once grew without bound) shows up here as a difference. The property test at the end
runs both stores on one clock the test moves, through random sequences of every operation,
and compares answers and state (timestamps, held earmarks and the bucket included) after each
step: the admission rule (admission.py in Python, enter.lua and sweep.lua in Redis) is held to
one behaviour there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_SECRET, make_redis_store
from tests.contract.conftest import Clock, open_door, store_state
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.queuestore.redis_store import RedisQueueStore
from ticketgate.redisio.executor import build_executor
from ticketgate.redisio.settings import RedisSettings
from ticketgate.waitingroom.model import (
    ClaimOutcome,
    EnterOutcome,
    EnterResult,
    JoinResult,
    QueueError,
    WaiterState,
)
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings
from ticketgate.waitingroom.store import QueueStore

HEARTBEAT_MS = 1_000
SETTINGS = QueueSettings(
    token_secret=TEST_SECRET,
    heartbeat_ttl_ms=HEARTBEAT_MS,
    admission_window=10,
    min_wait=open_door(10),
)


@pytest.fixture
async def both(redis_address: str) -> AsyncIterator[tuple[MemoryQueueStore, QueueStore]]:
    memory = MemoryQueueStore(SETTINGS)
    on_redis = make_redis_store(redis_address, SETTINGS)
    await on_redis.start()
    yield memory, on_redis
    await on_redis.close()


async def test_both_stores_keep_the_same_state_after_leave_enter_and_sweep(
    both: tuple[MemoryQueueStore, QueueStore], redis_sync: redis.Redis
) -> None:
    memory, on_redis = both
    event_id = f"evt_{uuid.uuid4().hex[:12]}"
    stores: tuple[QueueStore, ...] = (memory, on_redis)

    async def each(step: str, call: object) -> list[object]:
        results = []
        for store in stores:
            results.append(await call(store))  # type: ignore[operator]
        memory_state = store_state(memory, event_id, None)
        redis_state = store_state(on_redis, event_id, redis_sync)
        assert memory_state == redis_state, f"stores differ after {step}"
        return results

    places: dict[str, list[JoinResult]] = {}
    for user, key in (
        ("alice", ""),
        ("bob", ""),
        ("", ""),
        ("carol", "k-carol"),
        ("", "k-anon"),
        ("dave", ""),
        ("erin", ""),
        ("", ""),
    ):
        name = user or f"anon{len(places)}"
        joined = await each(f"join {name}", lambda s, u=user, k=key: s.join(event_id, u, k))
        places[name] = joined  # type: ignore[assignment]
        assert len({(j.seq, j.position) for j in places[name]}) == 1, "same seq and position"

    def seq(name: str) -> int:
        return places[name][0].seq

    def joined_ms(name: str, index: int) -> int:
        return places[name][index].joined_ms

    # leave: bob's place and his users/owners entries go
    await each("leave bob", lambda s: s.leave(event_id, seq("bob"), "bob"))
    # enter: alice with her own place, an anonymous place entered by frank
    granted = await each(
        "enter alice",
        lambda s: s.enter(event_id, seq("alice"), joined_ms("alice", stores.index(s)), "alice"),
    )
    assert all(r.outcome is EnterOutcome.GRANTED for r in granted)  # type: ignore[attr-defined]
    await each(
        "enter anon2 as frank",
        lambda s: s.enter(event_id, seq("anon2"), joined_ms("anon2", stores.index(s)), "frank"),
    )
    # sweep: everyone but carol and erin goes silent past the heartbeat TTL
    deadline = asyncio.get_running_loop().time() + HEARTBEAT_MS / 1000 + 0.3
    while asyncio.get_running_loop().time() < deadline:
        for store in stores:
            for name in ("carol", "erin"):
                state = (await store.status(event_id, seq(name))).state
                assert state is WaiterState.WAITING
        await asyncio.sleep(0.1)
    removed = await each("sweep", lambda s: s.sweep(event_id, 100))
    assert removed == [3, 3], "dave and two anonymous waiters"

    final = store_state(on_redis, event_id, redis_sync)
    assert final["users"] == {"carol": seq("carol"), "erin": seq("erin")}
    assert final["owners"] == {seq("carol"): "carol", seq("erin"): "erin"}
    assert final["admitted_users"] == {"alice": seq("alice"), "frank": seq("anon2")}


async def test_a_stale_signed_in_waiter_removed_by_status_or_enter_leaves_no_user_entry(
    both: tuple[MemoryQueueStore, QueueStore], redis_sync: redis.Redis
) -> None:
    """Status and enter expire a silent waiter themselves, without the sweeper."""
    memory, on_redis = both
    event_id = f"evt_{uuid.uuid4().hex[:12]}"
    for store in (memory, on_redis):
        gone_by_status = await store.join(event_id, "gus", "")
        gone_by_enter = await store.join(event_id, "hal", "")
        await asyncio.sleep(HEARTBEAT_MS / 1000 + 0.1)
        assert (await store.status(event_id, gone_by_status.seq)).state is WaiterState.EXPIRED
        entered = await store.enter(event_id, gone_by_enter.seq, gone_by_enter.joined_ms, "hal")
        assert entered.outcome is EnterOutcome.EXPIRED
    state = store_state(on_redis, event_id, redis_sync)
    assert state == store_state(memory, event_id, None)
    assert (state["users"], state["owners"], state["waiting"]) == ({}, {}, [])


# --- property: both stores on one clock, the same random operations, the same state --------

# The Redis store reads the test's clock from this key (RedisQueueStore(clock_lua=...)); a
# plain key outside the event's slot is fine on the single test server, never in a cluster.
CLOCK_KEY = "tg-test:clock"
CLOCK_LUA = f"""local function now_ms()
  return tonumber(redis.call('GET', '{CLOCK_KEY}'))
end"""
# Redis expires reservations, leases and Idempotency-Keys itself (PX, on its own clock), so
# they are set to outlive every sequence: at most MAX_STEPS * max(ADVANCES_MS) of test time.
LONG_MS = 3_600_000
PROPERTY_SETTINGS = QueueSettings(
    token_secret=TEST_SECRET,
    heartbeat_ttl_ms=4_000,  # entry grace 2 s (eta.entry_grace_ms): earmarks get held
    sweep_batch=2,
    admission_window=4,
    min_wait=(MinWaitRule(1, 0), MinWaitRule(3, 1_500), MinWaitRule(4, 3_000)),
    bucket_capacity=2,
    bucket_refill_per_sec=0.5,
    reservation_token_ttl_ms=LONG_MS,
    idempotency_ttl_ms=LONG_MS,
)
MAX_STEPS = 40
ADVANCES_MS = (1, 250, 900, 1_600, 2_100, 4_100)
USERS = ("", "", "ann", "bob", "cy")
ENTER_AS = ("ann", "bob", "cy", "dee")
KEYS = ("", "", "k1", "k2")
# Operator changes: flags on and off, and bucket and window overrides (admission.py's `of`).
CHANGES = (
    {"paused": "1"},
    {"paused": ""},
    {"closed": "1"},
    {"closed": ""},
    {"soldout": "1"},
    {"soldout": ""},
    {"capacity": "1", "refill": "2.5"},
    {"capacity": "", "refill": ""},
    {"window": "2"},
    {"window": ""},
)

Step = tuple[str, int, int]
STEP = st.tuples(
    st.sampled_from(
        (
            *("join", "status", "status", "status", "enter", "enter", "enter", "leave"),
            *("sweep", "advance", "advance", "claim", "settle", "configure", "stats"),
        )
    ),
    st.integers(0, 63),
    st.integers(0, 63),
)


@dataclass
class Run:
    """What the sequence handed out so far: waiting tokens and armed reservations."""

    tickets: list[tuple[int, int, str]] = field(default_factory=list)  # seq, joined_ms, user
    reservations: list[tuple[int, str]] = field(default_factory=list)  # seq, user
    claims: list[tuple[int, str]] = field(default_factory=list)  # seq, lease id


async def _outcome(call: Awaitable[object]) -> object:
    """A store call's answer, or the class of the refusal it raised."""
    try:
        return await call
    except QueueError as refusal:
        return type(refusal)


def _step(store: QueueStore, event_id: str, run: Run, step: Step) -> Awaitable[object] | None:
    """The store call of `step` (None for a step with nothing to act on)."""
    name, a, b = step
    if name == "join":
        return store.join(event_id, USERS[a % len(USERS)], KEYS[b % len(KEYS)])
    if name == "sweep":
        return store.sweep(event_id, 1 + b % 3)
    if name == "configure":
        return store.configure(event_id, CHANGES[a % len(CHANGES)])
    if name == "stats":
        return store.event_stats(event_id)
    if name in {"status", "enter", "leave"} and run.tickets:
        seq, joined_ms, user = run.tickets[a % len(run.tickets)]
        if name == "status":
            return store.status(event_id, seq, None if b % 4 == 0 else joined_ms)
        if name == "leave":
            return store.leave(event_id, seq, user, joined_ms)
        return store.enter(event_id, seq, joined_ms, user or ENTER_AS[b % len(ENTER_AS)])
    if name == "claim" and run.reservations:
        seq, user = run.reservations[a % len(run.reservations)]
        return store.claim_reservation(event_id, seq, user, f"lease-{b}", LONG_MS)
    if name == "settle" and run.claims:
        seq, lease_id = run.claims[a % len(run.claims)]
        return store.settle_reservation(event_id, seq, lease_id, used=b % 2 == 0)
    return None


def _remember(run: Run, step: Step, answer: object) -> None:
    _, a, b = step
    if isinstance(answer, JoinResult) and not any(t[0] == answer.seq for t in run.tickets):
        run.tickets.append((answer.seq, answer.joined_ms, USERS[a % len(USERS)]))
    elif isinstance(answer, EnterResult) and answer.outcome is EnterOutcome.GRANTED:
        seq, _, user = run.tickets[a % len(run.tickets)]
        run.reservations.append((seq, user or ENTER_AS[b % len(ENTER_AS)]))
    elif answer is ClaimOutcome.CLAIMED:
        seq, _ = run.reservations[a % len(run.reservations)]
        run.claims.append((seq, f"lease-{b}"))


@dataclass
class OneClock:
    """A Redis store on the test's clock, kept for the module's examples (one connection, one
    event loop: a fresh connection per example made the property test slow and, on a busy
    box, flaky), and a plain client to move the clock and read the state."""

    loop: asyncio.AbstractEventLoop
    store: RedisQueueStore
    client: redis.Redis


@pytest.fixture(scope="module")
def one_clock(redis_address: str) -> Iterator[OneClock]:
    loop = asyncio.new_event_loop()
    executor = build_executor(RedisSettings(address=redis_address))
    store = RedisQueueStore(executor, PROPERTY_SETTINGS, clock_lua=CLOCK_LUA)
    client = redis.Redis.from_url(f"redis://{redis_address}/0")
    client.set(CLOCK_KEY, Clock().now_ms)
    loop.run_until_complete(store.start())
    yield OneClock(loop, store, client)
    loop.run_until_complete(store.close())
    loop.close()
    client.close()


async def _run_both(on_redis: RedisQueueStore, client: redis.Redis, steps: list[Step]) -> None:
    clock = Clock()
    memory = MemoryQueueStore(PROPERTY_SETTINGS, clock=clock)
    client.set(CLOCK_KEY, clock.now_ms)
    event_id = f"prop_{uuid.uuid4().hex[:12]}"
    run = Run()
    try:
        for number, step in enumerate(steps):
            if step[0] == "advance":
                clock.now_ms += ADVANCES_MS[step[1] % len(ADVANCES_MS)]
                client.set(CLOCK_KEY, clock.now_ms)
                continue
            on_memory = _step(memory, event_id, run, step)
            if on_memory is None:
                continue
            answers = [await _outcome(on_memory)]
            call = _step(on_redis, event_id, run, step)
            assert call is not None
            answers.append(await _outcome(call))
            where = f"step {number} {step} of {steps[: number + 1]}"
            assert answers[0] == answers[1], f"answers differ at {where}"
            assert store_state(memory, event_id, None, times=True) == store_state(
                on_redis, event_id, client, times=True
            ), f"state differs after {where}"
            _remember(run, step, answers[0])
    finally:
        keys = list(client.scan_iter(match=f"tg:{{{event_id}}}:*", count=10_000))
        if keys:
            client.delete(*keys)


@settings(max_examples=60, deadline=None)
@given(joins=st.integers(2, 6), steps=st.lists(STEP, min_size=10, max_size=MAX_STEPS))
# ten waiters joined in one ms, all ghosts: the sweep takes seqs 1 and 10 (Redis orders equal
# scores by the member's bytes), and the memory store must take the same two
@example(joins=2, steps=[*[("join", 0, 0)] * 8, ("advance", 5, 0), ("sweep", 0, 1)])
def test_both_stores_answer_and_keep_the_same_state_for_any_operation_sequence(
    one_clock: OneClock, joins: int, steps: list[Step]
) -> None:
    """Joins (users, Idempotency-Keys), status, enters, leaves, sweeps, reservation claims
    and settlements, operator changes (pause, close, sold out, bucket and window overrides)
    and clock jumps past the entry grace and the heartbeat TTL: after every step both stores
    gave the same answer and hold the same state, timestamps included. The min-wait bands,
    the bucket and the frontier are exercised here on both stores together, so the memory
    store (AdmissionPolicy in Python) and enter.lua/sweep.lua cannot drift apart."""
    opening = [("join", n, n) for n in range(joins)]  # a queue to act on from the start
    one_clock.loop.run_until_complete(
        _run_both(one_clock.store, one_clock.client, [*opening, *steps])
    )
