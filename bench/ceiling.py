"""The "ceiling" app: the least a Redis-backed endpoint can cost on this server stack.

A bare ASGI callable that reads the request, runs one EVALSHA of a trivial script through
plain redis-py asyncio (a connection pool, no batching) and answers a small JSON body. Served
by the same uvicorn (uvloop, httptools) with the same worker count as the gateway, its req/s
is the yardstick the gateway's join and status are compared with (issue 2).

With CEILING_CLIENT=batched the same handler goes through ticketgate's pipelined executor
instead (the concurrent calls of one event-loop tick written at once): the yardstick for the
stretch goal, and the measure of what the gateway's own HTTP and domain layers cost.

Run: CEILING_REDIS_URL=redis://127.0.0.1:6390/0 uvicorn bench.ceiling:app --workers 2
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import redis.asyncio as aioredis

from ticketgate.redisio.executor import RedisExecutor, build_executor
from ticketgate.redisio.settings import RedisSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SCRIPT = "return redis.call('INCR', KEYS[1])"
KEY = "bench:ceiling:hits"
_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class CeilingApp:
    def __init__(self, url: str, client: str) -> None:
        if client not in ("redis-py", "batched"):
            raise ValueError(f"CEILING_CLIENT must be redis-py or batched, got {client!r}")
        self._url = url
        self._client = client
        self._redis: aioredis.Redis | None = None
        self._executor: RedisExecutor | None = None
        self._sha = hashlib.sha1(SCRIPT.encode()).hexdigest()

    async def _startup(self) -> None:
        if self._client == "batched":
            self._executor = build_executor(RedisSettings(address=self._url))
            await self._executor.execute("SCRIPT", "LOAD", SCRIPT)
        else:
            self._redis = aioredis.Redis.from_url(self._url)
            await self._redis.script_load(SCRIPT)

    async def _run_script(self) -> int:
        if self._executor is not None:
            return int(await self._executor.execute("EVALSHA", self._sha, 1, KEY))
        assert self._redis is not None
        return int(await self._redis.evalsha(self._sha, 1, KEY))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._redis is not None:
                    await self._redis.aclose()
                if self._executor is not None:
                    await self._executor.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        more = True
        while more:  # read the body, as the gateway's join does
            message = await receive()
            more = bool(message.get("more_body", False))
        value = await self._run_script()
        body = b'{"status":"ok","value":%d}' % value
        headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


app = CeilingApp(
    os.environ.get("CEILING_REDIS_URL", "redis://127.0.0.1:6379/0"),
    os.environ.get("CEILING_CLIENT", "redis-py"),
)
