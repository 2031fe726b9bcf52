"""Redis command executors shared by every request of a worker process.

`PipelinedExecutor` keeps one connection (redis-py's connection, parser, AUTH and TLS) and
writes all commands issued during one event-loop tick in a single write; a reader task
matches replies to callers in order. This is what lets a join cost one EVALSHA without one
syscall pair per request (26k vs 16.8k req/s when first measured). It owns what such a layer must:
reconnect with back-off, a deadline on the oldest reply, a cap on pending commands, and fast
failure while Redis is down, so handlers answer 503 at once instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import hiredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.exceptions import BusyLoadingError, ResponseError

from ticketgate.redisio.errors import RedisUnavailable, cluster_client_unavailable
from ticketgate.redisio.observer import OperationObserver
from ticketgate.redisio.settings import RedisSettings

__all__ = [
    "ClusterExecutor",
    "PackedHead",
    "PipelinedExecutor",
    "RedisExecutor",
    "RedisUnavailable",
    "pack_head",
]


class PackedHead:
    """The leading arguments of commands sent many times (a script's EVALSHA, its SHA, one
    event's keys and what else stays the same between calls), packed once: packing is
    formatting every argument, and all but two of a status call's 16 are the same for every
    fan of an event until its counts or its copy change (RedisQueueStore.status)."""

    __slots__ = ("args", "packed")

    def __init__(self, args: tuple[Any, ...], packed: bytes) -> None:
        self.args = args  # for an executor that must see them (a cluster routes by key)
        self.packed = packed  # their bulk strings, without the array's header


def pack_head(*args: Any) -> PackedHead:
    packed = hiredis.pack_command(args)
    return PackedHead(args, packed[packed.index(b"\n") + 1 :])


class RedisExecutor(Protocol):
    @property
    def observers(self) -> tuple[OperationObserver, ...]:
        """Called around every script run on this executor (ticketgate.redisio.scripts)."""
        ...

    async def execute(self, *args: Any) -> Any: ...

    async def execute_after(self, head: PackedHead, *args: Any) -> Any:
        """`execute(*head.args, *args)`, the head packed already."""
        ...

    async def load_script(self, source: str) -> None: ...

    async def close(self) -> None: ...


def _now() -> float:
    return time.monotonic()


def stream_writer(conn: AbstractConnection) -> asyncio.StreamWriter | None:
    """The connection's socket writer, or None once it is closed.

    The one private attribute of redis-py this project reads: redis-py has no public way to
    write bytes already packed without awaiting a drain per call, which is what lets one write
    carry every command of a loop tick. Pinned for redis==8.1.0 by
    tests/unit/test_executor.py::test_the_private_writer_of_redis_py_is_still_there, which
    fails on an upgrade that renames it.
    """
    writer: asyncio.StreamWriter | None = conn._writer
    return writer


def pack_command(conn: AbstractConnection, args: tuple[Any, ...]) -> bytes:
    """`args` in the Redis protocol, as `conn.pack_command` would write them.

    hiredis packs in C what redis-py packs in Python, ~7× faster: for a join's EVALSHA (17
    arguments) that is ~6 µs of the request saved. hiredis takes only str, int, float and
    bytes; anything else (a bool, a bytearray, an int subclass) and a multi-word command
    name ("CONFIG GET") go through redis-py, whose encoder decides them as it always did.
    """
    name = args[0]
    if type(name) is str and " " not in name:
        try:
            packed: bytes = hiredis.pack_command(args)
            return packed
        except TypeError:
            pass
    return b"".join(conn.pack_command(*args))


_ARRAY_HEADERS = tuple(b"*%d\r\n" % count for count in range(64))


def pack_after(conn: AbstractConnection, head: PackedHead, args: tuple[Any, ...]) -> bytes:
    """`head.args + args` in the Redis protocol, only `args` formatted now."""
    count = len(head.args) + len(args)
    if not args or count >= len(_ARRAY_HEADERS):
        return pack_command(conn, (*head.args, *args))
    try:
        tail: bytes = hiredis.pack_command(args)
    except TypeError:  # a type only redis-py's encoder decides (see pack_command)
        return pack_command(conn, (*head.args, *args))
    return _ARRAY_HEADERS[count] + head.packed + tail[tail.index(b"\n") + 1 :]


class PipelinedExecutor:
    """One multiplexed connection; replies come back in the order commands were written."""

    def __init__(
        self,
        connection_factory: Callable[[], AbstractConnection],
        *,
        command_timeout: float,
        max_pending: int,
        connect_timeout: float | None = None,
        min_backoff: float = 0.05,
        max_backoff: float = 1.0,
        observers: tuple[OperationObserver, ...] = (),
    ) -> None:
        self.observers = observers
        self._factory = connection_factory
        self._timeout = command_timeout
        # The whole attempt (TCP, TLS, AUTH, CLIENT SETNAME): a hung server accepts the TCP
        # connection and then never answers the handshake.
        self._connect_timeout = command_timeout if connect_timeout is None else connect_timeout
        self._max_pending = max_pending
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._backoff = min_backoff
        self._conn: AbstractConnection | None = None
        # The loop the connection lives on, set with it: asyncio.get_running_loop() costs a
        # getpid() system call per command on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._down_until = 0.0
        self._outbox: list[bytes] = []
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_due = 0.0
        self._last_reply = 0.0
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def execute(self, *args: Any) -> Any:
        conn = self._conn
        if conn is None:
            conn = await self._connect()
        return await self._send(pack_command(conn, args))

    async def execute_after(self, head: PackedHead, *args: Any) -> Any:
        conn = self._conn
        if conn is None:
            conn = await self._connect()
        return await self._send(pack_after(conn, head, args))

    def _send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue `command` for this loop tick's write; its reply completes the future."""
        if len(self._waiters) >= self._max_pending:
            raise RedisUnavailable("too many Redis commands pending")
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._outbox.append(command)
        self._waiters.append((future, _now() + self._timeout))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        conn = self._conn
        if not self._outbox or conn is None:
            return
        data = b"".join(self._outbox)
        self._outbox.clear()
        writer = stream_writer(conn)  # a plain buffered, non-blocking write
        if writer is None:
            self._fail(RedisUnavailable("Redis connection closed"))
            return
        try:
            writer.write(data)
        except (OSError, RuntimeError) as exc:
            self._fail(RedisUnavailable(f"Redis write failed: {exc}"))

    async def _connect(self) -> AbstractConnection:
        if self._closed:
            raise RedisUnavailable("Redis executor is closed")
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
            if self._conn is None:
                raise RedisUnavailable("Redis is unavailable")
            return self._conn
        if _now() < self._down_until:
            raise RedisUnavailable("Redis is unavailable (reconnecting)")
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        conn = self._factory()
        try:
            await asyncio.wait_for(conn.connect(), self._connect_timeout)  # type: ignore[no-untyped-call]
        except Exception as exc:
            self._down_until = _now() + self._backoff
            self._backoff = min(self._max_backoff, self._backoff * 2)
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise RedisUnavailable(f"cannot connect to Redis: {exc}") from exc
        finally:
            self._connecting.set_result(None)
            self._connecting = None
        self._backoff = self._min_backoff
        self._conn = conn
        self._loop = loop
        self._last_reply = _now()
        self._reader = loop.create_task(self._read_loop(conn))
        self._arm_watchdog()
        return conn

    async def _read_loop(self, conn: AbstractConnection) -> None:
        waiters = self._waiters
        try:
            while True:
                try:
                    reply: Any = await conn.read_response(
                        timeout=math.inf, disconnect_on_error=False
                    )
                except (ResponseError, BusyLoadingError) as exc:
                    # An error reply, read whole: the stream is still in step. redis-py
                    # raises LOADING as a ConnectionError subclass, but it is a reply too.
                    reply = exc
                if not waiters:
                    raise RedisUnavailable("Redis sent a reply nobody asked for")
                self._last_reply = _now()
                future, _ = waiters.popleft()
                if future.done():
                    continue
                if isinstance(reply, ResponseError | BusyLoadingError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._conn is conn:
                self._fail(RedisUnavailable(f"Redis connection lost: {exc}"))

    def _arm_watchdog(self) -> None:
        """Wake at the oldest reply's deadline (or a tick, whichever is first), so a hung
        Redis fails callers at the command timeout, not up to a tick later."""
        delay = min(0.1, self._timeout / 4)
        if self._waiters:
            delay = max(0.001, min(delay, self._waiters[0][1] - _now()))
        self._watchdog_due = _now() + delay
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._check_deadline)

    def _check_deadline(self) -> None:
        """Declare Redis hung only when a reply is overdue AND nothing at all has come back for
        a whole timeout. A busy event loop (replies sitting unread in the socket) or a slow but
        progressing Redis must not tear down a connection full of good replies."""
        self._watchdog = None
        if self._conn is None:
            return
        now = _now()
        starved = now - self._watchdog_due > self._timeout / 2
        if (
            not starved
            and self._waiters
            and self._waiters[0][1] <= now
            and now - self._last_reply >= self._timeout
        ):
            self._fail(RedisUnavailable("Redis did not answer within the command timeout"))
            return
        self._arm_watchdog()

    def _fail(self, error: Exception) -> None:
        """Drop the connection and fail everything in flight: a pipelined stream cannot skip
        one late reply, so the only safe recovery is a fresh connection."""
        conn, self._conn = self._conn, None
        self._down_until = _now() + self._backoff
        self._backoff = min(self._max_backoff, self._backoff * 2)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        self._outbox.clear()
        while self._waiters:
            future, _ = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)
        if conn is not None:
            task = asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def load_script(self, source: str) -> None:
        await self.execute("SCRIPT", "LOAD", source)

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._fail(RedisUnavailable("Redis executor closed"))
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


