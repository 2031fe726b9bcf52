"""The pipelining Redis executor against real redis-server processes.

Each test that stops, pauses or reconfigures Redis owns its server, so the session's
shared one is never disturbed. Timing bounds carry slack for a busy two-core machine but
stay well under what a hang would take.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError, ResponseError

from tests.redis_server import RedisServer, running_redis
from ticketgate.redisio.errors import raised_inside_redis_py
from ticketgate.redisio.executor import (
    PipelinedExecutor,
    RedisUnavailable,
    build_executor,
    pack_after,
    pack_command,
    pack_head,
    stream_writer,
)
from ticketgate.redisio.scripts import Script
from ticketgate.redisio.settings import RedisSettings

TIMEOUT_MS = 300
SLACK = 0.15


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with running_redis() as own:
        yield own


def sync_client(server: RedisServer, **kw: Any) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, **kw)


ExecutorFactory = Callable[..., PipelinedExecutor]


@pytest.fixture
async def make_executor(server: RedisServer) -> AsyncIterator[ExecutorFactory]:
    made: list[PipelinedExecutor] = []

    def make(**settings: Any) -> PipelinedExecutor:
        fields: dict[str, Any] = {
            "address": server.address,
            "command_timeout_ms": TIMEOUT_MS,
            "connect_timeout_ms": TIMEOUT_MS,
            **settings,
        }
        executor = build_executor(RedisSettings(**fields))
        assert isinstance(executor, PipelinedExecutor)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        await executor.close()


async def until_answering(executor: PipelinedExecutor, within: float) -> int:
    """Retry PING until it answers; return how many attempts failed on the way."""
    deadline = time.monotonic() + within
    failures = 0
    while True:
        try:
            assert await executor.execute("PING") == b"PONG"
            return failures
        except RedisUnavailable:
            failures += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def test_every_caller_gets_its_own_reply_in_a_burst(make_executor: ExecutorFactory) -> None:
    executor = make_executor()
    count = 2_000
    assert await asyncio.gather(*(executor.execute("SET", f"k{i}", f"v{i}") for i in range(count)))
    replies = await asyncio.gather(*(executor.execute("GET", f"k{i}") for i in range(count)))
    assert replies == [f"v{i}".encode() for i in range(count)]


async def test_concurrent_first_calls_share_one_connection(
    make_executor: ExecutorFactory, server: RedisServer
) -> None:
    executor = make_executor()
    ids = await asyncio.gather(*(executor.execute("CLIENT", "ID") for _ in range(50)))
    assert len(set(ids)) == 1
    assert await executor.execute("CLIENT", "GETNAME") == b"ticketgate"
    with sync_client(server) as admin:
        names = [c["name"] for c in admin.client_list()]
    assert names.count("ticketgate") == 1


async def test_an_error_reply_fails_only_its_caller(make_executor: ExecutorFactory) -> None:
    executor = make_executor()
    await executor.execute("SET", "text", "abc")
    results = await asyncio.gather(
        executor.execute("GET", "text"),
        executor.execute("INCR", "text"),
        executor.execute("GET", "text"),
        return_exceptions=True,
    )
    assert results[0] == results[2] == b"abc"
    assert isinstance(results[1], ResponseError)
    assert not isinstance(results[1], RedisUnavailable)
    assert executor.connected, "an error reply is an answer, not a broken connection"


async def test_a_script_forgotten_by_redis_is_sent_again(
    make_executor: ExecutorFactory, server: RedisServer
) -> None:
    executor = make_executor()
    script = Script("echo", "return 'echo:' .. ARGV[1]")
    await script.preload(executor)
    assert await script.run(executor, ("k",), "one") == b"echo:one"
    with sync_client(server) as admin:
        admin.script_flush()
        assert admin.script_exists(script.sha) == [False]
        evals_before = admin.info("commandstats").get("cmdstat_eval", {}).get("calls", 0)

        assert await script.run(executor, ("k",), "two") == b"echo:two"
        assert admin.script_exists(script.sha) == [True], "the EVAL fallback cached it again"
        assert await script.run(executor, ("k",), "three") == b"echo:three"
        evals_after = admin.info("commandstats")["cmdstat_eval"]["calls"]
    assert evals_after == evals_before + 1, "one EVAL to reload, EVALSHA again afterwards"


async def test_a_script_on_a_packed_head_answers_as_without_and_survives_a_flush(
    make_executor: ExecutorFactory, server: RedisServer
) -> None:
    executor = make_executor()
    script = Script("pair", "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}")
    keys = ("a:{e}", "b:{e}")
    head = script.head(keys)
    await script.preload(executor)
    expected = [b"a:{e}", b"b:{e}", b"7", b"x"]
    assert await script.run(executor, keys, 7, "x", head=head) == expected
    assert await script.run(executor, keys, 7, "x") == expected
    with sync_client(server) as admin:
        admin.script_flush()
    assert await script.run(executor, keys, 7, "x", head=head) == expected  # EVAL, then cached
    assert await script.run(executor, keys, 7, "x", head=head) == expected
    leading = script.head(keys, 7)  # an argument packed with the keys
    assert await script.run(executor, keys, "x", head=leading) == expected
    with sync_client(server) as admin:
        admin.script_flush()
    assert await script.run(executor, keys, "x", head=leading) == expected  # EVAL with it


async def test_concurrent_calls_after_a_flush_all_succeed(
    make_executor: ExecutorFactory, server: RedisServer
) -> None:
    executor = make_executor()
    script = Script("inc", "return redis.call('INCR', KEYS[1])")
    await script.preload(executor)
    with sync_client(server) as admin:
        admin.script_flush()
    results = await asyncio.gather(*(script.run(executor, ("n",)) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))


async def test_it_reconnects_after_the_connection_is_killed(
    make_executor: ExecutorFactory, server: RedisServer
) -> None:
    executor = make_executor()
    first_id = await executor.execute("CLIENT", "ID")
    with sync_client(server) as admin:
        assert admin.client_kill_filter(_id=first_id) == 1
    failures = await until_answering(executor, within=2.0)
    assert failures <= 3
    assert await executor.execute("CLIENT", "ID") != first_id


async def test_a_stopped_redis_fails_fast_and_recovery_follows_its_return(
    make_executor: ExecutorFactory, server: RedisServer
) -> None:
    executor = make_executor()
    assert await executor.execute("PING") == b"PONG"
    server.stop()

    started = time.monotonic()
    with pytest.raises(RedisUnavailable):
        await executor.execute("PING")
    with pytest.raises(RedisUnavailable):
        await executor.execute("PING")
    assert time.monotonic() - started < TIMEOUT_MS / 1000 + SLACK
    assert not executor.connected

    server.start()
    await until_answering(executor, within=2.0)
    assert await executor.execute("SET", "back", "1") == b"OK"


async def test_a_paused_redis_fails_in_flight_commands_within_the_command_timeout(
    make_executor: ExecutorFactory, server: RedisServer
) -> None:
    executor = make_executor()
    assert await executor.execute("PING") == b"PONG"
    server.pause()
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(executor.execute("PING") for _ in range(100)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        assert all(isinstance(r, RedisUnavailable) for r in results)
        assert TIMEOUT_MS / 1000 * 0.9 <= elapsed <= TIMEOUT_MS / 1000 + SLACK

        # Still hung: a new command must not wait longer than a reconnect attempt allows.
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await executor.execute("PING")
        assert time.monotonic() - started <= TIMEOUT_MS / 1000 + SLACK
    finally:
        server.resume()
    await until_answering(executor, within=3.0)


async def test_a_timeout_drops_the_connection_so_late_replies_cannot_be_misrouted(
    make_executor: ExecutorFactory, server: RedisServer
) -> None:
    executor = make_executor()
    await executor.execute("SET", "answer", "late")
    server.pause()
    try:
        with pytest.raises(RedisUnavailable):
            await executor.execute("GET", "answer")
    finally:
        server.resume()
    await until_answering(executor, within=3.0)
    await executor.execute("SET", "other", "fresh")
    assert await executor.execute("GET", "other") == b"fresh"
    assert await executor.execute("GET", "answer") == b"late"


async def test_pending_commands_are_capped(make_executor: ExecutorFactory) -> None:
    executor = make_executor(max_pending=5)
    assert await executor.execute("PING") == b"PONG"
    results = await asyncio.gather(
        *(executor.execute("INCR", "capped") for _ in range(12)), return_exceptions=True
    )
    answered = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, RedisUnavailable)]
    assert sorted(answered) == [1, 2, 3, 4, 5]
    assert len(refused) == 7
    assert all("pending" in str(r) for r in refused)
    assert executor.connected, "refusing excess work does not break the connection"
    again = await asyncio.gather(*(executor.execute("INCR", "capped") for _ in range(5)))
    assert sorted(again) == [6, 7, 8, 9, 10]


async def test_a_closed_executor_refuses_work(make_executor: ExecutorFactory) -> None:
    executor = make_executor()
    assert await executor.execute("PING") == b"PONG"
    await executor.close()
    await executor.close()
    with pytest.raises(RedisUnavailable, match="closed"):
        await executor.execute("PING")
    await asyncio.sleep(0)
    leftovers = [t for t in asyncio.all_tasks() if "read_loop" in repr(t.get_coro())]
    assert leftovers == [], "the reader task ends with the executor"


async def test_nothing_listening_is_unavailable_at_once() -> None:
    from tests.redis_server import free_port

    executor = build_executor(
        RedisSettings(address=f"127.0.0.1:{free_port()}", command_timeout_ms=TIMEOUT_MS)
    )
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="cannot connect"):
            await executor.execute("PING")
        with pytest.raises(RedisUnavailable, match="reconnecting"):
            await executor.execute("PING")
        assert time.monotonic() - started < SLACK
    finally:
        await executor.close()


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    own = RedisServer(extra_args=["--requirepass", "s3cret"])
    own.start()
    try:
        yield own
    finally:
        own.stop()


async def test_auth_with_the_configured_password(password_server: RedisServer) -> None:
    address = password_server.address
    good = build_executor(RedisSettings(address=address, password="s3cret"))
    in_url = build_executor(RedisSettings(address=f"redis://:s3cret@{address}/0"))
    wrong = build_executor(RedisSettings(address=address, password="nope"))
    missing = build_executor(RedisSettings(address=address))
    try:
        assert await good.execute("PING") == b"PONG"
        assert await in_url.execute("PING") == b"PONG"
        for refused in (wrong, missing):
            with pytest.raises(RedisUnavailable):
                await refused.execute("PING")
    finally:
        for executor in (good, in_url, wrong, missing):
            await executor.close()


async def test_the_database_comes_from_the_url(
    make_executor: ExecutorFactory, server: RedisServer
) -> None:
    executor = make_executor(address=f"redis://{server.address}/2")
    await executor.execute("SET", "where", "db2")
    with sync_client(server, db=2) as db2, sync_client(server, db=0) as db0:
        assert db2.get("where") == b"db2"
        assert db0.get("where") is None


async def test_a_cancelled_caller_does_not_shift_the_replies_of_others(
    make_executor: ExecutorFactory,
) -> None:
    executor = make_executor()
    await executor.execute("SET", "a", "A")
    await executor.execute("SET", "b", "B")
    doomed = asyncio.ensure_future(executor.execute("GET", "a"))
    survivor = asyncio.ensure_future(executor.execute("GET", "b"))
    await asyncio.sleep(0)
    doomed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await doomed
    assert await survivor == b"B"
    assert await executor.execute("GET", "a") == b"A"


async def test_the_private_writer_of_redis_py_is_still_there(server: RedisServer) -> None:
    """`stream_writer` reads redis-py's private `_writer`: on a connected connection it must
    be an asyncio StreamWriter, and None once disconnected. A redis-py upgrade that renames or
    changes it fails here instead of leaving every command unsent."""
    conn = Connection(host="127.0.0.1", port=server.port)
    assert stream_writer(conn) is None
    await conn.connect()  # type: ignore[no-untyped-call]
    writer = stream_writer(conn)
    assert isinstance(writer, asyncio.StreamWriter)
    writer.write(b"".join(conn.pack_command("PING")))
    assert await conn.read_response() == b"PONG"
    await conn.disconnect()
    assert stream_writer(conn) is None


class _Count(int):
    """An int subclass: hiredis refuses it, redis-py writes its repr."""


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, "q:{evt}:wait", "q:{evt}:seen", "", "0", 86_400_000, -1),
        ("SET", "k", 0.1, 1e20, float("inf"), -0.0, 2**70),
        ("SET", "k", b"\x00\xff", memoryview(b"view"), "é\u2603", ""),
        ("SET", "k", bytearray(b"mutable")),  # hiredis refuses it; redis-py packs it
        ("SET", "k", _Count(5)),
        ("CONFIG GET", "maxmemory"),  # a multi-word name is split into words
    ],
)
def test_commands_are_packed_exactly_as_redis_py_packs_them(args: tuple[Any, ...]) -> None:
    """The executor packs with hiredis (C) and falls back to redis-py for what hiredis
    refuses: either way the bytes on the wire are redis-py's."""
    conn = Connection()
    assert pack_command(conn, args) == b"".join(conn.pack_command(*args))


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, "q:{evt}:wait", "q:{evt}:seen", "", "0", 86_400_000, -1),
        ("SET", "k", 0.1, 1e20, float("inf"), -0.0, 2**70),
        ("SET", "k", b"\x00\xff", memoryview(b"view"), "é\u2603", ""),
        ("SET", "k", bytearray(b"mutable")),
        ("SET", "k", _Count(5)),
        ("SET", "k", *range(70)),  # more arguments than the array headers kept
    ],
)
def test_a_packed_head_and_the_rest_are_the_bytes_of_the_whole_command(
    args: tuple[Any, ...],
) -> None:
    """Whatever the split, the head packed once plus the arguments packed per call are what
    redis-py would write for the whole command."""
    conn = Connection()
    whole = b"".join(conn.pack_command(*args))
    for split in range(2, len(args) + 1):
        assert pack_after(conn, pack_head(*args[:2]), args[2:]) == whole
        if all(isinstance(arg, str | int) and type(arg) in (str, int) for arg in args[:split]):
            assert pack_after(conn, pack_head(*args[:split]), args[split:]) == whole, split


