"""Booking endpoints: reservations and payments (README, API table), over the gRPC backends.

The gateway's own duties here are the ones no backend can do for it:
- the reservation token from enter (bound to user and event) is claimed before any seat is
  held, so only admitted users reach the inventory. The claim is a lease: attempts with one
  token run one at a time, only a successful hold uses the token up, and a refused or failed
  attempt (409, 503, 504) leaves it usable until it expires, so a fan whose seat was just
  taken picks another instead of queueing again;
- the caller's identity comes from the JWT and is forwarded as `user_id`; a reservation is
  shown to its owner only (anyone else gets 404, so ids cannot be probed);
- the Idempotency-Key is forwarded, scoped by user, path and key, so two users choosing the
  same key never share a backend record;
- the payment webhook is authenticated by its HMAC signature, and the confirm it triggers
  carries a key derived from the payment intent, so a replayed webhook confirms once.

Token refusals: a forged token, another user's token or a token for another event is
403 FORBIDDEN (the caller holds something that is not theirs to use); a token that expired
or was already used is 410 RESERVATION_EXPIRED (it was theirs, it is gone: enter again); a
token another attempt is using right now is 409 RESERVATION_IN_PROGRESS with Retry-After
(never stored under the Idempotency-Key, so the same request may simply be retried).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Annotated, ClassVar, Literal, TypeVar

import msgspec

from ticketgate.backends.clients import CallContext, PaymentClient, ReservationClient
from ticketgate.backends.errors import BackendError
from ticketgate.backends.settings import WEBHOOK_PATH, BackendSettings
from ticketgate.http.core import AuthPolicy, Handler, Idempotency, Request, Response, Route
from ticketgate.http.errors import ApiError
from ticketgate.http.schemas import EventId
from ticketgate.middleware.idempotency import scoped_idempotency_key
from ticketgate.middleware.request_id import request_id_from
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.payment.v1 import payment_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2
from ticketgate.services import webhook_signature
from ticketgate.waitingroom.model import ClaimOutcome, QueueUnavailable
from ticketgate.waitingroom.service import ReservationClaim, WaitingRoom
from ticketgate.waitingroom.tokens import InvalidToken

_B = TypeVar("_B", "ConfirmRequest", "CancelRequest")
log = logging.getLogger("ticketgate.booking")
# A reservation attempt's lease on its token outlives the backend call it guards (the call's
# deadline plus this margin); a gateway that dies mid-call frees the token after it.
LEASE_MARGIN_MS = 5_000

MAX_SEATS = 10
_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
_ID_PATTERN = re.compile(_ID)
_NO_STORE = ((b"cache-control", b"no-store"),)
_SIGNATURE_HEADER = webhook_signature.HEADER.lower().encode()
_RES_PREFIX = "RESERVATION_STATUS_"
_PAY_PREFIX = "PAYMENT_STATUS_"
# States in which a reservation can still be paid for.
_PAYABLE = frozenset(
    {reservation_pb2.RESERVATION_STATUS_HOLD, reservation_pb2.RESERVATION_STATUS_PENDING}
)

Id = Annotated[str, msgspec.Meta(pattern=f"^{_ID}$", description="Backend identifier")]
SeatId = Annotated[str, msgspec.Meta(min_length=1, max_length=32, description="e.g. A-12")]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217")]


# --------------------------------------------------------------------------- bodies


class CreateReservationRequest(msgspec.Struct, forbid_unknown_fields=True):
    # Empty ones get MISSING_EVENT_ID / MISSING_TOKEN from the handler.
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


def _api_error(exc: BackendError) -> ApiError:
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if exc.retry_after_sec is not None:
        headers = ((b"retry-after", str(max(1, math.ceil(exc.retry_after_sec))).encode()),)
    return ApiError(exc.code, exc.message, status=exc.status, headers=headers)


def _backend_errors(handler: Handler) -> Handler:
    """Backend refusals leave the handler as the envelope (inside the idempotency interceptor,
    so final refusals are stored and transient ones released like any other answer)."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except BackendError as exc:
            raise _api_error(exc) from None

    return run


