"""Random join/leave/enter/status sequences against both stores and a ten-line model.

The model is the specification in its plainest form: a list in join order. Any difference
in outcome, position or count between a store and the model is a FIFO bug.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_SECRET, make_redis_store
from tests.contract.conftest import open_door
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.waitingroom.model import (
    EnterOutcome,
    LeaveOutcome,
    UserAlreadyAdmitted,
    WaiterState,
)
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore

WINDOW = 2
SETTINGS = QueueSettings(
    token_secret=TEST_SECRET,
    admission_window=WINDOW,
    min_wait=open_door(WINDOW),
    bucket_capacity=10_000,
)
USERS = ("", "", "", "ann", "bob")
ENTER_AS = ("", "ann", "bob", "cy")

Op = tuple[str, int]
JOIN = st.tuples(st.just("join"), st.integers(0, len(USERS) - 1))
ACT = st.tuples(st.sampled_from(["leave", "enter", "status"]), st.integers(0, 50))
# Joins weigh more, so queues grow past the window and the NOT_READY side gets explored.
OPS = st.lists(st.one_of(JOIN, JOIN, ACT), min_size=8, max_size=60)


@dataclass
class Model:
    waiting: list[int] = field(default_factory=list)
    admitted: set[int] = field(default_factory=set)
    place_of: dict[str, int] = field(default_factory=dict)
    admitted_users: set[str] = field(default_factory=set)  # one admission per person

    def position(self, seq: int) -> int:
        return self.waiting.index(seq) + 1 if seq in self.waiting else 0

    def remove(self, seq: int) -> None:
        self.waiting.remove(seq)
        self.place_of = {user: s for user, s in self.place_of.items() if s != seq}


async def run_against_model(store: QueueStore, ops: list[Op]) -> None:
    event_id = f"prop_{uuid.uuid4().hex[:12]}"
    model = Model()
    tickets: list[tuple[int, int, str]] = []  # (seq, joined_ms, user) in issue order
    for name, arg in ops:
        if name == "join":
            user = USERS[arg]
            if user in model.admitted_users and user not in model.place_of:
                with pytest.raises(UserAlreadyAdmitted):
                    await store.join(event_id, user, "")
                continue
            result = await store.join(event_id, user, "")
            if user and user in model.place_of:
                assert result.duplicate
                assert result.seq == model.place_of[user]
            else:
                assert not result.duplicate
                assert all(result.seq > seq for seq, _, _ in tickets)
                model.waiting.append(result.seq)
                if user:
                    model.place_of[user] = result.seq
                tickets.append((result.seq, result.joined_ms, user))
            assert result.position == model.position(result.seq)
        elif tickets:
            seq, joined_ms, user = tickets[arg % len(tickets)]
            if name == "leave":
                left = await store.leave(event_id, seq, user, joined_ms)
                assert left is (
                    LeaveOutcome.LEFT if seq in model.waiting else LeaveOutcome.NOT_WAITING
                )
                if seq in model.waiting:
                    model.remove(seq)
            elif name == "enter":
                # An anonymous place is entered by whoever signs in with it.
                user = user or ENTER_AS[arg % len(ENTER_AS)]
                entered = await store.enter(event_id, seq, joined_ms, user)
                if seq in model.admitted:
                    assert entered.outcome is EnterOutcome.ALREADY_ADMITTED
                elif user in model.admitted_users:
                    assert entered.outcome is EnterOutcome.USER_ADMITTED
                elif seq not in model.waiting:
                    assert entered.outcome is EnterOutcome.EXPIRED
                elif model.position(seq) <= WINDOW:
                    assert (entered.outcome, entered.position) == (
                        EnterOutcome.GRANTED,
                        model.position(seq),
                    )
                    model.remove(seq)
                    model.admitted.add(seq)
                    if user:
                        model.admitted_users.add(user)
                else:
                    assert (entered.outcome, entered.position) == (
                        EnterOutcome.NOT_READY,
                        model.position(seq),
                    )
            else:
                status = await store.status(event_id, seq, joined_ms)
                expected_state = (
                    WaiterState.WAITING
                    if seq in model.waiting
                    else WaiterState.ADMITTED
                    if seq in model.admitted
                    else WaiterState.EXPIRED
                )
                assert (status.state, status.position) == (expected_state, model.position(seq))
        assert await store.waiting_count(event_id) == len(model.waiting)
    statuses = [await store.status(event_id, seq) for seq in model.waiting]
    assert [s.position for s in statuses] == list(range(1, len(model.waiting) + 1))


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_memory_store_matches_the_fifo_model(ops: list[Op]) -> None:
    asyncio.run(run_against_model(MemoryQueueStore(SETTINGS), ops))


@settings(max_examples=100, deadline=None)
@given(ops=OPS)
def test_redis_store_matches_the_fifo_model(redis_address: str, ops: list[Op]) -> None:
    async def run() -> None:
        store = make_redis_store(redis_address, SETTINGS)
        try:
            await run_against_model(store, ops)
        finally:
            await store.close()

    asyncio.run(run())
