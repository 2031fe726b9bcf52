"""What booking needs from the reservation and payment backends, declared here, implemented
elsewhere: the gRPC clients of `ticketgate.backends.clients` satisfy these protocols
structurally (they take the `CallContext` declared here), so booking never imports them.

A port call that the backend refuses, or that fails, raises `errors.BackendRefusal`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ticketgate.proto.payment.v1 import payment_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a backend call carries from the request that caused it: the trace it belongs to,
    the request id, and the idempotency key under which the backend may deduplicate it."""

    trace_id: str
    request_id: str = ""
    idempotency_key: str = ""


class Reservations(Protocol):
    def check_available(self) -> None:
        """Refuse now (BackendRefusal) while the backend is known to be down."""

    async def create(
        self,
        context: CallContext,
        *,
        event_id: str,
        seat_ids: Sequence[str],
        quantity: int,
        user_id: str,
        reservation_token: str,
    ) -> reservation_pb2.CreateReservationResponse: ...

    async def get(
        self, context: CallContext, *, reservation_id: str, user_id: str
    ) -> reservation_pb2.GetReservationResponse: ...

    async def confirm(
        self, context: CallContext, *, reservation_id: str, user_id: str, payment_intent_id: str
    ) -> reservation_pb2.ConfirmReservationResponse: ...

    async def cancel(
        self, context: CallContext, *, reservation_id: str, user_id: str, reason: str = ""
    ) -> reservation_pb2.CancelReservationResponse: ...


class Payments(Protocol):
    def check_available(self) -> None:
        """Refuse now (BackendRefusal) while the backend is known to be down."""

    async def create_intent(
        self,
        context: CallContext,
        *,
        reservation_id: str,
        amount: int,
        currency: str,
        user_id: str,
        scenario: str,
        webhook_url: str,
    ) -> payment_pb2.CreatePaymentIntentResponse: ...

    async def status(
        self, context: CallContext, *, payment_intent_id: str
    ) -> payment_pb2.GetPaymentStatusResponse: ...