class ClusterExecutor:
    """Redis Cluster: redis-py routes each command by its key's slot (all keys of one event
    share the `{event_id}` hash tag, so every script runs on one shard)."""

    def __init__(
        self,
        client: RedisCluster,
        command_timeout: float,
        observers: tuple[OperationObserver, ...] = (),
    ) -> None:
        self.observers = observers
        self._client = client
        self._timeout = command_timeout

    async def execute(self, *args: Any) -> Any:
        return await self._answer(self._client.execute_command(*args), self._timeout)

    async def execute_after(self, head: PackedHead, *args: Any) -> Any:
        """The cluster client packs and routes the whole command itself."""
        return await self.execute(*head.args, *args)

    async def load_script(self, source: str) -> None:
        """SCRIPT LOAD has no key to route by: send it to every primary."""
        await self._answer(self._client.script_load(source), self._timeout * 4)

    @staticmethod
    async def _answer(call: Awaitable[Any], limit_sec: float) -> Any:
        """The reply, or the error reply; any other failure the cluster client raises while
        the cluster cannot answer (redisio/errors.py decides which) is RedisUnavailable."""
        try:
            return await asyncio.wait_for(call, limit_sec)
        except ResponseError:
            raise  # a reply: the caller's classification (redisio/errors.py) decides
        except Exception as exc:
            if cluster_client_unavailable(exc):
                raise RedisUnavailable(f"Redis cluster unavailable: {exc}") from exc
            raise

    async def close(self) -> None:
        await self._client.aclose()


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]"), int(port)


