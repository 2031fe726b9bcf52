"""Contract-suite helpers: per-test queue settings, waiting and assertions shared by modules.

A test picks its own tunables with `@pytest.mark.queue_settings(admission_window=3, ...)`;
the root `store` fixture then builds the memory and the Redis store from them, so every
contract runs on both stores with the same numbers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest
import redis

from tests.conftest import TEST_SECRET, make_redis_store
from ticketgate.queuestore.memory_store import MemoryQueueStore, _Event
from ticketgate.waitingroom.admission import HELD_OFFSET
from ticketgate.waitingroom.model import JoinResult, StatusResult, WaiterState
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings
from ticketgate.waitingroom.store import QueueStore


@pytest.fixture
async def redis_store(
    redis_address: str, queue_settings: QueueSettings
) -> AsyncIterator[QueueStore]:
    """The Redis store alone, for what only it does (keep an event's counts between calls,
    count held earmarks in the bucket HASH)."""
    store = make_redis_store(redis_address, queue_settings)
    await store.start()
    yield store
    await store.close()


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


class Clock:
    """A clock the test moves (ms), for MemoryQueueStore(clock=...)."""

    def __init__(self) -> None:
        self.now_ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now_ms


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


def store_state(
    store: QueueStore, event_id: str, client: redis.Redis | None, *, times: bool = False
) -> dict[str, object]:
    """Everything a store keeps for one event, in one shape for both stores, so a test can
    require them to be equal: order (held earmarks included), heartbeats, users and owners,
    admissions, reservations and their leases, idempotency keys, overrides, marks and the
    bucket. Clock values (and the bucket's unused capacity, which refills with time) are left
    out unless `times`: the stores read different clocks unless the test runs both on one.
    `client` reads the Redis store's keys (None for the memory store)."""
    if isinstance(store, MemoryQueueStore):
        return _memory_state(store, event_id, times)
    assert client is not None
    return _redis_state(client, event_id, times)


def _memory_state(store: MemoryQueueStore, event_id: str, times: bool) -> dict[str, object]:
    event = store._events.get(event_id)
    if event is None or event == _Event():  # made by a read: nothing Redis would keep a key for
        return {}
    bucket = event.bucket
    state: dict[str, object] = {
        "seq": event.seq,
        "waiting": [key + HELD_OFFSET if key < 0 else key for key in event.waiting],
        "held": sorted(event.held),
        "seen": sorted(event.last_seen),
        "users": {user: seq for user, (seq, _) in event.users.items()},
        "owners": dict(event.seq_user),
        "admitted": sorted(event.admitted),
        "admitted_users": dict(event.admitted_users),
        "reservations": {seq: user for seq, (user, _) in event.reservations.items()},
        "leases": {seq: lease for seq, (lease, _) in event.leases.items()},
        "idempotency_keys": len(event.idempotency),
        "config": {k: v for k, v in event.config.items() if k != "registered"},
        "registered": "registered" in event.config,
        "marks": [seq for seq, _ in event.marks],
        "bucket": {} if bucket is None else {"used": bucket.used, "lapsed": bucket.lapsed},
        "held_count": len(event.held) if event.seq else None,  # Redis: from the first join
    }
    if times:
        state["times"] = {
            "epoch": event.epoch_ms,
            "seen": sorted(event.last_seen.items()),
            "joined": sorted(event.users.values()),
            "admitted": sorted(event.admitted.items()),
            "marks": list(event.marks),
            "bucket": None if bucket is None else (bucket.tokens, bucket.updated_ms),
        }
    return state


def _redis_state(client: redis.Redis, event_id: str, times: bool) -> dict[str, object]:
    prefix = f"tg:{{{event_id}}}:"
    keys = {key.decode() for key in client.scan_iter(match=f"{prefix}*", count=10_000)}
    if not keys:
        return {}

    def text(value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def scored(name: str) -> list[tuple[int, int]]:
        pairs = cast(
            "list[tuple[bytes, float]]", client.zrange(prefix + name, 0, -1, withscores=True)
        )
        return [(int(text(member)), int(score)) for member, score in pairs]

    config = {text(k): text(v) for k, v in client.hgetall(f"{prefix}cfg").items()}
    users = {text(u): text(v).split(":") for u, v in client.hgetall(f"{prefix}users").items()}
    bucket = {text(k): text(v) for k, v in client.hgetall(f"{prefix}bucket").items()}
    marks = [text(m).split(":") for m in client.zrange(f"{prefix}marks", 0, -1)]
    state: dict[str, object] = {
        "seq": int(client.get(f"{prefix}seq") or 0),
        "waiting": [int(text(s)) for s in client.zrange(f"{prefix}wait", 0, -1)],
        "held": sorted(int(text(s)) for s in client.zrangebyscore(f"{prefix}wait", "-inf", "(0")),
        "seen": sorted(int(text(s)) for s in client.zrange(f"{prefix}seen", 0, -1)),
        "users": {user: int(held[0]) for user, held in users.items()},
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
        "leases": {
            int(key.split(":")[-2]): text(client.get(key) or b"")
            for key in keys
            if key.startswith(f"{prefix}rt:") and key.endswith(":lease")
        },
        "idempotency_keys": sum(1 for key in keys if key.startswith(f"{prefix}idem:")),
        "config": {k: v for k, v in config.items() if k != "registered"},
        "registered": "registered" in config,
        "marks": [int(seq) for seq, _ in marks],
        # the HASH holds the epoch and the held count from the first join: the bucket's own
        # fields only from the first grant or hold (the memory store's Bucket)
        "bucket": {}
        if "used" not in bucket
        else {"used": int(bucket["used"]), "lapsed": int(bucket.get("lapsed", 0))},
        # the count frontier.lua reads instead of counting the held waiters
        "held_count": int(bucket["held"]) if "held" in bucket else None,
    }
    if times:
        state["times"] = {
            "epoch": int(bucket.get("epoch", 0)),
            "seen": sorted(scored("seen")),
            "joined": sorted((int(seq), int(joined)) for seq, joined in users.values()),
            "admitted": sorted(scored("adm")),
            "marks": [(int(seq), int(joined)) for seq, joined in marks],
            # the unused capacity refills with time: a clock value too
            "bucket": (float(bucket["tokens"]), int(bucket["ts"])) if "ts" in bucket else None,
        }
    return state
