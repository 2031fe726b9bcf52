"""A real redis-server put into each state that refuses work (issue 10, item 7): every one
is a fast 503 QUEUE_UNAVAILABLE with Retry-After, never a 500, and the message a client
reads names no internal address. The classification is by exception class
(ticketgate/redisio/errors.py); redis-py 8 reworded the texts the old code matched on."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from tests.http_server import serve
from tests.integration.conftest import JOIN, STATUS, as_user, assert_envelope, dev_env, join
from tests.redis_server import RedisServer, free_port
from tests.required import backend_unavailable
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.redisio.errors import RedisUnavailable, client_message, unavailable_reason

EVENT = "evt_states"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server this test owns, with DEBUG allowed (LOADING is provoked through it)."""
    if shutil.which("redis-server") is None:
        backend_unavailable("redis-server is not installed")
    owned = RedisServer(extra_args=["--enable-debug-command", "yes"])
    owned.start()
    try:
        yield owned
    finally:
        with contextlib.suppress(Exception):
            owned.resume()
        owned.stop()
        shutil.rmtree(owned.workdir, ignore_errors=True)


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis(port=server.port, socket_timeout=30)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    env = dev_env(REDIS_ADDRESS=server.address, QUEUE_SWEEP_INTERVAL_MS="600000")
    async with serve(create_app(load_settings(env))) as http:
        yield http


def assert_unavailable(response: httpx.Response, server: RedisServer) -> None:
    assert_envelope(response, 503, "QUEUE_UNAVAILABLE")
    assert response.headers["retry-after"] == "1"
    message = response.json()["error"]["message"]
    assert "127.0.0.1" not in message
    assert str(server.port) not in message
    assert "retry shortly" in message


async def test_a_read_only_replica_is_503_not_500(
    server: RedisServer, admin: redis.Redis, client: httpx.AsyncClient
) -> None:
    token = await join(client, EVENT, headers=as_user(1))
    admin.replicaof("127.0.0.1", free_port())  # a primary that does not exist: link down
    try:
        response = await client.post(JOIN, json={"event_id": EVENT}, headers=as_user(2))
        assert_unavailable(response, server)
        assert "failing over" in response.json()["error"]["message"]
    finally:
        admin.replicaof("NO", "ONE")
    response = await client.post(JOIN, json={"event_id": EVENT}, headers=as_user(2))
    assert response.status_code == 202, response.text
    assert (await client.get(STATUS, params={"token": token})).status_code == 200


async def test_masterdown_is_503(
    server: RedisServer, admin: redis.Redis, client: httpx.AsyncClient
) -> None:
    token = await join(client, EVENT, headers=as_user(1))
    admin.config_set("replica-serve-stale-data", "no")
    admin.replicaof("127.0.0.1", free_port())
    try:
        assert_unavailable(await client.get(STATUS, params={"token": token}), server)
        assert_unavailable(
            await client.post(JOIN, json={"event_id": EVENT}, headers=as_user(2)), server
        )
    finally:
        admin.replicaof("NO", "ONE")
        admin.config_set("replica-serve-stale-data", "yes")
    assert (await client.get(STATUS, params={"token": token})).status_code == 200


async def test_out_of_memory_is_503(
    server: RedisServer, admin: redis.Redis, client: httpx.AsyncClient
) -> None:
    await join(client, EVENT, headers=as_user(1))
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    try:
        response = await client.post(JOIN, json={"event_id": EVENT}, headers=as_user(2))
        assert_unavailable(response, server)
        assert "out of memory" in response.json()["error"]["message"]
    finally:
        admin.config_set("maxmemory", "0")
    response = await client.post(JOIN, json={"event_id": EVENT}, headers=as_user(2))
    assert response.status_code == 202, response.text


