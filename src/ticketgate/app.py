"""Builds the ASGI application: store, waiting room, routes, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ticketgate.config import Settings, load_settings
from ticketgate.http.core import Gateway
from ticketgate.http.queue import QueueRoutes
from ticketgate.http.system import SystemRoutes
from ticketgate.middleware.auth import DevBypassAuthenticator
from ticketgate.redisio.executor import build_executor
from ticketgate.waitingroom.memory_store import MemoryQueueStore
from ticketgate.waitingroom.model import QueueUnavailable
from ticketgate.waitingroom.redis_store import RedisQueueStore
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.store import QueueStore

log = logging.getLogger("ticketgate")


def build_store(settings: Settings) -> QueueStore:
    if settings.redis.enabled:
        return RedisQueueStore(build_executor(settings.redis), settings.queue)
    return MemoryQueueStore(settings.queue)


def create_app(settings: Settings | None = None, store: QueueStore | None = None) -> Gateway:
    """The gateway for `settings` (from the environment when omitted)."""
    settings = settings or load_settings()
    store = store or build_store(settings)
    room = WaitingRoom(store, settings.queue)
    system = SystemRoutes(settings, store)
    routes = QueueRoutes(room).routes()
    routes += system.routes(routes)
    sweeper: list[asyncio.Task[None]] = []

    async def startup() -> None:
        if isinstance(store, RedisQueueStore):
            try:
                await store.preload()
            except QueueUnavailable as exc:
                log.warning("Redis not reachable at start (%s); serving 503 until it is", exc)
        sweeper.append(asyncio.get_running_loop().create_task(room.run_sweeper()))

    async def shutdown() -> None:
        for task in sweeper:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()

    gateway = Gateway(
        routes,
        DevBypassAuthenticator(settings.dev_bypass_enabled),
        max_body_bytes=settings.max_body_bytes,
        on_startup=startup,
        on_shutdown=shutdown,
    )
    return gateway


def app_factory() -> Gateway:
    """Entry for `uvicorn --factory` in worker processes."""
    return create_app()