@pytest.mark.parametrize("value", [True, None, object()])
def test_values_redis_py_refuses_are_still_refused_as_it_refuses_them(value: object) -> None:
    with pytest.raises(DataError):
        pack_command(Connection(), ("SET", "k", value))


async def test_an_error_from_inside_redis_py_counts_as_unavailable_but_ours_does_not() -> None:
    """The failover 500: redis-py writing on a connection a reconnect has just torn down fails
    with a plain AttributeError from its own code. That one is a lost connection (503); the
    same class raised by our code is a bug and must stay one."""
    torn_down = Connection(host="127.0.0.1", port=1)  # no writer, as after a disconnect
    with pytest.raises(AttributeError) as inside:
        await torn_down._send_packed_command([b"PING\r\n"])  # the path the failover hit
    assert raised_inside_redis_py(inside.value)

    def ours() -> None:
        none: Any = None
        none.writelines([b"PING"])

    with pytest.raises(AttributeError) as outside:
        ours()
    assert not raised_inside_redis_py(outside.value)


async def test_a_cluster_that_cannot_answer_is_unavailable_for_script_loads_too() -> None:
    """Nothing listens: redis-py's cluster client raises its own exceptions (not the builtin
    ConnectionError). Commands and SCRIPT LOAD are classified alike (redisio/errors.py), so
    a store's start-up preload sees RedisUnavailable (a warning), not a crash."""
    from tests.redis_server import free_port

    executor = build_executor(
        RedisSettings(
            address=f"127.0.0.1:{free_port()}",
            cluster_mode=True,
            command_timeout_ms=TIMEOUT_MS,
            connect_timeout_ms=TIMEOUT_MS,
        )
    )
    try:
        with pytest.raises(RedisUnavailable):
            await executor.execute("GET", "k")
        with pytest.raises(RedisUnavailable):
            await executor.load_script("return 1")
    finally:
        await executor.close()
