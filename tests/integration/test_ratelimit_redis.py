"""The rate-limit sync against a real Redis: the Lua merge, sharing, batching, failures.

Limiters here are driven by hand (`sync_once`) so each step is observable; their clocks are
real (the Lua uses Redis's TIME), so rates are low enough that milliseconds don't matter.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from tests.redis_server import free_port
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import Route
from ticketgate.middleware.ratelimit import RateLimit
from ticketgate.middleware.ratelimit_sync import CHUNK, ClusterSync, redis_key
from ticketgate.middleware.settings import RateLimitSettings
from ticketgate.redisio.executor import PackedHead, RedisExecutor, build_executor
from ticketgate.redisio.settings import RedisSettings


class CountingExecutor:
    """The real executor, with the number of commands and how many were in flight at once."""

    def __init__(self, inner: RedisExecutor) -> None:
        self.inner = inner
        self.observers = inner.observers
        self.commands: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def execute(self, *args: Any) -> Any:
        self.commands.append(str(args[0]))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.inner.execute(*args)
        finally:
            self.in_flight -= 1

    async def execute_after(self, head: PackedHead, *args: Any) -> Any:
        return await self.execute(*head.args, *args)

    async def load_script(self, source: str) -> None:
        await self.inner.load_script(source)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
async def executor(redis_address: str) -> Any:
    inner = build_executor(RedisSettings(address=redis_address))
    yield CountingExecutor(inner)
    await inner.close()


def limiter(executor: RedisExecutor, rps: float = 1, burst: int = 10, **kw: Any) -> RateLimit:
    return RateLimit(RateLimitSettings(rps=rps, burst=burst), executor, **kw)


def fresh_key() -> str:
    return f"user:rl-{uuid.uuid4().hex[:12]}"


def sync_of(limit: RateLimit) -> ClusterSync:
    assert limit.sync is not None
    return limit.sync


async def test_the_hot_path_never_touches_redis(executor: CountingExecutor) -> None:
    limit = limiter(executor, rps=1000, burst=1000)

    async def ok(request: Request) -> Response:
        return Response(200, b"{}")

    check = limit.check(Route("GET", "/q", ok))
    assert check is not None
    for i in range(300):
        request = Request("GET", "/q", b"", {}, "0" * 32, f"192.0.2.{i % 200}")
        assert dict(check(request))[b"ratelimit-policy"] == b'"default";q=1000;w=1'
    assert executor.commands == []


async def test_a_single_process_push_leaves_the_shared_bucket_equal_to_the_local_one(
    executor: CountingExecutor, redis_sync: redis.Redis
) -> None:
    limit = limiter(executor, rps=1, burst=10, push_threshold=1)
    key = fresh_key()
    for _ in range(6):
        assert limit.limiter.acquire(key)[0]
    local = limit.limiter.debt(key)
    assert await sync_of(limit).sync_once() == 1
    assert limit.limiter.debt(key) == pytest.approx(local, abs=0.05)
    ttl_ms = redis_sync.pttl(redis_key(key))
    assert 6000 < ttl_ms <= 6000 + 1000 + 50  # the debt, plus a second's retention
    # nobody else uses it: not marked shared, so an admission below the threshold waits
    assert not limit.limiter._states[key].shared


async def test_two_processes_learn_each_other_s_consumption(executor: CountingExecutor) -> None:
    a = limiter(executor, rps=1, burst=10, push_threshold=2)
    b = limiter(executor, rps=1, burst=10, push_threshold=2)
    key = fresh_key()
    assert sum(a.limiter.acquire(key)[0] for _ in range(4)) == 4
    await sync_of(a).sync_once()
    # b has heard nothing yet: its own budget admits 6, and its push brings a's 4 in
    assert sum(b.limiter.acquire(key)[0] for _ in range(6)) == 6
    await sync_of(b).sync_once()
    assert b.limiter.debt(key) == pytest.approx(10, abs=0.05)
    assert b.limiter._states[key].shared
    assert not b.limiter.acquire(key)[0]  # the pair has spent the burst of 10
    # a still believes 6 are left, but it pushes after its threshold of 2 and then knows
    assert a.limiter.acquire(key)[0]
    assert a.limiter.acquire(key)[0]
    await sync_of(a).sync_once()
    assert a.limiter.debt(key) == pytest.approx(12, abs=0.05)
    assert a.limiter._states[key].shared
    assert not a.limiter.acquire(key)[0]


async def test_over_admission_from_both_sides_is_paid_back(executor: CountingExecutor) -> None:
    a = limiter(executor, rps=1, burst=5, push_threshold=1)
    b = limiter(executor, rps=1, burst=5, push_threshold=1)
    key = fresh_key()
    assert sum(a.limiter.acquire(key)[0] for _ in range(5)) == 5
    assert sum(b.limiter.acquire(key)[0] for _ in range(5)) == 5  # before any sync
    await asyncio.gather(sync_of(a).sync_once(), sync_of(b).sync_once())
    debts = sorted([a.limiter.debt(key), b.limiter.debt(key)])
    assert debts[1] == pytest.approx(10, abs=0.05)  # the later push saw both
    # whichever learnt of ten must refuse for the next ~5 s, not just ~0 s
    later = a if a.limiter.debt(key) > b.limiter.debt(key) else b
    assert not later.limiter.acquire(key)[0]
    assert later.limiter.acquire(key)[1] == pytest.approx(5 + 1, abs=0.05)


async def test_many_keys_go_in_chunked_scripts_one_chunk_at_a_time(
    executor: CountingExecutor,
) -> None:
    limit = limiter(executor, rps=1, burst=10, push_threshold=1)
    keys = [fresh_key() for _ in range(CHUNK * 2 + 10)]
    for key in keys:
        limit.limiter.acquire(key)
    assert await sync_of(limit).sync_once() == len(keys)
    scripts = [c for c in executor.commands if c in {"EVALSHA", "EVAL"}]
    assert len(scripts) == 3
    # One after another: a burst of chunks would hold every hot-path script behind it.
    assert executor.max_in_flight == 1
    assert all(limit.limiter.debt(key) == pytest.approx(1, abs=0.05) for key in keys)


async def test_per_slot_grouping_gives_the_same_answers(executor: CountingExecutor) -> None:
    limit = limiter(executor, rps=1, burst=10, push_threshold=1)
    limit.sync = ClusterSync(limit.limiter, executor, interval=0.1, per_slot=True)
    keys = [fresh_key() for _ in range(20)]
    for i, key in enumerate(keys):
        for _ in range(i % 4 + 1):
            limit.limiter.acquire(key)
    assert await limit.sync.sync_once() == 20
    slots = {key_slot(redis_key(key).encode()) for key in keys}
    assert len(executor.commands) == len(slots)  # one script per slot
    for i, key in enumerate(keys):
        assert limit.limiter.debt(key) == pytest.approx(i % 4 + 1, abs=0.05)


async def test_the_sync_reloads_its_script_after_redis_forgets_it(
    executor: CountingExecutor, redis_sync: redis.Redis
) -> None:
    limit = limiter(executor, push_threshold=1)
    key = fresh_key()
    limit.limiter.acquire(key)
    redis_sync.script_flush()
    assert await sync_of(limit).sync_once() == 1
    assert executor.commands == ["EVALSHA", "EVAL"]
    assert redis_sync.exists(redis_key(key))


async def test_stop_flushes_what_is_still_below_the_threshold(
    executor: CountingExecutor, redis_sync: redis.Redis
) -> None:
    limit = limiter(executor, push_threshold=100)
    await limit.start()
    key = fresh_key()
    limit.limiter.acquire(key)
    limit.limiter.acquire(key)
    await asyncio.sleep(0.25)  # two sync rounds: below the threshold, nothing pushed
    assert not redis_sync.exists(redis_key(key))
    await limit.stop()
    assert 1000 < redis_sync.pttl(redis_key(key)) <= 2000 + 1000 + 50


async def test_redis_down_keeps_local_limiting_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = build_executor(RedisSettings(address=f"127.0.0.1:{free_port()}", command_timeout_ms=100))
    limit = limiter(dead, rps=1, burst=3, push_threshold=1)
    key = fresh_key()
    with caplog.at_level(logging.WARNING, "ticketgate.ratelimit"):
        for _ in range(4):
            limit.limiter.acquire(key)
            await sync_of(limit).sync_once()
            await asyncio.sleep(0.06)  # past the executor's reconnect back-off
    assert not limit.limiter.acquire(key)[0]  # the local budget still holds
    warnings = [r for r in caplog.records if r.name == "ticketgate.ratelimit"]
    assert len(warnings) == 1
    await dead.close()