async def test_a_script_over_its_time_limit_busy_is_503(
    server: RedisServer, admin: redis.Redis, client: httpx.AsyncClient
) -> None:
    await join(client, EVENT, headers=as_user(1))
    admin.config_set("busy-reply-threshold", "50")
    spinner = redis.Redis(port=server.port, socket_timeout=30)

    def spin() -> None:
        with contextlib.suppress(ResponseError):
            spinner.eval("while true do end", 0)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        await asyncio.sleep(0.3)
        response = await client.post(JOIN, json={"event_id": EVENT}, headers=as_user(2))
        assert_unavailable(response, server)
    finally:
        killer = redis.Redis(port=server.port, socket_timeout=5)
        for _ in range(50):
            try:
                killer.script_kill()
                break
            except ResponseError:  # NOTBUSY until the script is running
                await asyncio.sleep(0.05)
        killer.close()
        thread.join(10)
        spinner.close()


async def test_loading_is_503(
    server: RedisServer, admin: redis.Redis, client: httpx.AsyncClient
) -> None:
    token = await join(client, EVENT, headers=as_user(1))
    admin.execute_command("DEBUG", "POPULATE", "20000")  # type: ignore[no-untyped-call]
    admin.config_set("key-load-delay", "100")  # µs per key while loading: ~2 s to reload
    # Serve clients (with -LOADING) every KB loaded, not every 2 MB (the whole data set).
    admin.config_set("loading-process-events-interval-bytes", "1024")
    loader = redis.Redis(port=server.port, socket_timeout=60)
    thread = threading.Thread(
        target=lambda: loader.execute_command("DEBUG", "RELOAD"),  # type: ignore[no-untyped-call]
        daemon=True,
    )
    thread.start()
    try:
        seen_loading = False
        for _ in range(40):
            await asyncio.sleep(0.05)
            response = await client.get(STATUS, params={"token": token})
            assert response.status_code in {200, 503}, response.text
            if response.status_code == 503:
                assert_unavailable(response, server)
                seen_loading = "loading" in response.json()["error"]["message"]
                if seen_loading:
                    break
        assert seen_loading, "never answered LOADING while the data set reloaded"
    finally:
        thread.join(60)
        loader.close()
        admin.config_set("key-load-delay", "0")


async def test_a_refused_connection_names_no_address(
    server: RedisServer, client: httpx.AsyncClient
) -> None:
    server.stop()
    response = await client.post(JOIN, json={"event_id": EVENT}, headers=as_user(1))
    assert_unavailable(response, server)
    assert "connect" not in response.json()["error"]["message"].lower()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ReadOnlyError("You can't write against a read only replica."), "failover"),
        (MasterDownError("Link with MASTER is down"), "failover"),
        (ClusterDownError("The cluster is down"), "failover"),
        (TryAgainError("Multiple keys request during rehashing of slot"), "failover"),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "full"),
        (BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (ResponseError("BUSY Redis is busy running a script."), "busy"),
        (ResponseError("MISCONF Redis is configured to save RDB snapshots"), "readonly"),
        (redis.exceptions.ConnectionError("Error 111 connecting to 10.0.0.7:6379."), "unreachable"),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), "unreachable"),
        (RedisUnavailable("Redis did not answer within the command timeout"), "unreachable"),
        (TimeoutError(), "unreachable"),
    ],
)
def test_each_transient_class_is_classified(error: BaseException, reason: str) -> None:
    assert unavailable_reason(error) == reason
    assert "10.0.0.7" not in client_message(reason)


def test_the_parser_maps_cluster_replies_to_the_classes_we_classify() -> None:
    """CLUSTERDOWN and MASTERDOWN as a server sends them, through redis-py's own parser."""
    from redis._parsers.base import BaseParser

    for reply in ("CLUSTERDOWN The cluster is down", "MASTERDOWN Link with MASTER is down"):
        error = BaseParser.parse_error(reply)  # type: ignore[no-untyped-call]
        assert unavailable_reason(error) == "failover"


@pytest.mark.parametrize(
    "error",
    [
        ResponseError("ERR Error running script (call to f_x): @user_script:1: oops"),
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ValueError("not Redis at all"),
    ],
)
def test_a_bug_is_not_dressed_up_as_an_outage(error: BaseException) -> None:
    assert unavailable_reason(error) is None
