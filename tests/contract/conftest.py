"""Contract-suite helpers: per-test queue settings, waiting and assertions shared by modules.

A test picks its own tunables with `@pytest.mark.queue_settings(admission_window=3, ...)`;
the root `store` fixture then builds the memory and the Redis store from them, so every
contract runs on both stores with the same numbers.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from tests.conftest import TEST_SECRET
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.waitingroom.model import JoinResult, StatusResult, WaiterState
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings
from ticketgate.waitingroom.store import QueueStore


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "queue_settings(**fields): QueueSettings overrides for the store fixture"
    )


@pytest.fixture
def queue_settings(request: pytest.FixtureRequest) -> QueueSettings:
    """Default settings, overridden field by field by the test's `queue_settings` marker."""
    marker = request.node.get_closest_marker("queue_settings")
    overrides = dict(marker.kwargs) if marker is not None else {}
    return QueueSettings(token_secret=TEST_SECRET, **overrides)


def open_door(window: int) -> tuple[MinWaitRule, ...]:
    """Min-wait rules that make every position in the window eligible at once."""
    return (MinWaitRule(window, 0),)


async def join_many(store: QueueStore, event_id: str, count: int) -> list[JoinResult]:
    """`count` anonymous joins one after another (their seq order is their queue order)."""
    return [await store.join(event_id, "", "") for _ in range(count)]


async def positions(store: QueueStore, event_id: str, joined: list[JoinResult]) -> list[int]:
    """Current position of each waiter (0 when no longer waiting); refreshes heartbeats."""
    results = await asyncio.gather(*(store.status(event_id, j.seq) for j in joined))
    return [r.position if r.state is WaiterState.WAITING else 0 for r in results]


async def status_of(store: QueueStore, event_id: str, joined: JoinResult) -> StatusResult:
    return await store.status(event_id, joined.seq)


class Stopwatch:
    """Elapsed wall time, for bounds that grow with the time a test really took."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


def lose_event_data(store: QueueStore, event_id: str, request: pytest.FixtureRequest) -> None:
    """What a Redis restart without persistence (or a memory-store restart) does to one
    event: every key is gone, the sequence starts again at 1, signed tokens stay valid."""
    if isinstance(store, MemoryQueueStore):
        store._events.pop(event_id, None)
        return
    client: redis.Redis = request.getfixturevalue("redis_sync")
    keys = list(client.scan_iter(match=f"tg:{{{event_id}}}:*"))
    assert keys, "the event had keys to lose"
    client.delete(*keys)


def store_state(store: QueueStore, event_id: str, client: redis.Redis | None) -> dict[str, object]:
    """Everything a store keeps for one event except clock values (the two stores read
    different clocks), in one shape for both, so a test can require them to be equal.
    `client` reads the Redis store's keys (None for the memory store)."""
    if isinstance(store, MemoryQueueStore):
        event = store._events.get(event_id)
        if event is None:
            return {}
        return {
            "seq": event.seq,
            "waiting": list(event.waiting),
            "seen": sorted(event.last_seen),
            "users": {user: seq for user, (seq, _) in event.users.items()},
            "owners": dict(event.seq_user),
            "admitted": sorted(event.admitted),
            "admitted_users": dict(event.admitted_users),
            "reservations": {seq: user for seq, (user, _) in event.reservations.items()},
            "idempotency_keys": len(event.idempotency),
            "config": {k: v for k, v in event.config.items() if k != "registered"},
            "registered": "registered" in event.config,
            "marks": [seq for seq, _ in event.marks],
        }
    assert client is not None
    prefix = f"tg:{{{event_id}}}:"
    keys = {key.decode() for key in client.scan_iter(match=f"{prefix}*")}
    if not keys:
        return {}

    def text(value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    config = {text(k): text(v) for k, v in client.hgetall(f"{prefix}cfg").items()}
    return {
        "seq": int(client.get(f"{prefix}seq") or 0),
        "waiting": [int(text(s)) for s in client.zrange(f"{prefix}wait", 0, -1)],
        "seen": sorted(int(text(s)) for s in client.zrange(f"{prefix}seen", 0, -1)),
        "users": {
            text(u): int(text(v).split(":")[0]) for u, v in client.hgetall(f"{prefix}users").items()
        },
        "owners": {int(text(s)): text(u) for s, u in client.hgetall(f"{prefix}owners").items()},
        "admitted": sorted(int(text(s)) for s in client.zrange(f"{prefix}adm", 0, -1)),
        "admitted_users": {
            text(u): int(text(s)) for u, s in client.hgetall(f"{prefix}admu").items()
        },
        "reservations": {
            int(key.rsplit(":", 1)[1]): text(client.get(key) or b"")
            for key in keys
            if key.startswith(f"{prefix}rt:") and key.rsplit(":", 1)[1].isdigit()
        },
        "idempotency_keys": sum(1 for key in keys if key.startswith(f"{prefix}idem:")),
        "config": {k: v for k, v in config.items() if k != "registered"},
        "registered": "registered" in config,
        "marks": [int(text(m).split(":")[0]) for m in client.zrange(f"{prefix}marks", 0, -1)],
    }
