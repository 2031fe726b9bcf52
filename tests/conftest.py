"""Shared fixtures: a real Redis for the session, fresh settings, both stores."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from tests.redis_server import RedisServer, running_redis
from tests.required import backend_unavailable
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.queuestore.redis_store import RedisQueueStore
from ticketgate.redisio.executor import build_executor
from ticketgate.redisio.settings import RedisSettings
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore

TEST_SECRET = b"test-secret-test-secret-test-secret!"


@pytest.fixture(scope="session")
def redis_address() -> Iterator[str]:
    """host:port of a real Redis: REDIS_URL's when given, else our own throwaway server."""
    given = os.environ.get("REDIS_URL", "")
    if given:
        yield given
        return
    with running_redis() as server:
        yield server.address


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server this test alone owns, so it may stop, pause or count its commands."""
    if os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL points at a shared server; this test must own the process")
    if shutil.which("redis-server") is None:
        backend_unavailable("redis-server is not installed")
    with running_redis() as server:
        yield server


@pytest.fixture
def event_id() -> str:
    """A fresh event per test, so tests sharing one Redis never see each other's waiters."""
    return f"evt_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def queue_settings() -> QueueSettings:
    return QueueSettings(token_secret=TEST_SECRET)


def make_redis_store(address: str, settings: QueueSettings, **redis_kw: object) -> RedisQueueStore:
    redis_settings = RedisSettings(address=address, **redis_kw)  # type: ignore[arg-type]
    return RedisQueueStore(build_executor(redis_settings), settings)


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_address: str, queue_settings: QueueSettings
) -> AsyncIterator[QueueStore]:
    """The contract fixture: every test using it runs once per store."""
    if request.param == "memory":
        memory = MemoryQueueStore(queue_settings)
        yield memory
        await memory.close()
    else:
        redis_store = make_redis_store(redis_address, queue_settings)
        await redis_store.start()
        yield redis_store
        await redis_store.close()


@pytest.fixture
def redis_sync(redis_address: str) -> Iterator[redis.Redis]:
    """A plain client for inspecting Redis state (MONITOR-free call counting uses INFO)."""
    client = redis.Redis.from_url(
        redis_address if "://" in redis_address else f"redis://{redis_address}/0"
    )
    yield client
    client.close()
