"""Attack probes of issue 10 on Redis addressing (item 1) and the reservation token (item 5).

Each probe replays what an operator's slip or an attacker did against the old code and checks
the answer the gateway must give now, over real sockets: a real redis-server (on a Unix
socket when the probe is about one) and the real app behind uvicorn.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import redis

from tests.http_server import serve
from tests.integration.conftest import JOIN, dev_env
from tests.redis_server import RedisServer, running_redis
from ticketgate.app import create_app
from ticketgate.config import ConfigError, load_settings


@pytest.fixture
def unix_redis() -> Iterator[RedisServer]:
    """A redis-server listening on a Unix socket only: no TCP port to fall back to."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with running_redis(unix_only=True) as server:
        yield server


# --------------------------------------------------------------------------- item 1


async def test_unix_socket_address_reaches_the_redis_on_that_socket(
    unix_redis: RedisServer,
) -> None:
    """`REDIS_ADDRESS=unix:///path` used to be parsed as "no host" and connect to
    127.0.0.1:6379; the queue must land in the Redis listening on the socket."""
    env = dev_env(REDIS_ADDRESS=unix_redis.address, QUEUE_SWEEP_INTERVAL_MS="600000")
    async with serve(create_app(load_settings(env))) as client:
        response = await client.post(JOIN, json={"event_id": "evt_unix_probe"})
        assert response.status_code == 202, response.text
        ready = await client.get("/readyz")
        assert ready.json()["dependencies"]["redis"] == "connected", ready.text
    inspector = redis.Redis(unix_socket_path=unix_redis.socket_path)
    try:
        assert inspector.zcard("tg:{evt_unix_probe}:wait") == 1
    finally:
        inspector.close()


async def test_unix_socket_database_number_is_honoured(unix_redis: RedisServer) -> None:
    env = dev_env(REDIS_ADDRESS=f"{unix_redis.address}?db=3", QUEUE_SWEEP_INTERVAL_MS="600000")
    async with serve(create_app(load_settings(env))) as client:
        response = await client.post(JOIN, json={"event_id": "evt_unix_db"})
        assert response.status_code == 202, response.text
    inspector = redis.Redis(unix_socket_path=unix_redis.socket_path, db=3)
    try:
        assert inspector.zcard("tg:{evt_unix_db}:wait") == 1
    finally:
        inspector.close()


@pytest.mark.parametrize(
    ("address", "extra", "fragment"),
    [
        ("redis://", {}, "must name a host"),
        ("redis:///0", {}, "must name a host"),
        ("rediss://:secret@/0", {}, "must name a host"),
        ("redis://:6379", {}, "must name a host"),
        ("unix://", {}, "absolute socket path"),
        ("unix://relative.sock", {}, "absolute socket path"),
        ("unix:///run/redis.sock", {"REDIS_CLUSTER_MODE": "true"}, "REDIS_CLUSTER_MODE"),
        ("unix:///run/redis.sock", {"REDIS_TLS_ENABLED": "true"}, "REDIS_TLS_ENABLED"),
    ],
)
def test_addresses_that_would_fall_back_to_localhost_are_refused(
    address: str, extra: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(dev_env(REDIS_ADDRESS=address, **extra))
    message = str(refused.value)
    assert fragment in message
    assert "\n" not in message
