"""The Redis store on a real three-primary Redis Cluster (REDIS_CLUSTER_MODE=true).

Pins that every script of one event runs on one shard (the `{event_id}` hash tag), that
events spread over the shards, and that a script flushed from a node is reloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from tests.redis_server import RedisServer, free_cluster_port
from ticketgate.queuestore.redis_store import RedisQueueStore
from ticketgate.redisio.executor import build_executor
from ticketgate.redisio.settings import RedisSettings
from ticketgate.waitingroom.model import ClaimOutcome, EnterOutcome, WaiterState
from ticketgate.waitingroom.settings import QueueSettings

pytestmark = pytest.mark.skipif(
    shutil.which("redis-cli") is None, reason="redis-cli (redis-tools) is needed to form a cluster"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[RedisServer]]:
    nodes = [RedisServer(port=free_cluster_port()) for _ in range(3)]
    try:
        for node in nodes:
            node.extra_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            node.start()
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(n.address for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=False,
            capture_output=True,
            timeout=30,
            text=True,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        client = redis.Redis(port=nodes[0].port)
        for _ in range(200):
            if client.cluster("INFO")["cluster_state"] == "ok":
                break
            time.sleep(0.05)
        client.close()
        yield nodes
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):
                node.stop()
            shutil.rmtree(node.workdir, ignore_errors=True)


@pytest.fixture
async def cluster_store(cluster: list[RedisServer]) -> AsyncIterator[RedisQueueStore]:
    settings = RedisSettings(address=cluster[0].address, cluster_mode=True)
    store = RedisQueueStore(build_executor(settings), QueueSettings(token_secret=b"s" * 32))
    await store.start()
    yield store
    await store.close()


async def test_queue_operations_work_for_events_on_every_shard(
    cluster: list[RedisServer], cluster_store: RedisQueueStore
) -> None:
    events = [f"evt_cluster_{i}" for i in range(12)]
    for event in events:
        first = await cluster_store.join(event, "", "")
        second = await cluster_store.join(event, "", "")
        assert (first.position, second.position) == (1, 2)
        assert (await cluster_store.status(event, second.seq)).position == 2
        assert await cluster_store.leave(event, first.seq, "") is not None
        status = await cluster_store.status(event, second.seq)
        assert (status.state, status.position) == (WaiterState.WAITING, 1)
    holders = set()
    for node in cluster:
        client = redis.Redis(port=node.port)
        if client.dbsize():
            holders.add(node.port)
        client.close()
    assert len(holders) >= 2, "twelve events should spread over more than one shard"


async def test_flushed_script_is_reloaded_on_that_shard(
    cluster: list[RedisServer], cluster_store: RedisQueueStore
) -> None:
    for node in cluster:
        client = redis.Redis(port=node.port)
        client.script_flush()
        client.close()
    joined = await cluster_store.join("evt_cluster_flush", "u1", "")
    result = await cluster_store.enter("evt_cluster_flush", joined.seq, joined.joined_ms, "u1")
    assert result.outcome is EnterOutcome.GRANTED


async def test_concurrent_enters_on_a_cluster_grant_once(
    cluster_store: RedisQueueStore,
) -> None:
    joined = await cluster_store.join("evt_cluster_race", "", "")
    results = await asyncio.gather(
        *(
            cluster_store.enter("evt_cluster_race", joined.seq, joined.joined_ms, "u")
            for _ in range(20)
        )
    )
    assert sum(r.outcome is EnterOutcome.GRANTED for r in results) == 1


async def test_reservation_claims_and_settles_on_every_shard(
    cluster_store: RedisQueueStore,
) -> None:
    """The armed reservation and its lease share the event's hash tag (one slot per script)."""
    for i in range(6):
        event = f"evt_cluster_claim_{i}"
        joined = await cluster_store.join(event, f"u{i}", "")
        result = await cluster_store.enter(event, joined.seq, joined.joined_ms, f"u{i}")
        assert result.outcome is EnterOutcome.GRANTED
        claims = await asyncio.gather(
            *(
                cluster_store.claim_reservation(event, joined.seq, f"u{i}", f"l{n}", 5_000)
                for n in range(5)
            )
        )
        assert claims.count(ClaimOutcome.CLAIMED) == 1
        holder = f"l{claims.index(ClaimOutcome.CLAIMED)}"
        await cluster_store.settle_reservation(event, joined.seq, holder, used=False)
        again = await cluster_store.claim_reservation(event, joined.seq, f"u{i}", "m", 5_000)
        assert again is ClaimOutcome.CLAIMED
        await cluster_store.settle_reservation(event, joined.seq, "m", used=True)
        gone = await cluster_store.claim_reservation(event, joined.seq, f"u{i}", "n", 5_000)
        assert gone is ClaimOutcome.GONE
