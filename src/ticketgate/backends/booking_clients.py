"""The reservation and payment clients of one application, built from one BackendSettings,
and the booking service over them.

Wiring, not booking: embedded mode learns the in-process services' ports only at start-up,
after the routes and the booking service were built around these clients, so the clients are
re-aimed here; shutdown closes both channels.
"""

from __future__ import annotations

from ticketgate.backends.clients import PaymentClient, ReservationClient
from ticketgate.backends.observer import RpcObserver
from ticketgate.backends.settings import BackendSettings
from ticketgate.booking.service import BookingService
from ticketgate.waitingroom.service import WaitingRoom


class BookingClients:
    def __init__(self, settings: BackendSettings, observers: tuple[RpcObserver, ...] = ()) -> None:
        self.settings = settings
        self.reservations = ReservationClient(settings, observers=observers)
        self.payments = PaymentClient(settings, observers=observers)

    def booking_service(self, room: WaitingRoom) -> BookingService:
        """Booking over these clients: the token lease outlives the configured hold deadline,
        and payments report to the configured webhook URL."""
        return BookingService(
            room,
            self.reservations,
            self.payments,
            hold_timeout_ms=self.settings.reservation_timeout_ms,
            webhook_url=self.settings.webhook_url,
        )

    def use_embedded(self, reservation_address: str, payment_address: str) -> None:
        """Embedded mode: aim the clients at in-process services started at start-up.
        Configured addresses win; call before serving."""
        self.settings = self.settings.with_addresses(reservation_address, payment_address)
        self.reservations.backend.retarget(self.settings.reservation_address)
        self.payments.backend.retarget(self.settings.payment_address)

    async def close(self) -> None:
        """Close both channels (lifespan shutdown)."""
        await self.reservations.close()
        await self.payments.close()