def build_executor(
    settings: RedisSettings, observers: tuple[OperationObserver, ...] = ()
) -> RedisExecutor:
    """Pick the executor for the configured topology; `observers` see every script run on
    it (the app's enabled instruments)."""
    timeout = settings.command_timeout_ms / 1000.0
    connect_timeout = settings.connect_timeout_ms / 1000.0
    common: dict[str, Any] = {
        "username": settings.username or None,
        "password": settings.password or None,
        "socket_connect_timeout": connect_timeout,
    }
    address = settings.address
    if settings.cluster_mode:
        if "://" in address:
            client = RedisCluster.from_url(address, **common)
        else:
            host, port = _split_address(address.split(",")[0])
            client = RedisCluster(host=host, port=port, ssl=settings.tls_enabled, **common)
        return ClusterExecutor(client, timeout, observers)

    tls = settings.tls_enabled or address.startswith("rediss://")
    target: dict[str, Any]
    connection_class: type[AbstractConnection]
    if "://" in address:
        # Validated at start (redisio/settings.py): a host for redis(s)://, a path for unix://.
        parsed = parse_url(address)
        common["username"] = parsed.get("username") or common["username"]
        common["password"] = parsed.get("password") or common["password"]
        db = int(parsed.get("db", settings.db))
        if address.startswith("unix://"):
            target = {"path": str(parsed["path"])}
            connection_class = UnixDomainSocketConnection
        else:
            target = {"host": str(parsed["host"]), "port": int(parsed.get("port", 6379))}
            connection_class = SSLConnection if tls else Connection
    else:
        host, port = _split_address(address)
        target = {"host": host, "port": port}
        db = settings.db
        connection_class = SSLConnection if tls else Connection

    def factory() -> AbstractConnection:
        return connection_class(
            db=db, socket_timeout=None, client_name="ticketgate", **target, **common
        )

    return PipelinedExecutor(
        factory,
        command_timeout=timeout,
        connect_timeout=connect_timeout,
        max_pending=settings.max_pending,
        observers=observers,
    )
