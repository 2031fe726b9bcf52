"""Status keeps the ETA's release rate per event state (WaitingRoom, eta.rate_of): a kept rate
must give exactly what measuring it again gives, and a new count or bucket must not be
answered from an old one."""

from __future__ import annotations

import asyncio

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketgate.waitingroom.admission import AdmissionPolicy
from ticketgate.waitingroom.eta import estimate, rate_of, turn
from ticketgate.waitingroom.model import (
    AdmissionCounts,
    EnterOutcome,
    Frontier,
    StatusResult,
    StatusView,
    WaiterState,
)
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings
from ticketgate.waitingroom.tokens import WaitingClaims

SETTINGS = QueueSettings(token_secret=b"k" * 32)
JOINED_MS = 1_000_000


class OneAnswer:
    """A store whose status answers whatever the test set last."""

    name = "stub"

    def __init__(self) -> None:
        self.result: StatusResult | None = None

    async def status(self, event_id: str, seq: int, joined_ms: int | None = None) -> StatusResult:
        assert self.result is not None
        return self.result


counts_st = st.builds(
    AdmissionCounts,
    st.integers(0, 300),
    st.integers(0, 1_500),
    st.integers(0, 4_500),
    st.integers(0, 900_000),
)
frontier_st = st.builds(
    Frontier,
    st.floats(0.0, 600.0, allow_nan=False),
    st.integers(0, 10_000),
    st.integers(0, 50),
    st.integers(0, 50),
)
result_st = st.builds(
    StatusResult,
    st.just(WaiterState.WAITING),
    st.integers(1, 20_000),
    st.integers(JOINED_MS, JOINED_MS + 3_600_000),
    counts_st,
    admission_window=st.sampled_from([50, 100, 1_000]),
    refill_per_sec=st.sampled_from([0.5, 5.0, 50.0]),
    frontier=frontier_st,
    capacity=st.sampled_from([10, 500]),
)


def _status(room: WaitingRoom, store: OneAnswer, result: StatusResult) -> StatusView:
    store.result = result
    token = room.signer.sign_waiting(WaitingClaims("ev", 7, JOINED_MS, ""))
    return asyncio.run(room.status(token))


def _fresh(result: StatusResult) -> StatusView:
    store = OneAnswer()
    return _status(WaitingRoom(store, SETTINGS), store, result)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.lists(result_st, min_size=1, max_size=12), st.data())
def test_a_kept_rate_answers_what_a_fresh_one_does(
    results: list[StatusResult], data: st.DataObject
) -> None:
    store = OneAnswer()
    room = WaitingRoom(store, SETTINGS)  # type: ignore[arg-type]
    # each state asked again, out of order too: the kept rates are met again
    order = results + data.draw(st.permutations(results))
    for result in order:
        assert _status(room, store, result) == _fresh(result)


def test_new_counts_or_a_changed_bucket_give_a_new_eta() -> None:
    store = OneAnswer()
    room = WaitingRoom(store, SETTINGS)  # type: ignore[arg-type]
    base = StatusResult(
        WaiterState.WAITING,
        600,
        JOINED_MS + 60_000,
        AdmissionCounts(60, 120, 120, 120_000),
        admission_window=100,
        refill_per_sec=50.0,
        frontier=Frontier(0.0, 120),
        capacity=50,
    )
    first = _status(room, store, base)
    assert _status(room, store, base) == first
    more = msgspec.structs.replace(base, counts=AdmissionCounts(90, 150, 150, 120_000))
    refilled = msgspec.structs.replace(base, frontier=Frontier(20.0, 120))
    held = msgspec.structs.replace(base, frontier=Frontier(0.0, 120, held=5))
    for changed in (more, refilled, held):
        view = _status(room, store, changed)
        assert view == _fresh(changed)
        assert view.eta_sec != first.eta_sec
    assert _status(room, store, base) == first


@given(
    counts_st,
    frontier_st,
    st.integers(1, 20_000),
    st.none() | st.integers(0, 60_000),
)
def test_estimate_with_the_rate_given_is_the_estimate(
    counts: AdmissionCounts, frontier: Frontier, position: int, waited_ms: int | None
) -> None:
    policy = AdmissionPolicy(100, (MinWaitRule(50, 2_000), MinWaitRule(100, 5_000)), 500, 50.0)
    rate = rate_of(policy, frontier, counts)
    assert estimate(policy, frontier, counts, position, waited_ms, rate) == estimate(
        policy, frontier, counts, position, waited_ms
    )


rules_st = st.sampled_from(
    [
        (),
        (MinWaitRule(50, 2_000), MinWaitRule(100, 5_000)),
        (MinWaitRule(10, 0),),
        (MinWaitRule(1_000, 30_000), MinWaitRule(20_000, 60_000)),
    ]
)


@given(
    st.builds(
        AdmissionPolicy,
        st.sampled_from([1, 50, 100, 1_000]),
        rules_st,
        st.sampled_from([1, 10, 500]),
        st.sampled_from([0.01, 0.5, 5.0, 50.0]),
    ),
    counts_st,
    frontier_st,
    st.integers(1, 25_000),
    st.integers(0, 120_000),
)
def test_turn_is_decide_and_estimate_in_one_pass(
    policy: AdmissionPolicy,
    counts: AdmissionCounts,
    frontier: Frontier,
    position: int,
    waited_ms: int,
) -> None:
    """eta.turn answers what status used to ask of AdmissionPolicy.decide and eta.estimate."""
    rate = rate_of(policy, frontier, counts)
    decision = policy.decide(position, waited_ms, frontier.reach)
    guess = estimate(policy, frontier, counts, position, waited_ms, rate)
    expected = (
        decision.outcome is EnterOutcome.GRANTED,
        guess.eta_ms,
        min(decision.wait_ms, guess.eta_ms),
    )
    assert turn(policy, frontier.reach, rate.per_sec, position, waited_ms) == expected
    # and the whole seconds status shows while waiting are the estimate's
    assert max(1, round(guess.eta_ms / 1000)) == max(1, guess.eta_sec)
