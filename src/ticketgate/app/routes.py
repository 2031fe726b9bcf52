"""Every route of the app, area by area, in the order the gateway lists them."""

from __future__ import annotations

from ticketgate.app.auth import Auth
from ticketgate.app.booking import Booking
from ticketgate.app.queue import Queue
from ticketgate.backends.health import GrpcHealthProbe
from ticketgate.config import Settings
from ticketgate.edge.routes import Route
from ticketgate.http.accounts import AccountRoutes
from ticketgate.http.admin import AdminRoutes
from ticketgate.http.booking import BookingRoutes
from ticketgate.http.docs import SwaggerRoutes
from ticketgate.http.frontdoor import Frontdoor
from ticketgate.http.metrics import MetricsRoutes
from ticketgate.http.queue import QueueRoutes
from ticketgate.http.system import SystemRoutes
from ticketgate.observability.queue_gauges import QueueGauges


def build_routes(settings: Settings, queue: Queue, auth: Auth, booking: Booking) -> list[Route]:
    routes = QueueRoutes(queue.room).routes()
    if auth.accounts is not None:
        routes += AccountRoutes(auth.accounts).routes()
    routes += BookingRoutes(booking.service, settings.backends.webhook_secret).routes()
    routes += AdminRoutes(queue.events).routes()
    if settings.metrics_enabled:
        # Queue depth and admission rate per event, read from the store at scrape time.
        routes += MetricsRoutes([QueueGauges(queue.events)]).routes()
    routes += SwaggerRoutes().routes()
    routes += Frontdoor(
        settings.frontdoor, queue.events, accounts_enabled=settings.accounts_enabled
    ).routes()
    system = SystemRoutes(
        settings.environment,
        settings.redis,
        queue.store,
        {
            "reservation": GrpcHealthProbe(booking.clients.reservations),
            "payment": GrpcHealthProbe(booking.clients.payments),
        },
        settings.readiness,
    )
    # In place: the OpenAPI document the system routes serve is built from this very list,
    # so it lists them too.
    routes += system.routes(routes)
    return routes
