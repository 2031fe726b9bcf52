"""The booking part: the gRPC clients of the reservation and payment backends, the booking
service over them, and, in embedded mode, the reference services run in this process."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import grpc

from ticketgate.app.queue import Queue
from ticketgate.backends.booking_clients import BookingClients
from ticketgate.booking.service import BookingService
from ticketgate.config import Settings
from ticketgate.database import Database
from ticketgate.observability.instruments import Instruments
from ticketgate.services.inventory import DEMO_EVENT_ID
from ticketgate.services.server import run_services
from ticketgate.services.settings import ServiceSettings
from ticketgate.waitingroom.events import EventAdmin
from ticketgate.waitingroom.model import QueueUnavailable


class EmbeddedServices:
    """The reference services in this process (development, or BACKEND_EMBEDDED): started
    at the app's start, when their ports become known, so the clients are re-aimed then."""

    def __init__(
        self,
        settings: ServiceSettings,
        database: Database,
        interceptors: tuple[grpc.aio.ServerInterceptor[Any, Any], ...],
        clients: BookingClients,
        events: EventAdmin | None,
    ) -> None:
        """`events`: where the seeded demo event's queue is registered (None when it needs no
        registration: none is seeded, or queues are created on first join)."""
        self._settings = settings
        self._database = database
        self._interceptors = interceptors
        self._clients = clients
        self._events = events
        self._running = contextlib.AsyncExitStack()

    async def start(self) -> None:
        running = await self._running.enter_async_context(
            run_services(self._settings, self._database, interceptors=self._interceptors)
        )
        self._clients.use_embedded(running.reservation_address, running.payment_address)
        if self._events is not None:
            # The demo seats exist, so its queue does too (events must be registered here).
            with contextlib.suppress(QueueUnavailable):
                await self._events.ensure_registered(DEMO_EVENT_ID)

    async def stop(self) -> None:
        await self._running.aclose()


@dataclass(frozen=True, slots=True)
class Booking:
    clients: BookingClients
    service: BookingService
    embedded: EmbeddedServices | None  # None when the backends run elsewhere


def build_booking(
    settings: Settings, instruments: Instruments, queue: Queue, database: Database | None
) -> Booking:
    clients = BookingClients(settings.backends, observers=instruments.rpc)
    embedded: EmbeddedServices | None = None
    if settings.services is not None and database is not None:
        seeded = settings.services.seed_demo_event and not settings.queue.auto_create_events
        embedded = EmbeddedServices(
            settings.services,
            database,
            instruments.services,
            clients,
            queue.events if seeded else None,
        )
    return Booking(clients, clients.booking_service(queue.room), embedded)
