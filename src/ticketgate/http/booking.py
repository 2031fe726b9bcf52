"""Booking endpoints: reservations and payments (README, API table).

The rules (token consumption, ownership, payability, amounts, the reservation → payment flow)
are `booking.service.BookingService`'s; this module parses requests, calls it, and maps its
results to JSON and its refusals to the error envelope. The edge's own duties:
- the caller's identity comes from the JWT and is forwarded as `user_id`;
- the Idempotency-Key is forwarded, scoped by user, path and key, so two users choosing the
  same key never share a backend record;
- the payment webhook is authenticated by its HMAC signature before booking sees it.

Token refusals: a forged token, another user's token or a token for another event is
403 FORBIDDEN (the caller holds something that is not theirs to use); a token that expired
or was already used is 410 RESERVATION_EXPIRED (it was theirs, it is gone: enter again); a
token another attempt is using right now is 409 RESERVATION_IN_PROGRESS with Retry-After
(never stored under the Idempotency-Key, so the same request may simply be retried).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Annotated, ClassVar, Literal, TypeVar

import msgspec

from ticketgate import webhooks
from ticketgate.backends.errors import BackendError
from ticketgate.backends.settings import WEBHOOK_PATH
from ticketgate.booking.errors import BookingError
from ticketgate.booking.model import MAX_SEATS, PaymentOutcome, payment_status, reservation_status
from ticketgate.booking.ports import CallContext
from ticketgate.booking.service import BookingService
from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.edge.request_id import request_id_from
from ticketgate.edge.routes import AuthPolicy, Handler, Idempotency, Route
from ticketgate.http.schemas import EventId
from ticketgate.middleware.idempotency import scoped_idempotency_key
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2

_B = TypeVar("_B", "ConfirmRequest", "CancelRequest")

_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
_ID_PATTERN = re.compile(_ID)
_NO_STORE = ((b"cache-control", b"no-store"),)
_SIGNATURE_HEADER = webhooks.HEADER.lower().encode()

Id = Annotated[str, msgspec.Meta(pattern=f"^{_ID}$", description="Backend identifier")]
SeatId = Annotated[str, msgspec.Meta(min_length=1, max_length=32, description="e.g. A-12")]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217")]


# --------------------------------------------------------------------------- bodies


class CreateReservationRequest(msgspec.Struct, forbid_unknown_fields=True):
    # Empty ones get MISSING_EVENT_ID / MISSING_TOKEN from BookingService.reserve.
    __openapi_required__: ClassVar[tuple[str, ...]] = ("event_id", "reservation_token")

    event_id: EventId = ""
    seat_ids: Annotated[list[SeatId], msgspec.Meta(max_length=MAX_SEATS)] = msgspec.field(
        default_factory=list
    )
    # 0 (or absent) means "as many as seat_ids"; without seat_ids at least 1 (400 otherwise).
    quantity: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEATS)] = 0
    reservation_token: Annotated[
        str, msgspec.Meta(max_length=512, description="Single-use token from queue/enter")
    ] = ""


class SeatView(msgspec.Struct):
    seat_id: str
    section: str
    row: str
    number: int
    price: int


class ReservationCreated(msgspec.Struct, omit_defaults=True):
    reservation_id: str
    status: str
    hold_expires_at: str | None
    reserved_seats: list[SeatView]
    total_amount: int
    currency: str
    payment_url: str | None = None


class ReservationView(msgspec.Struct, omit_defaults=True):
    reservation_id: str
    event_id: str
    status: str
    hold_expires_at: str | None
    reserved_seats: list[SeatView]
    total_amount: int
    currency: str
    order_id: str | None = None
    payment_intent_id: str | None = None


class ConfirmRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Optional body: without it the reservation service checks the intent it knows."""

    # One pattern that admits "" rather than `Id | Literal[""]`: msgspec checked such a union
    # against the pattern only, refusing the "" that the document allowed.
    payment_intent_id: Annotated[
        str, msgspec.Meta(pattern=f"^(?:{_ID})?$", description="Backend identifier, or empty")
    ] = ""


class ConfirmResponse(msgspec.Struct):
    reservation_id: str
    order_id: str
    status: str


class CancelRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Optional body."""

    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class CancelResponse(msgspec.Struct):
    reservation_id: str
    status: str


class PaymentIntentRequest(msgspec.Struct, forbid_unknown_fields=True):
    reservation_id: Id
    amount: Annotated[int, msgspec.Meta(ge=0, le=10**12, description="Minor units")]
    currency: Currency
    scenario: Literal["approve", "fail", "delay", "random", "timeout"] = "approve"


class PaymentIntentResponse(msgspec.Struct):
    payment_intent_id: str
    status: str
    next: str


class PaymentWebhook(msgspec.Struct, forbid_unknown_fields=True):
    """What the payment service posts, signed with `X-Ticketgate-Signature`."""

    payment_intent_id: Id
    reservation_id: Id
    user_id: str
    # COMPLETED or FAILED today; any other outcome is acknowledged and ignored, so a newer
    # simulator never makes the gateway refuse (and the sender retry) a webhook forever.
    status: Annotated[str, msgspec.Meta(max_length=32)]
    amount: int
    currency: str
    occurred_at: str


class WebhookResponse(msgspec.Struct, omit_defaults=True):
    received: bool
    result: Literal["confirmed", "ignored"]
    order_id: str | None = None


# --------------------------------------------------------------------------- helpers


def _booking_errors(handler: Handler) -> Handler:
    """Booking and backend refusals leave the handler as the envelope (inside the idempotency
    interceptor, so final refusals are stored and transient ones released like any other
    answer)."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except BookingError as exc:
            # A backend's refusal carries its own status; booking's codes take the table's.
            status = exc.status if isinstance(exc, BackendError) else None
            raise ApiError.from_refusal(exc, status=status) from None

    return run


def _context(request: Request, idempotency_key: str = "") -> CallContext:
    return CallContext(
        trace_id=request.trace_id,
        request_id=request_id_from(request.header(b"x-request-id"), request.trace_id),
        idempotency_key=idempotency_key,
    )


def _keyed_context(request: Request) -> CallContext:
    return _context(request, scoped_idempotency_key(request))


def _path_id(request: Request) -> str:
    """The `{id}` of the path; one that cannot exist is simply not found."""
    value = request.path_params.get("id", "")
    if _ID_PATTERN.fullmatch(value) is None:
        raise ApiError("RESERVATION_NOT_FOUND", "reservation not found")
    return value


def _optional_body(request: Request, schema: type[_B]) -> _B:
    """confirm and cancel accept an empty body (the reference web client sends none)."""
    if not request.body.strip():
        return schema()
    return request.json(schema)


def _seats(seats: Iterable[common_pb2.Seat]) -> list[SeatView]:
    return [
        SeatView(seat.seat_id, seat.section, seat.row, seat.number, seat.price.amount)
        for seat in seats
    ]


def _rfc3339(
    message: reservation_pb2.CreateReservationResponse | reservation_pb2.GetReservationResponse,
) -> str | None:
    if not message.HasField("hold_expires_at"):
        return None
    return message.hold_expires_at.ToJsonString()


# --------------------------------------------------------------------------- routes


