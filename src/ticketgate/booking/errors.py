"""Booking refusals: each carries the public API's wire code (README), never an HTTP status.

The edge turns them into the error envelope; the status of each code is the edge's table.
`BackendRefusal` is what a port raises when its backend says no or fails: the adapters raise
a subclass that also knows how its transport failed.
"""

from __future__ import annotations


class BookingError(Exception):
    """A refusal of the booking rules; `code` is one of the public API's wire error codes."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, retry_after_sec: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_sec = retry_after_sec


class MissingEventId(BookingError):
    code = "MISSING_EVENT_ID"


class MissingToken(BookingError):
    code = "MISSING_TOKEN"


class InvalidBooking(BookingError):
    """The request contradicts itself or the reservation it names (seats, amount, ids)."""

    code = "INVALID_REQUEST"


class TokenForbidden(BookingError):
    """The caller holds a reservation token that is not theirs to use here."""

    code = "FORBIDDEN"


class TokenGone(BookingError):
    """The token was theirs, but expired or bought its hold already: enter again."""

    code = "RESERVATION_EXPIRED"


class TokenBusy(BookingError):
    """Another attempt with the same token is running; retrying soon is the answer."""

    code = "RESERVATION_IN_PROGRESS"


class ReservationNotFound(BookingError):
    """Also for someone else's reservation: ids cannot be probed."""

    code = "RESERVATION_NOT_FOUND"


class HoldExpired(BookingError):
    code = "RESERVATION_EXPIRED"


class NotPayable(BookingError):
    """Cancelled, failed or already paid: nothing left to pay for."""

    code = "RESERVATION_NOT_HELD"


class PaymentNotApproved(BookingError):
    code = "PAYMENT_NOT_APPROVED"


class BackendRefusal(BookingError):
    """A backend behind a port refused or failed; `code` is the wire code it maps to."""

    def __init__(self, code: str, message: str, *, retry_after_sec: float | None = None) -> None:
        super().__init__(message, retry_after_sec=retry_after_sec)
        self.code = code
