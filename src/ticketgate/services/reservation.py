"""Reservation service: holds seats through the inventory, confirms only paid reservations.

Each state change is a conditional UPDATE on the reservation row (`WHERE status = 'HOLD'`),
so confirm, cancel and the expiry sweeper can race freely: exactly one of them moves a HOLD
on. Confirmation first claims the row (HOLD → CONFIRMING, the order id fixed), then commits
the seats at the inventory, then marks it CONFIRMED. A crash or an inventory outage between
those steps leaves a CONFIRMING row that the next confirm call (a webhook retry, the user)
or the sweeper completes; CONFIRMING is reported as HOLD.

The seats' hold and the reservation expire at the same instant: the reservation stores the
expiry the inventory answered. An abandoned hold therefore frees its seats by itself; the
sweeper only makes the reservation say EXPIRED and gives the seats back early.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketgate.background import every
from ticketgate.database import Database
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.payment.v1 import payment_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from ticketgate.services import tables
from ticketgate.services.common import (
    AnyRow,
    Context,
    Replays,
    ServiceError,
    invalid,
    not_found,
    now_ms,
    outgoing_metadata,
    rpc,
    timestamp_from_ms,
    traceparent_of,
    write_transaction,
)
from ticketgate.services.inventory import Seat, request_key, validate_event, validate_selection

if TYPE_CHECKING:
    from grpc.aio import UnaryUnaryMultiCallable

    from ticketgate.proto.payment.v1.payment_pb2_grpc import PaymentServiceAsyncStub
    from ticketgate.proto.reservation.v1.reservation_pb2_grpc import InventoryServiceAsyncStub

log = logging.getLogger("ticketgate.services.reservation")

RESERVATION_PREFIX = "rsv_"
ORDER_PREFIX = "ord_"
MAX_TOKEN_LENGTH = 4096
MAX_KEY_LENGTH = 255
MAX_USER_ID_LENGTH = 128
STATUSES = {
    tables.RESERVATION_HOLD: reservation_pb2.RESERVATION_STATUS_HOLD,
    tables.RESERVATION_CONFIRMING: reservation_pb2.RESERVATION_STATUS_HOLD,
    tables.RESERVATION_CONFIRMED: reservation_pb2.RESERVATION_STATUS_CONFIRMED,
    tables.RESERVATION_CANCELLED: reservation_pb2.RESERVATION_STATUS_CANCELLED,
    tables.RESERVATION_EXPIRED: reservation_pb2.RESERVATION_STATUS_EXPIRED,
    tables.RESERVATION_FAILED: reservation_pb2.RESERVATION_STATUS_FAILED,
}
_SEATS_LOST = (
    common_pb2.ERROR_CODE_RESERVATION_EXPIRED,
    common_pb2.ERROR_CODE_FAILED_PRECONDITION,
    common_pb2.ERROR_CODE_NOT_FOUND,
)
Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    event_id: str
    user_id: str
    status: str  # as stored
    seats: tuple[Seat, ...]
    total_amount: int
    currency: str
    hold_expires_ms: int | None
    payment_intent_id: str
    order_id: str
    error: ServiceError | None = None

    def visible_status(self, now: int) -> str:
        """What callers see: a lapsed HOLD is EXPIRED before the sweeper gets to it."""
        if self.status == tables.RESERVATION_HOLD and self.expired(now):
            return tables.RESERVATION_EXPIRED
        return self.status

    def expired(self, now: int) -> bool:
        return self.hold_expires_ms is not None and now > self.hold_expires_ms


def _reservation(row: AnyRow) -> Reservation:
    seats = tuple(
        Seat(s["seat_id"], s["section"], s["row"], s["number"], s["price"], s["currency"])
        for s in json.loads(row.seats)
    )
    error = None
    if row.error_code is not None:
        error = ServiceError(row.error_code, row.error_message or "")
    return Reservation(
        id=row.id,
        event_id=row.event_id,
        user_id=row.user_id,
        status=row.status,
        seats=seats,
        total_amount=row.total_amount,
        currency=row.currency,
        hold_expires_ms=row.hold_expires_ms,
        payment_intent_id=row.payment_intent_id or "",
        order_id=row.order_id or "",
        error=error,
    )


def _seats_json(seats: Sequence[Seat]) -> str:
    return json.dumps(
        [
            {
                "seat_id": s.seat_id,
                "section": s.section,
                "row": s.row,
                "number": s.number,
                "price": s.price,
                "currency": s.currency,
            }
            for s in seats
        ],
        separators=(",", ":"),
    )


def _has_error(error: common_pb2.Error) -> bool:
    return error.code != common_pb2.ERROR_CODE_UNSPECIFIED


class ReservationService:
    """Reservations in SQL; seats through the inventory's gRPC API, payments through the
    payment service's. `start()` runs the expiry sweeper."""

    def __init__(
        self,
        database: Database,
        inventory: InventoryServiceAsyncStub,
        payment: PaymentServiceAsyncStub,
        *,
        hold_ttl_sec: int = 60,
        upstream_timeout_sec: float = 5.0,
        sweep_interval_sec: float = 1.0,
        sweep_batch: int = 500,
        confirm_grace_sec: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.inventory = inventory
        self.payment = payment
        self.hold_ttl_sec = hold_ttl_sec
        self.upstream_timeout_sec = upstream_timeout_sec
        self.sweep_interval_sec = sweep_interval_sec
        self.sweep_batch = sweep_batch
        self.confirm_grace_sec = confirm_grace_sec
        self.clock = clock
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._replays = Replays(database, tables.reservations, "reservation request", _reservation)
        database.register(tables.reservation_metadata)

    async def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(
            every(self.sweep_interval_sec, self._sweep_and_tell, log, "reservation sweep")
        )

    async def close(self) -> None:
        tasks = [*self._background, *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sweeper = None

    # --- upstream calls -------------------------------------------------------------------

    async def _call(
        self, method: UnaryUnaryMultiCallable[Req, Resp], request: Req, traceparent: str
    ) -> Resp:
        try:
            return await method(
                request,
                timeout=self.upstream_timeout_sec,
                metadata=outgoing_metadata(traceparent),
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            log.warning("upstream call failed: %s %s", code, exc.details())
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServiceError(
                    common_pb2.ERROR_CODE_UPSTREAM_TIMEOUT, "a backend did not answer in time"
                ) from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServiceError(
                    common_pb2.ERROR_CODE_UNAVAILABLE, "a backend is unavailable"
                ) from None
            raise ServiceError(
                common_pb2.ERROR_CODE_UPSTREAM_ERROR, "a backend call failed"
            ) from None

    async def _release(self, event_id: str, hold_id: str, traceparent: str = "") -> None:
        """Give a hold's seats back; failures only cost the seats until the hold expires."""
        try:
            response = await self._call(
                self.inventory.ReleaseHold,
                reservation_pb2.ReleaseHoldRequest(event_id=event_id, hold_id=hold_id),
                traceparent,
            )
        except ServiceError as exc:
            log.warning("could not release hold %s (%s); it expires on its own", hold_id, exc)
            return
        if _has_error(response.error):
            log.warning("release of hold %s refused: %s", hold_id, response.error.message)

    def _release_later(self, event_id: str, hold_id: str, traceparent: str = "") -> None:
        task = asyncio.get_running_loop().create_task(self._release(event_id, hold_id, traceparent))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- reads ----------------------------------------------------------------------------

    async def _by_id(self, reservation_id: str) -> Reservation | None:
        async with self.database.read() as conn:
            row = (
                await conn.execute(
                    select(tables.reservations).where(tables.reservations.c.id == reservation_id)
                )
            ).first()
        return None if row is None else _reservation(row)

    async def get(self, reservation_id: str, user_id: str) -> Reservation:
        """The reservation, to its owner only: anyone else learns nothing, not even that it
        exists."""
        if not user_id or not reservation_id or len(reservation_id) > 40:
            raise not_found("reservation not found")
        reservation = await self._by_id(reservation_id)
        if reservation is None or reservation.user_id != user_id:
            raise not_found("reservation not found")
        return reservation

    # --- create ---------------------------------------------------------------------------

    async def create(
        self,
        *,
        event_id: str,
        seat_ids: Sequence[str],
        quantity: int,
        user_id: str,
        reservation_token: str,
        idempotency_key: str = "",
        traceparent: str = "",
    ) -> Reservation:
        """Hold seats for `hold_ttl_sec`. A refusal by the inventory comes back as a FAILED
        reservation carrying the error (and replays as such under the same key).

        Idempotent by (user_id, idempotency_key): the first call's reservation is answered
        again; the same key with a different request is an IDEMPOTENCY_CONFLICT.
        """
        if not user_id or len(user_id) > MAX_USER_ID_LENGTH:
            raise invalid("user_id is required")
        if not reservation_token or len(reservation_token) > MAX_TOKEN_LENGTH:
            raise invalid("reservation_token is required")
        if len(idempotency_key) > MAX_KEY_LENGTH:
            raise invalid(f"idempotency_key is at most {MAX_KEY_LENGTH} characters")
        validate_event(event_id)
        named, count = validate_selection(seat_ids, quantity)
        request_hash = hashlib.sha256(
            f"{event_id}\n{request_key(named, count)}".encode()
        ).hexdigest()
        existing = await self._replays.find(user_id, idempotency_key, request_hash)
        if existing is not None:
            return existing

        reservation_id = RESERVATION_PREFIX + secrets.token_hex(12)
        try:
            held = await self._call(
                self.inventory.ReserveSeat,
                reservation_pb2.ReserveSeatRequest(
                    event_id=event_id,
                    seat_ids=named,
                    quantity=count,
                    hold_id=reservation_id,
                    hold_ttl_seconds=self.hold_ttl_sec,
                    user_id=user_id,
                ),
                traceparent,
            )
        except ServiceError:
            # The hold may exist (a lost answer): give it back rather than wait for expiry.
            self._release_later(event_id, reservation_id, traceparent)
            raise

        now = now_ms(self.clock)
        values: dict[str, Any] = {
            "id": reservation_id,
            "event_id": event_id,
            "user_id": user_id,
            "idempotency_key": idempotency_key or None,
            "request_hash": request_hash,
            "reservation_token": reservation_token,
            "created_ms": now,
            "updated_ms": now,
        }
        if _has_error(held.error):
            failed = ServiceError(held.error.code, held.error.message)
            if not idempotency_key:
                raise failed  # nothing to replay: store nothing
            values.update(
                status=tables.RESERVATION_FAILED,
                seats="[]",
                total_amount=0,
                currency="KRW",
                error_code=held.error.code,
                error_message=held.error.message,
            )
        else:
            seats = [
                Seat(s.seat_id, s.section, s.row, s.number, s.price.amount, s.price.currency)
                for s in held.seats
            ]
            values.update(
                status=tables.RESERVATION_HOLD,
                seats=_seats_json(seats),
                total_amount=sum(seat.price for seat in seats),
                currency=seats[0].currency if seats else "KRW",
                hold_expires_ms=held.expires_at.ToMilliseconds(),
            )

        async def insert(conn: AsyncConnection) -> AnyRow | None:
            statement = (
                self.database.insert(tables.reservations)
                .values(**values)
                .on_conflict_do_nothing()
                .returning(*tables.reservations.c)
            )
            return (await conn.execute(statement)).first()

        try:
            row = await write_transaction(self.database, insert)
        except BaseException:
            if values["status"] == tables.RESERVATION_HOLD:
                self._release_later(event_id, reservation_id, traceparent)
            raise
        if row is not None:
            return _reservation(row)
        # Lost to a concurrent call with the same key, or the token was used before.
        if values["status"] == tables.RESERVATION_HOLD:
            await self._release(event_id, reservation_id, traceparent)
        existing = await self._replays.find(user_id, idempotency_key, request_hash)
        if existing is not None:
            return existing
        raise ServiceError(
            common_pb2.ERROR_CODE_ALREADY_EXISTS, "this reservation token was already used"
        )

    # --- state changes --------------------------------------------------------------------

    async def _transition(
        self, reservation_id: str, source: str, target: str, *, now: int, **values: Any
    ) -> bool:
        """Move the row from `source` to `target` if it still is in `source`."""
        columns = tables.reservations.c
        conditions = [columns.id == reservation_id, columns.status == source]
        if source == tables.RESERVATION_HOLD and target == tables.RESERVATION_EXPIRED:
            conditions.append(columns.hold_expires_ms < now)
        elif source == tables.RESERVATION_HOLD:
            conditions.append(columns.hold_expires_ms >= now)

        async def change(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(tables.reservations)
                .where(*conditions)
                .values(status=target, updated_ms=now, **values)
            )
            return bool(result.rowcount == 1)

        return await write_transaction(self.database, change)

    async def _expire(self, reservation: Reservation, traceparent: str = "") -> None:
        now = now_ms(self.clock)
        if await self._transition(
            reservation.id, tables.RESERVATION_HOLD, tables.RESERVATION_EXPIRED, now=now
        ):
            await self._release(reservation.event_id, reservation.id, traceparent)

    async def confirm(
        self,
        *,
        reservation_id: str,
        user_id: str,
        payment_intent_id: str,
        traceparent: str = "",
    ) -> Reservation:
        """Confirm a held reservation whose payment intent is COMPLETED for this reservation,
        this user and this amount. Idempotent by state, so no key is needed: a confirmed
        reservation answers its order again (the payment webhook and the user may both call).
        """
        for _ in range(3):
            reservation = await self.get(reservation_id, user_id)
            outcome = await self._confirm_step(reservation, payment_intent_id, traceparent)
            if outcome is not None:
                return outcome
        raise ServiceError(
            common_pb2.ERROR_CODE_CONCURRENT_MODIFICATION, "reservation keeps changing; retry"
        )

    async def _confirm_step(
        self, reservation: Reservation, payment_intent_id: str, traceparent: str
    ) -> Reservation | None:
        """One attempt; None when the row changed under us and the caller should look again."""
        now = now_ms(self.clock)
        status = reservation.status
        if status == tables.RESERVATION_CONFIRMED:
            return reservation
        if status == tables.RESERVATION_CONFIRMING:
            return await self._finish(reservation, traceparent)
        if status == tables.RESERVATION_EXPIRED or reservation.expired(now):
            if status == tables.RESERVATION_HOLD:
                await self._expire(reservation, traceparent)
            raise ServiceError(common_pb2.ERROR_CODE_RESERVATION_EXPIRED, "the hold has expired")
        if status == tables.RESERVATION_CANCELLED:
            raise ServiceError(
                common_pb2.ERROR_CODE_FAILED_PRECONDITION, "the reservation was cancelled"
            )
        if status != tables.RESERVATION_HOLD:
            raise ServiceError(
                common_pb2.ERROR_CODE_FAILED_PRECONDITION, "the reservation holds no seats"
            )
        await self._check_payment(reservation, payment_intent_id, traceparent)
        order_id = ORDER_PREFIX + secrets.token_hex(12)
        claimed = await self._transition(
            reservation.id,
            tables.RESERVATION_HOLD,
            tables.RESERVATION_CONFIRMING,
            now=now_ms(self.clock),
            order_id=order_id,
            payment_intent_id=payment_intent_id,
        )
        if not claimed:
            return None
        confirming = await self._by_id(reservation.id)
        assert confirming is not None
        return await self._finish(confirming, traceparent)

    async def _check_payment(
        self, reservation: Reservation, payment_intent_id: str, traceparent: str
    ) -> None:
        def refuse(message: str) -> ServiceError:
            return ServiceError(common_pb2.ERROR_CODE_PAYMENT_NOT_APPROVED, message)

        if not payment_intent_id:
            raise refuse("no payment intent was given")
        payment = await self._call(
            self.payment.GetPaymentStatus,
            payment_pb2.GetPaymentStatusRequest(payment_intent_id=payment_intent_id),
            traceparent,
        )
        if _has_error(payment.error):
            if payment.error.code == common_pb2.ERROR_CODE_NOT_FOUND:
                raise refuse("payment intent not found")
            raise ServiceError(payment.error.code, payment.error.message)
        if payment.reservation_id != reservation.id or payment.user_id != reservation.user_id:
            raise refuse("payment intent belongs to another reservation")
        if (
            payment.amount.amount != reservation.total_amount
            or payment.amount.currency != reservation.currency
        ):
            raise refuse("payment amount does not match the reservation total")
        if payment.status != payment_pb2.PAYMENT_STATUS_COMPLETED:
            raise refuse(f"payment is {payment_pb2.PaymentStatus.Name(payment.status)}")

    async def _finish(self, reservation: Reservation, traceparent: str) -> Reservation:
        """CONFIRMING → commit the seats → CONFIRMED (or EXPIRED if the seats were lost)."""
        committed = await self._call(
            self.inventory.CommitReservation,
            reservation_pb2.CommitReservationRequest(
                event_id=reservation.event_id, hold_id=reservation.id
            ),
            traceparent,
        )
        # Expired and taken, released, or unknown: the seats are not ours to sell any more.
        lost = committed.error.code in _SEATS_LOST or (
            not _has_error(committed.error) and committed.committed_count != len(reservation.seats)
        )
        now = now_ms(self.clock)
        if lost:
            if await self._transition(
                reservation.id,
                tables.RESERVATION_CONFIRMING,
                tables.RESERVATION_EXPIRED,
                now=now,
                order_id=None,
            ):
                log.warning(
                    "reservation %s lost its seats while confirming; payment %s needs a refund",
                    reservation.id,
                    reservation.payment_intent_id,
                )
                await self._release(reservation.event_id, reservation.id, traceparent)
            raise ServiceError(common_pb2.ERROR_CODE_RESERVATION_EXPIRED, "the hold has expired")
        if _has_error(committed.error):
            raise ServiceError(committed.error.code, committed.error.message)
        await self._transition(
            reservation.id, tables.RESERVATION_CONFIRMING, tables.RESERVATION_CONFIRMED, now=now
        )
        confirmed = await self._by_id(reservation.id)
        assert confirmed is not None
        if confirmed.status != tables.RESERVATION_CONFIRMED:
            raise ServiceError(
                common_pb2.ERROR_CODE_CONCURRENT_MODIFICATION, "reservation changed; retry"
            )
        return confirmed

    async def cancel(
        self, *, reservation_id: str, user_id: str, traceparent: str = ""
    ) -> Reservation:
        """Cancel a held reservation and give its seats back; idempotent."""
        for _ in range(3):
            reservation = await self.get(reservation_id, user_id)
            status = reservation.status
            if status == tables.RESERVATION_CANCELLED:
                return reservation
            if status in (tables.RESERVATION_CONFIRMED, tables.RESERVATION_CONFIRMING):
                raise ServiceError(
                    common_pb2.ERROR_CODE_FAILED_PRECONDITION,
                    "a confirmed reservation cannot be cancelled",
                )
            if status == tables.RESERVATION_EXPIRED or reservation.expired(now_ms(self.clock)):
                if status == tables.RESERVATION_HOLD:
                    await self._expire(reservation, traceparent)
                raise ServiceError(
                    common_pb2.ERROR_CODE_RESERVATION_EXPIRED, "the hold has expired"
                )
            if status != tables.RESERVATION_HOLD:
                raise ServiceError(
                    common_pb2.ERROR_CODE_FAILED_PRECONDITION, "the reservation holds no seats"
                )
            if await self._transition(
                reservation.id,
                tables.RESERVATION_HOLD,
                tables.RESERVATION_CANCELLED,
                now=now_ms(self.clock),
            ):
                await self._release(reservation.event_id, reservation.id, traceparent)
                cancelled = await self._by_id(reservation.id)
                assert cancelled is not None
                return cancelled
        raise ServiceError(
            common_pb2.ERROR_CODE_CONCURRENT_MODIFICATION, "reservation keeps changing; retry"
        )

    # --- the sweeper ----------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """Expire lapsed holds (giving their seats back) and finish stuck confirmations;
        returns how many reservations expired. Safe to run in several replicas at once."""
        now = now_ms(self.clock)
        columns = tables.reservations.c

        async def expire(conn: AsyncConnection) -> Sequence[AnyRow]:
            lapsed = (
                select(columns.id)
                .where(columns.status == tables.RESERVATION_HOLD, columns.hold_expires_ms < now)
                .order_by(columns.hold_expires_ms)
                .limit(self.sweep_batch)
            )
            ids = [row.id for row in (await conn.execute(lapsed)).all()]
            if not ids:
                return []
            result = await conn.execute(
                update(tables.reservations)
                .where(
                    columns.id.in_(ids),
                    columns.status == tables.RESERVATION_HOLD,
                    columns.hold_expires_ms < now,
                )
                .values(status=tables.RESERVATION_EXPIRED, updated_ms=now)
                .returning(columns.id, columns.event_id)
            )
            return result.all()

        expired = await write_transaction(self.database, expire)
        releases = asyncio.Semaphore(16)

        async def release(row: AnyRow) -> None:
            async with releases:
                await self._release(row.event_id, row.id)

        await asyncio.gather(*(release(row) for row in expired))

        stale = now - int(self.confirm_grace_sec * 1000)
        async with self.database.read() as conn:
            stuck = (
                await conn.execute(
                    select(tables.reservations)
                    .where(
                        columns.status == tables.RESERVATION_CONFIRMING,
                        columns.updated_ms < stale,
                    )
                    .limit(self.sweep_batch)
                )
            ).all()
        for row in stuck:
            try:
                await self._finish(_reservation(row), "")
            except ServiceError as exc:
                log.warning("could not finish confirming %s: %s", row.id, exc.message)
        return len(expired)

    async def _sweep_and_tell(self) -> None:
        count = await self.sweep_once()
        if count:
            log.info("expired %d reservations", count)


def _money(amount: int, currency: str) -> common_pb2.Money:
    return common_pb2.Money(amount=amount, currency=currency)


class ReservationServicer(reservation_pb2_grpc.ReservationServiceServicer):
    def __init__(self, service: ReservationService) -> None:
        self.service = service

    def _status(self, reservation: Reservation) -> reservation_pb2.ReservationStatus.ValueType:
        visible = reservation.visible_status(now_ms(self.service.clock))
        return STATUSES.get(visible, reservation_pb2.RESERVATION_STATUS_UNSPECIFIED)

    @rpc(reservation_pb2.CreateReservationResponse)
    async def CreateReservation(
        self, request: reservation_pb2.CreateReservationRequest, context: Context
    ) -> reservation_pb2.CreateReservationResponse:
        reservation = await self.service.create(
            event_id=request.event_id,
            seat_ids=list(request.seat_ids),
            quantity=request.quantity,
            user_id=request.user_id,
            reservation_token=request.reservation_token,
            idempotency_key=request.idempotency_key,
            traceparent=traceparent_of(context),
        )
        response = reservation_pb2.CreateReservationResponse(
            reservation_id=reservation.id,
            status=self._status(reservation),
            reserved_seats=[seat.to_proto() for seat in reservation.seats],
            total_amount=_money(reservation.total_amount, reservation.currency),
        )
        if reservation.hold_expires_ms is not None:
            response.hold_expires_at.CopyFrom(timestamp_from_ms(reservation.hold_expires_ms))
        if reservation.error is not None:
            response.error.CopyFrom(reservation.error.to_proto())
        return response

    @rpc(reservation_pb2.GetReservationResponse)
    async def GetReservation(
        self, request: reservation_pb2.GetReservationRequest, context: Context
    ) -> reservation_pb2.GetReservationResponse:
        reservation = await self.service.get(request.reservation_id, request.user_id)
        response = reservation_pb2.GetReservationResponse(
            reservation_id=reservation.id,
            event_id=reservation.event_id,
            user_id=reservation.user_id,
            status=self._status(reservation),
            reserved_seats=[seat.to_proto() for seat in reservation.seats],
            total_amount=_money(reservation.total_amount, reservation.currency),
            order_id=reservation.order_id
            if reservation.status == tables.RESERVATION_CONFIRMED
            else "",
            payment_intent_id=reservation.payment_intent_id,
        )
        # A FAILED reservation is still found: its refusal is not this call's error.
        if reservation.hold_expires_ms is not None:
            response.hold_expires_at.CopyFrom(timestamp_from_ms(reservation.hold_expires_ms))
        return response

    @rpc(reservation_pb2.ConfirmReservationResponse, "reservation_id")
    async def ConfirmReservation(
        self, request: reservation_pb2.ConfirmReservationRequest, context: Context
    ) -> reservation_pb2.ConfirmReservationResponse:
        reservation = await self.service.confirm(
            reservation_id=request.reservation_id,
            user_id=request.user_id,
            payment_intent_id=request.payment_intent_id,
            traceparent=traceparent_of(context),
        )
        return reservation_pb2.ConfirmReservationResponse(
            reservation_id=reservation.id,
            order_id=reservation.order_id,
            status=self._status(reservation),
        )

    @rpc(reservation_pb2.CancelReservationResponse, "reservation_id")
    async def CancelReservation(
        self, request: reservation_pb2.CancelReservationRequest, context: Context
    ) -> reservation_pb2.CancelReservationResponse:
        reservation = await self.service.cancel(
            reservation_id=request.reservation_id,
            user_id=request.user_id,
            traceparent=traceparent_of(context),
        )
        return reservation_pb2.CancelReservationResponse(
            reservation_id=reservation.id, status=self._status(reservation)
        )
