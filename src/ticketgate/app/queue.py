"""The queue part: the store adapter the settings pick, the waiting room over it, the
operators' event admin, and the ghost sweeper that runs as an app task."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ticketgate.app.lifecycle import BackgroundTask
from ticketgate.background import every
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.queuestore.redis_store import RedisQueueStore
from ticketgate.redisio.executor import RedisExecutor
from ticketgate.waitingroom.events import EventAdmin
from ticketgate.waitingroom.model import QueueUnavailable
from ticketgate.waitingroom.service import QueueObserver, WaitingRoom
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore

log = logging.getLogger("ticketgate")


@dataclass(frozen=True, slots=True)
class Queue:
    store: QueueStore
    room: WaitingRoom
    events: EventAdmin  # operators: /api/v1/admin/events, the front door, the queue gauges
    sweeper: BackgroundTask  # sweep_ghosts over `room`


def build_queue(
    settings: QueueSettings,
    executor: RedisExecutor | None,
    observer: QueueObserver | None,
    store: QueueStore | None = None,
) -> Queue:
    """Redis when the app has an executor, the embedded memory store otherwise; `store`, when
    given, replaces both (tests hand in a prepared one)."""
    if store is None:
        store = (
            RedisQueueStore(executor, settings)
            if executor is not None
            else MemoryQueueStore(settings)
        )
    room = WaitingRoom(store, settings, observer)
    interval_sec = settings.sweep_interval_ms / 1000
    return Queue(
        store, room, EventAdmin(room), BackgroundTask(lambda: sweep_ghosts(room, interval_sec))
    )


async def sweep_ghosts(room: WaitingRoom, interval_sec: float) -> None:
    """The ghost sweeper, an app task (started with the app, cancelled at its shutdown):
    one WaitingRoom.sweep_once round every `interval_sec`. A round that finds the store
    unavailable was reported by the room; any other failure is logged; either way the next
    round runs (a sweeper that stopped would leave ghosts holding places for good)."""

    async def round_() -> None:
        removed = await room.sweep_once()
        if removed:
            log.info("swept %d ghost waiters", removed)

    await every(interval_sec, round_, log, "ghost sweep", reported=(QueueUnavailable,))