class BookingRoutes:
    def __init__(
        self,
        booking: BookingService,
        webhook_secret: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.booking = booking
        self._webhook_secret = webhook_secret
        self._clock = clock  # wall clock of the webhook timestamp check

    async def create(self, request: Request) -> Response:
        body = request.json(CreateReservationRequest)
        created = await self.booking.reserve(
            _keyed_context(request),
            request.user_id,
            event_id=body.event_id,
            seat_ids=body.seat_ids,
            quantity=body.quantity,
            token=body.reservation_token,
        )
        view = ReservationCreated(
            reservation_id=created.reservation_id,
            status=reservation_status(created.status),
            hold_expires_at=_rfc3339(created),
            reserved_seats=_seats(created.reserved_seats),
            total_amount=created.total_amount.amount,
            currency=created.total_amount.currency,
            payment_url=created.payment_url or None,
        )
        location = f"/api/v1/reservations/{created.reservation_id}".encode()
        return Response.json(201, view, (*_NO_STORE, (b"location", location)))

    async def get(self, request: Request) -> Response:
        found = await self.booking.reservation(
            _context(request), request.user_id, _path_id(request)
        )
        view = ReservationView(
            reservation_id=found.reservation_id,
            event_id=found.event_id,
            status=reservation_status(found.status),
            hold_expires_at=_rfc3339(found),
            reserved_seats=_seats(found.reserved_seats),
            total_amount=found.total_amount.amount,
            currency=found.total_amount.currency,
            order_id=found.order_id or None,
            payment_intent_id=found.payment_intent_id or None,
        )
        return Response.json(200, view, _NO_STORE)

    async def confirm(self, request: Request) -> Response:
        reservation_id = _path_id(request)
        body = _optional_body(request, ConfirmRequest)
        confirmed = await self.booking.confirm(
            _keyed_context(request), request.user_id, reservation_id, body.payment_intent_id
        )
        return Response.json(
            200,
            ConfirmResponse(
                reservation_id=confirmed.reservation_id or reservation_id,
                order_id=confirmed.order_id,
                status=reservation_status(confirmed.status),
            ),
            _NO_STORE,
        )

    async def cancel(self, request: Request) -> Response:
        reservation_id = _path_id(request)
        body = _optional_body(request, CancelRequest)
        cancelled = await self.booking.cancel(
            _keyed_context(request), request.user_id, reservation_id, body.reason
        )
        return Response.json(
            200,
            CancelResponse(
                reservation_id=cancelled.reservation_id or reservation_id,
                status=reservation_status(cancelled.status),
            ),
            _NO_STORE,
        )

    async def payment_intent(self, request: Request) -> Response:
        body = request.json(PaymentIntentRequest)
        intent = await self.booking.start_payment(
            _keyed_context(request),
            request.user_id,
            reservation_id=body.reservation_id,
            amount=body.amount,
            currency=body.currency,
            scenario=body.scenario,
        )
        return Response.json(
            200,
            PaymentIntentResponse(
                payment_intent_id=intent.payment_intent_id,
                status=payment_status(intent.status),
                next=intent.next_action or "webhook",
            ),
            _NO_STORE,
        )

    async def webhook(self, request: Request) -> Response:
        signature = request.header(_SIGNATURE_HEADER)
        if not webhooks.verify(self._webhook_secret, request.body, signature, self._clock()):
            raise ApiError("INVALID_SIGNATURE", f"missing or invalid {webhooks.HEADER} header")
        event = request.json(PaymentWebhook)
        confirmed = await self.booking.apply_payment_outcome(
            _context(request),
            PaymentOutcome(event.payment_intent_id, event.reservation_id, event.status),
        )
        if confirmed is None:
            return Response.json(200, WebhookResponse(True, "ignored"))
        return Response.json(200, WebhookResponse(True, "confirmed", confirmed.order_id))

    def routes(self) -> list[Route]:
        base = "/api/v1/reservations"
        err = None
        auth_errors = (401, err, "MISSING_AUTHORIZATION, INVALID_TOKEN_FORMAT, INVALID_TOKEN")
        upstream = (
            (502, err, "INTERNAL_ERROR: the backend failed"),
            (503, err, "UPSTREAM_UNAVAILABLE (Retry-After): backend down or circuit open"),
            (504, err, "UPSTREAM_TIMEOUT: the backend did not answer within its deadline"),
        )
        return [
            Route(
                "POST",
                base,
                _booking_errors(self.create),
                AuthPolicy.REQUIRED,
                "Hold seats with the reservation token from queue/enter",
                CreateReservationRequest,
                (
                    (201, ReservationCreated, "Seats held until hold_expires_at"),
                    (400, err, "MISSING_EVENT_ID, MISSING_TOKEN, INVALID_REQUEST"),
                    auth_errors,
                    (403, err, "FORBIDDEN: token invalid, another user's, or another event's"),
                    (
                        409,
                        err,
                        "SEAT_UNAVAILABLE, INSUFFICIENT_INVENTORY, DUPLICATE_REQUEST; "
                        "SEAT_LIMIT_EXCEEDED: over the seats one person may hold or buy; "
                        "RESERVATION_IN_PROGRESS (Retry-After): another attempt with this "
                        "token is running. A refused or failed attempt leaves the token usable",
                    ),
                    (410, err, "RESERVATION_EXPIRED: token expired or already used"),
                    upstream[0],
                    (503, err, f"{upstream[1][2]}; QUEUE_UNAVAILABLE"),
                    upstream[2],
                ),
                idempotency=Idempotency.REQUIRED,
            ),
            Route(
                "GET",
                f"{base}/{{id}}",
                _booking_errors(self.get),
                AuthPolicy.REQUIRED,
                "A reservation, to its owner",
                None,
                (
                    (200, ReservationView, "The reservation"),
                    auth_errors,
                    (404, err, "RESERVATION_NOT_FOUND (also for other users' reservations)"),
                    *upstream,
                ),
            ),
            Route(
                "POST",
                f"{base}/{{id}}/confirm",
                _booking_errors(self.confirm),
                AuthPolicy.REQUIRED,
                "Confirm a held reservation once its payment completed",
                ConfirmRequest,
                (
                    (200, ConfirmResponse, "Confirmed: the order id"),
                    (400, err, "INVALID_REQUEST"),
                    auth_errors,
                    (403, err, "FORBIDDEN"),
                    (404, err, "RESERVATION_NOT_FOUND"),
                    (409, err, "RESERVATION_NOT_HELD: cancelled or failed"),
                    (410, err, "RESERVATION_EXPIRED: the hold ran out"),
                    (412, err, "PAYMENT_NOT_APPROVED: payment missing, failed or not for this"),
                    *upstream,
                ),
                idempotency=Idempotency.REQUIRED,
                body_required=False,
            ),
            Route(
                "POST",
                f"{base}/{{id}}/cancel",
                _booking_errors(self.cancel),
                AuthPolicy.REQUIRED,
                "Cancel a reservation and release its seats",
                CancelRequest,
                (
                    (200, CancelResponse, "Cancelled"),
                    (400, err, "INVALID_REQUEST"),
                    auth_errors,
                    (403, err, "FORBIDDEN"),
                    (404, err, "RESERVATION_NOT_FOUND"),
                    (409, err, "RESERVATION_NOT_HELD: already confirmed"),
                    (410, err, "RESERVATION_EXPIRED"),
                    *upstream,
                ),
                idempotency=Idempotency.REQUIRED,
                body_required=False,
            ),
            Route(
                "POST",
                "/api/v1/payment/intent",
                _booking_errors(self.payment_intent),
                AuthPolicy.REQUIRED,
                "Start paying for a held reservation; the outcome arrives by webhook",
                PaymentIntentRequest,
                (
                    (200, PaymentIntentResponse, "Intent created"),
                    (400, err, "INVALID_REQUEST: e.g. amount differs from the total"),
                    auth_errors,
                    (404, err, "RESERVATION_NOT_FOUND"),
                    (409, err, "RESERVATION_NOT_HELD: cancelled, failed or already paid"),
                    (410, err, "RESERVATION_EXPIRED"),
                    *upstream,
                ),
                idempotency=Idempotency.REQUIRED,
            ),
            Route(
                "POST",
                WEBHOOK_PATH,
                _booking_errors(self.webhook),
                AuthPolicy.NONE,
                "Payment outcome from the payment service (HMAC-signed; not for browsers)",
                PaymentWebhook,
                (
                    (200, WebhookResponse, "Handled (replays answer the same)"),
                    (400, err, "INVALID_REQUEST"),
                    (401, err, "INVALID_SIGNATURE"),
                    (404, err, "RESERVATION_NOT_FOUND"),
                    (409, err, "RESERVATION_NOT_HELD: cancelled meanwhile"),
                    (410, err, "RESERVATION_EXPIRED: paid after the hold ran out"),
                    (412, err, "PAYMENT_NOT_APPROVED: the payment service disagrees"),
                    *upstream,
                ),
                # Server to server, authenticated by signature: a busy on-sale sends many
                # webhooks from one address, and a 429 would only delay confirmations.
                rate_limited=False,
            ),
        ]