def _context(request: Request, idempotency_key: str = "") -> CallContext:
    return CallContext(
        trace_id=request.trace_id,
        request_id=request_id_from(request.header(b"x-request-id"), request.trace_id),
        idempotency_key=idempotency_key,
    )


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
        room: WaitingRoom,
        reservations: ReservationClient,
        payments: PaymentClient,
        settings: BackendSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.room = room
        self.reservations = reservations
        self.payments = payments
        self.settings = settings
        self._clock = clock  # wall clock of the webhook timestamp check
        self._lease_ms = settings.reservation_timeout_ms + LEASE_MARGIN_MS

    def use_embedded(self, reservation_address: str, payment_address: str) -> None:
        """Embedded mode: aim the clients at in-process services started at start-up (their
        ports are known only then). Configured addresses win; call before serving."""
        self.settings = self.settings.with_addresses(reservation_address, payment_address)
        self.reservations.backend.retarget(self.settings.reservation_address)
        self.payments.backend.retarget(self.settings.payment_address)

    async def close(self) -> None:
        """Close both channels (lifespan shutdown)."""
        await self.reservations.close()
        await self.payments.close()

    async def _claim_token(self, token: str, user_id: str, event_id: str) -> ReservationClaim:
        """Refuse with a code that says what to do: 403 "not yours", 410 "gone, enter again",
        409 + Retry-After "your other attempt with this token is still running"."""
        try:
            claims = self.room.signer.verify_reservation(token)
        except InvalidToken:
            raise ApiError("FORBIDDEN", "reservation token is not valid") from None
        if claims.user_id != user_id:
            raise ApiError("FORBIDDEN", "reservation token was issued to another user")
        if claims.event_id != event_id:
            raise ApiError("FORBIDDEN", "reservation token was issued for another event")
        claim = await self.room.claim_reservation(token, user_id, event_id, self._lease_ms)
        if claim.outcome is ClaimOutcome.BUSY:
            raise ApiError(
                "RESERVATION_IN_PROGRESS",
                "another reservation with this token is in progress; retry in a second",
                headers=((b"retry-after", b"1"),),
            )
        if claim.outcome is not ClaimOutcome.CLAIMED:
            raise ApiError(
                "RESERVATION_EXPIRED", "reservation token has expired or was already used"
            )
        return claim

    async def _settle(self, claim: ReservationClaim, used: bool) -> None:
        """Settle the claim; a store outage here must not turn a hold into an error (an
        unsettled lease lapses by itself, and the reservation service refuses a second hold
        with the same token)."""
        try:
            await self.room.settle_reservation(claim, used)
        except QueueUnavailable as exc:
            log.warning("could not settle reservation token of %s: %s", claim.event_id, exc)

    async def create(self, request: Request) -> Response:
        body = request.json(CreateReservationRequest)
        if not body.event_id:
            raise ApiError("MISSING_EVENT_ID", "event_id is required")
        WaitingRoom.check_event_id(body.event_id)
        if not body.reservation_token:
            raise ApiError("MISSING_TOKEN", "reservation_token (from queue/enter) is required")
        seats = body.seat_ids
        if len(set(seats)) != len(seats):
            raise ApiError("INVALID_REQUEST", "seat_ids must not repeat a seat")
        quantity = body.quantity or len(seats)
        if seats and quantity != len(seats):
            raise ApiError("INVALID_REQUEST", "quantity must equal the number of seat_ids")
        if quantity < 1:
            raise ApiError("INVALID_REQUEST", "give seat_ids or a quantity of at least 1")
        # Fail fast while the backend is known down, before the token is even claimed.
        self.reservations.check_available()
        user = request.user_id
        claim = await self._claim_token(body.reservation_token, user, body.event_id)
        used = False
        try:
            created = await self.reservations.create(
                _context(request, scoped_idempotency_key(request)),
                event_id=body.event_id,
                seat_ids=seats,
                quantity=quantity,
                user_id=user,
                reservation_token=body.reservation_token,
            )
            used = True
        finally:
            # Only a hold uses the token up: after a 409, 503 or 504 it is still theirs.
            await self._settle(claim, used)
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

    async def _owned(
        self, request: Request, reservation_id: str
    ) -> reservation_pb2.GetReservationResponse:
        """The reservation if the caller owns it; otherwise 404, never 403 (ids stay secret)."""
        user = request.user_id
        try:
            found = await self.reservations.get(
                _context(request), reservation_id=reservation_id, user_id=user
            )
        except BackendError as exc:
            if exc.code == "FORBIDDEN":
                raise ApiError("RESERVATION_NOT_FOUND", "reservation not found") from None
            raise
        if found.user_id != user:
            raise ApiError("RESERVATION_NOT_FOUND", "reservation not found")
        return found

    async def get(self, request: Request) -> Response:
        found = await self._owned(request, _path_id(request))
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
        confirmed = await self.reservations.confirm(
            _context(request, scoped_idempotency_key(request)),
            reservation_id=reservation_id,
            user_id=request.user_id,
            payment_intent_id=body.payment_intent_id,
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
        cancelled = await self.reservations.cancel(
            _context(request, scoped_idempotency_key(request)),
            reservation_id=reservation_id,
            user_id=request.user_id,
            reason=body.reason,
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
        self.payments.check_available()
        # The payment service does not know reservations: ownership, state and amount are
        # checked here, so nobody pays for someone else's seats or pays 1 won for them.
        found = await self._owned(request, body.reservation_id)
        if found.status == reservation_pb2.RESERVATION_STATUS_EXPIRED:
            raise ApiError("RESERVATION_EXPIRED", "the hold has expired")
        if found.status not in _PAYABLE:
            raise ApiError(
                "RESERVATION_NOT_HELD",
                f"the reservation is {reservation_status(found.status)}, not payable",
            )
        total = found.total_amount
        if found.HasField("total_amount") and (
            body.amount != total.amount or body.currency != total.currency
        ):
            raise ApiError(
                "INVALID_REQUEST",
                f"amount must equal the reservation's total ({total.amount} {total.currency})",
            )
        intent = await self.payments.create_intent(
            _context(request, scoped_idempotency_key(request)),
            reservation_id=body.reservation_id,
            amount=body.amount,
            currency=body.currency,
            user_id=request.user_id,
            scenario=body.scenario,
            webhook_url=self.settings.webhook_url,
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
        if not webhook_signature.verify(
            self.settings.webhook_secret, request.body, signature, self._clock()
        ):
            raise ApiError(
                "INVALID_SIGNATURE", f"missing or invalid {webhook_signature.HEADER} header"
            )
        event = request.json(PaymentWebhook)
        if event.status != "COMPLETED":
            # A failed payment changes nothing here: the hold runs out and the seats return.
            return Response.json(200, WebhookResponse(True, "ignored"))
        # The signed body says who paid; the payment service's record is still the authority.
        payment = await self.payments.status(
            _context(request), payment_intent_id=event.payment_intent_id
        )
        if payment.status != payment_pb2.PAYMENT_STATUS_COMPLETED:
            raise ApiError(
                "PAYMENT_NOT_APPROVED",
                f"payment {event.payment_intent_id} is {payment_status(payment.status)}",
            )
        if payment.reservation_id != event.reservation_id:
            raise ApiError("INVALID_REQUEST", "webhook reservation_id does not match the payment")
        confirmed = await self.reservations.confirm(
            # One key per payment intent: every replay, from any gateway pod, is one confirm.
            _context(request, f"payment-webhook:{event.payment_intent_id}"),
            reservation_id=payment.reservation_id,
            user_id=payment.user_id,
            payment_intent_id=event.payment_intent_id,
        )
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
                _backend_errors(self.create),
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
                _backend_errors(self.get),
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
                _backend_errors(self.confirm),
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
                _backend_errors(self.cancel),
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
                _backend_errors(self.payment_intent),
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
                _backend_errors(self.webhook),
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
