"""The facts booking decisions are made of: request limits, the public names of the backends'
states, which of them can be paid for, and a payment outcome as the payment service reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketgate.proto.payment.v1 import payment_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2

# Seats one reservation request may name (or ask for by quantity).
MAX_SEATS = 10
_RES_PREFIX = "RESERVATION_STATUS_"
_PAY_PREFIX = "PAYMENT_STATUS_"
# States in which a reservation can still be paid for.
PAYABLE = frozenset(
    {reservation_pb2.RESERVATION_STATUS_HOLD, reservation_pb2.RESERVATION_STATUS_PENDING}
)


def reservation_status(value: reservation_pb2.ReservationStatus.ValueType) -> str:
    """HOLD, CONFIRMED, ... (the enum name without its prefix)."""
    try:
        return reservation_pb2.ReservationStatus.Name(value).removeprefix(_RES_PREFIX)
    except ValueError:  # a status newer than our contract
        return "UNSPECIFIED"


def payment_status(value: payment_pb2.PaymentStatus.ValueType) -> str:
    try:
        return payment_pb2.PaymentStatus.Name(value).removeprefix(_PAY_PREFIX)
    except ValueError:
        return "UNSPECIFIED"


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What the payment service's webhook claims happened to one payment intent."""

    payment_intent_id: str
    reservation_id: str
    status: str  # COMPLETED or FAILED today; others are acknowledged and ignored
