"""The waiting room service: signatures are checked before any store is asked."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Mapping

import pytest
import redis

from tests.conftest import TEST_SECRET, make_redis_store
from tests.contract.conftest import Clock, lose_event_data, open_door
from tests.redis_server import free_port
from ticketgate.app.queue import sweep_ghosts
from ticketgate.background import cancel_and_wait
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.waitingroom.model import (
    AlreadyAdmitted,
    ClaimOutcome,
    EnterResult,
    EventOverrides,
    EventStats,
    Forbidden,
    JoinResult,
    LeaveOutcome,
    QueueUnavailable,
    Registration,
    StatusResult,
    TokenExpired,
    TokenNotFound,
)
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore
from ticketgate.waitingroom.tokens import ReservationClaims, TokenSigner, WaitingClaims


class CountingStore:
    """A spy around a real store: forwards every call and counts it by method name."""

    def __init__(self, inner: QueueStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: collections.Counter[str] = collections.Counter()

    async def join(self, event_id: str, user_id: str, idempotency_key: str) -> JoinResult:
        self.calls["join"] += 1
        return await self.inner.join(event_id, user_id, idempotency_key)

    async def status(self, event_id: str, seq: int, joined_ms: int | None = None) -> StatusResult:
        self.calls["status"] += 1
        return await self.inner.status(event_id, seq, joined_ms)

    async def enter(self, event_id: str, seq: int, joined_ms: int, user_id: str) -> EnterResult:
        self.calls["enter"] += 1
        return await self.inner.enter(event_id, seq, joined_ms, user_id)

    async def leave(
        self, event_id: str, seq: int, user_id: str, joined_ms: int | None = None
    ) -> LeaveOutcome:
        self.calls["leave"] += 1
        return await self.inner.leave(event_id, seq, user_id, joined_ms)

    async def sweep(self, event_id: str, batch: int) -> int:
        self.calls["sweep"] += 1
        return await self.inner.sweep(event_id, batch)

    async def claim_reservation(
        self, event_id: str, seq: int, user_id: str, lease_id: str, lease_ms: int
    ) -> ClaimOutcome:
        self.calls["claim_reservation"] += 1
        return await self.inner.claim_reservation(event_id, seq, user_id, lease_id, lease_ms)

    async def settle_reservation(self, event_id: str, seq: int, lease_id: str, used: bool) -> None:
        self.calls["settle_reservation"] += 1
        await self.inner.settle_reservation(event_id, seq, lease_id, used)

    async def waiting_count(self, event_id: str) -> int:
        self.calls["waiting_count"] += 1
        return await self.inner.waiting_count(event_id)

    async def event_stats(self, event_id: str) -> EventStats:
        self.calls["event_stats"] += 1
        return await self.inner.event_stats(event_id)

    async def configure(
        self,
        event_id: str,
        changes: Mapping[str, str],
        registration: Registration = Registration.ANY,
    ) -> tuple[EventOverrides, EventOverrides]:
        self.calls["configure"] += 1
        return await self.inner.configure(event_id, changes, registration)

    async def register_events(self, waiting: Mapping[str, int]) -> None:
        self.calls["register_events"] += 1
        await self.inner.register_events(waiting)

    async def list_events(self, limit: int) -> list[str]:
        self.calls["list_events"] += 1
        return await self.inner.list_events(limit)

    async def ping(self) -> bool:
        self.calls["ping"] += 1
        return await self.inner.ping()

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()


def forgeries(valid: str, other_secret_token: str) -> list[str]:
    """Tokens a client could send that were not issued by this gateway as they stand."""
    prefix, body, mac = valid.split(".")
    flipped = "A" if body[0] != "A" else "B"
    return [
        "",
        "garbage",
        "wt1.",
        "wt1..",
        f"{prefix}.{body}",
        f"{prefix}.{flipped}{body[1:]}.{mac}",
        f"{prefix}.{body}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        f"{prefix}.{body}.{mac}x",
        f"{prefix}.{body}.{mac}.{mac}",
        f"rt1.{body}.{mac}",
        other_secret_token,
        valid + "=",
        valid.replace(".", ". ", 1),
        "wt1." + "A" * 600 + "." + mac,
    ]


ACTIONS: dict[str, Callable[[WaitingRoom, str], Awaitable[object]]] = {
    "status": lambda room, token: room.status(token),
    "enter": lambda room, token: room.enter(token, "alice"),
    "leave": lambda room, token: room.leave(token),
}


@pytest.fixture
def spy(store: QueueStore) -> CountingStore:
    return CountingStore(store)


@pytest.fixture
def room(spy: CountingStore, queue_settings: QueueSettings) -> WaitingRoom:
    return WaitingRoom(spy, queue_settings)


@pytest.mark.parametrize("action", sorted(ACTIONS))
async def test_a_forged_or_tampered_token_is_not_found_without_a_store_call(
    room: WaitingRoom, spy: CountingStore, event_id: str, action: str
) -> None:
    joined = await room.join(event_id, "alice")
    stranger = TokenSigner(b"another-secret-another-secret-!!")
    foreign = stranger.sign_waiting(WaitingClaims(event_id, 1, 0, "alice"))
    spy.calls.clear()

    for token in forgeries(joined.waiting_token, foreign):
        with pytest.raises(TokenNotFound):
            await ACTIONS[action](room, token)

    assert sum(spy.calls.values()) == 0
    await ACTIONS[action](room, joined.waiting_token)
    assert spy.calls[action] == 1, "the genuine token does reach the store"


async def test_a_forged_reservation_token_is_refused_without_a_store_call(
    room: WaitingRoom, spy: CountingStore, event_id: str
) -> None:
    joined = await room.join(event_id, "alice")
    admission = await room.enter(joined.waiting_token, "alice")
    stranger = TokenSigner(b"another-secret-another-secret-!!")
    spy.calls.clear()

    forged = [
        joined.waiting_token,
        admission.reservation_token + "A",
        stranger.sign_reservation(ReservationClaims(event_id, 1, "alice", 2**40)),
    ]

    async def outcome(token: str, user: str, event: str) -> ClaimOutcome:
        claim = await room.claim_reservation(token, user, event, 5_000)
        if claim.outcome is ClaimOutcome.CLAIMED:
            await room.settle_reservation(claim, used=True)
        return claim.outcome

    for token in forged:
        assert await outcome(token, "alice", event_id) is ClaimOutcome.GONE
    assert await outcome(admission.reservation_token, "bob", event_id) is ClaimOutcome.GONE
    assert await outcome(admission.reservation_token, "alice", "other") is ClaimOutcome.GONE
    assert sum(spy.calls.values()) == 0

    assert await outcome(admission.reservation_token, "alice", event_id) is ClaimOutcome.CLAIMED
    assert await outcome(admission.reservation_token, "alice", event_id) is ClaimOutcome.GONE
    assert spy.calls["claim_reservation"] == 2
    assert spy.calls["settle_reservation"] == 1


async def test_another_users_token_is_forbidden_without_a_store_call(
    room: WaitingRoom, spy: CountingStore, event_id: str
) -> None:
    joined = await room.join(event_id, "alice")
    spy.calls.clear()
    with pytest.raises(Forbidden):
        await room.enter(joined.waiting_token, "mallory")
    assert sum(spy.calls.values()) == 0


async def test_the_service_walks_join_status_enter_leave(room: WaitingRoom, event_id: str) -> None:
    first = await room.join(event_id, "alice")
    second = await room.join(event_id, "")
    duplicate = await room.join(event_id, "alice")
    assert (first.position, second.position) == (1, 2)
    assert duplicate.duplicate
    assert duplicate.position == 1

    view = await room.status(first.waiting_token)
    assert (view.status, view.position, view.ready_for_entry) == ("ready", 1, True)
    assert view.poll_after_ms > 0

    admission = await room.enter(first.waiting_token, "alice")
    assert admission.ttl_sec == room.settings.reservation_token_ttl_ms // 1000
    assert (await room.status(first.waiting_token)).status == "admitted"
    with pytest.raises(AlreadyAdmitted):
        await room.enter(first.waiting_token, "alice")

    assert (await room.status(second.waiting_token)).position == 1
    assert await room.leave(second.waiting_token) is True
    assert await room.leave(second.waiting_token) is False
    assert (await room.status(second.waiting_token)).status == "expired"
    with pytest.raises(TokenExpired):
        await room.enter(second.waiting_token, "bob")


@pytest.mark.queue_settings(admission_window=1, min_wait=open_door(1))
async def test_status_outside_the_window_is_waiting_with_an_eta(
    room: WaitingRoom, event_id: str
) -> None:
    await room.join(event_id, "")
    behind = await room.join(event_id, "")
    view = await room.status(behind.waiting_token)
    assert (view.status, view.position, view.ready_for_entry) == ("waiting", 2, False)
    assert view.eta_sec is not None
    assert view.eta_sec >= 1
    assert view.eta_confidence == 0.0, "no admissions yet: the ETA is the configured rate"


def _script_and_command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command (commands a script runs are counted too), minus our INFO itself."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return {name: value["calls"] for name, value in stats.items() if name != "cmdstat_info"}


async def test_a_forged_token_costs_no_redis_command(
    redis_address: str, redis_sync: redis.Redis, queue_settings: QueueSettings, event_id: str
) -> None:
    store = make_redis_store(redis_address, queue_settings)
    await store.start()
    room = WaitingRoom(store, queue_settings)
    try:
        joined = await room.join(event_id, "alice")
        foreign = TokenSigner(b"another-secret-another-secret-!!").sign_waiting(
            WaitingClaims(event_id, 1, 0, "alice")
        )
        before = _script_and_command_calls(redis_sync)
        for token in forgeries(joined.waiting_token, foreign):
            for action in ACTIONS.values():
                with pytest.raises(TokenNotFound):
                    await action(room, token)
        after_forged = _script_and_command_calls(redis_sync)
        assert after_forged == before, "not one command reached Redis"

        await room.status(joined.waiting_token)
        after_genuine = _script_and_command_calls(redis_sync)
        assert after_genuine["cmdstat_evalsha"] == before["cmdstat_evalsha"] + 1, (
            "a genuine status is exactly one EVALSHA, so the counter does see our calls"
        )
        assert after_genuine.get("cmdstat_eval", 0) == before.get("cmdstat_eval", 0)
    finally:
        await store.close()


def test_tokens_from_another_secret_are_rejected_by_the_signer_itself() -> None:
    mine = TokenSigner(TEST_SECRET)
    theirs = TokenSigner(b"another-secret-another-secret-!!")
    token = theirs.sign_waiting(WaitingClaims("evt", 1, 0, ""))
    assert theirs.verify_waiting(token).seq == 1
    with pytest.raises(ValueError, match="signature"):
        mine.verify_waiting(token)


async def test_a_token_from_before_a_data_loss_does_not_alias_a_newcomer(
    room: WaitingRoom, store: QueueStore, event_id: str, request: pytest.FixtureRequest
) -> None:
    old = await room.join(event_id, "alice")
    lose_event_data(store, event_id, request)
    await asyncio.sleep(0.005)
    newcomer = await room.join(event_id, "bob")
    assert room.signer.verify_waiting(newcomer.waiting_token).seq == (
        room.signer.verify_waiting(old.waiting_token).seq
    ), "the sequence restarted: both tokens carry the same seq"

    assert (await room.status(old.waiting_token)).status == "expired"
    with pytest.raises(TokenExpired):
        await room.enter(old.waiting_token, "alice")
    assert await room.leave(old.waiting_token) is False

    mine = await room.status(newcomer.waiting_token)
    assert (mine.status, mine.position) == ("ready", 1), "the newcomer's place is untouched"
    assert await room.enter(newcomer.waiting_token, "bob")


async def test_tokens_of_the_current_life_pass_the_epoch_check(
    room: WaitingRoom, store: QueueStore, event_id: str, request: pytest.FixtureRequest
) -> None:
    first = await room.join(event_id, "")
    lose_event_data(store, event_id, request)
    await asyncio.sleep(0.005)
    reborn = [await room.join(event_id, "") for _ in range(3)]
    assert (await room.status(first.waiting_token)).status == "expired"
    views = [await room.status(r.waiting_token) for r in reborn]
    assert [v.position for v in views] == [1, 2, 3]
    assert await room.leave(reborn[1].waiting_token) is True
    assert (await room.status(reborn[2].waiting_token)).position == 2


class RecordingObserver:
    """What the room reports (QueueObserver), as (operation, status) pairs."""

    def __init__(self) -> None:
        self.operations: list[tuple[str, str]] = []

    def operation(self, name: str, status: str) -> None:
        self.operations.append((name, status))

    def admitted(self, waited_ms: int) -> None:
        pass


async def test_a_sweep_round_is_reported_when_it_has_events_to_sweep(
    store: QueueStore, queue_settings: QueueSettings, event_id: str
) -> None:
    observer = RecordingObserver()
    room = WaitingRoom(store, queue_settings, observer)
    assert await room.sweep_once() == 0
    assert observer.operations == [], "nothing seen yet: no round to report"
    await room.join(event_id, "")
    assert await room.sweep_once() == 0
    assert observer.operations == [("sweep", "ok")]


async def test_a_sweep_round_that_finds_redis_down_is_reported_then_raised(
    queue_settings: QueueSettings, event_id: str
) -> None:
    store = make_redis_store(f"127.0.0.1:{free_port()}", queue_settings)  # nobody listens
    observer = RecordingObserver()
    room = WaitingRoom(store, queue_settings, observer)
    room.active_events.add(event_id)
    try:
        with pytest.raises(QueueUnavailable):
            await room.sweep_once()
    finally:
        await store.close()
    assert observer.operations == [("sweep", "QUEUE_UNAVAILABLE")]
    assert room.active_events == {event_id}, "kept for the next round"


async def test_the_app_sweeper_task_removes_ghosts_and_outlives_an_unreachable_store(
    queue_settings: QueueSettings, event_id: str
) -> None:
    """app.queue.sweep_ghosts: rounds every interval; a round that fails does not end the task."""
    clock = Clock()
    memory = MemoryQueueStore(queue_settings, clock=clock)
    observer = RecordingObserver()
    room = WaitingRoom(memory, queue_settings, observer)
    await room.join(event_id, "")
    clock.now_ms += queue_settings.heartbeat_ttl_ms + 1  # the waiter went silent
    task = asyncio.get_running_loop().create_task(sweep_ghosts(room, 0.01))
    try:
        for _ in range(500):
            if await memory.waiting_count(event_id) == 0:
                break
            await asyncio.sleep(0.01)
        assert await memory.waiting_count(event_id) == 0, "the ghost was swept"
    finally:
        await cancel_and_wait(task)
    assert ("sweep", "ok") in observer.operations

    down = make_redis_store(f"127.0.0.1:{free_port()}", queue_settings)  # nobody listens
    failing = RecordingObserver()
    room = WaitingRoom(down, queue_settings, failing)
    room.active_events.add(event_id)
    task = asyncio.get_running_loop().create_task(sweep_ghosts(room, 0.01))
    try:
        for _ in range(500):
            if len(failing.operations) >= 2:
                break
            await asyncio.sleep(0.01)
        assert not task.done(), "a failed round does not end the sweeper"
    finally:
        await cancel_and_wait(task)
        await down.close()
    assert failing.operations[:2] == [("sweep", "QUEUE_UNAVAILABLE")] * 2
