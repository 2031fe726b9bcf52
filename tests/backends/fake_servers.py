"""Small but real gRPC servers for the gateway's fault tests.

They listen on real loopback ports through grpc.aio, keep just enough state to answer like a
reservation or payment service (reservations held per user, confirms deduplicated by
idempotency key), record every call with its metadata, and can be told per method to answer
slowly, to fail with a gRPC status (optionally only the first N times), or to return a given
`common.v1.Error`. The reference services are tested elsewhere; these exist so faults are
exact and cheap to produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.payment.v1 import payment_pb2, payment_pb2_grpc
from ticketgate.proto.reservation.v1 import reservation_pb2, reservation_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
PRICE = 120_000
CURRENCY = "KRW"


@dataclass
class Fault:
    """How one method misbehaves; the default is not at all."""

    delay_sec: float = 0.0
    status: grpc.StatusCode | None = None
    times: int | None = None  # the status only for the first `times` calls (None: always)
    error: common_pb2.Error | None = None  # returned inside the response


@dataclass
class Call:
    method: str
    request: Any
    metadata: dict[str, str]


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)

    def of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def enter(self, method: str, request: Any, context: Context) -> common_pb2.Error | None:
        """Record the call, then apply its fault: sleep, abort, or hand back an error."""
        metadata = {
            key: value if isinstance(value, str) else value.decode()
            for key, value in context.invocation_metadata() or ()
        }
        self.calls.append(Call(method, request, metadata))
        fault = self.faults.get(method)
        if fault is None:
            return None
        if fault.delay_sec:
            await asyncio.sleep(fault.delay_sec)
        if fault.status is not None and (fault.times is None or fault.times > 0):
            if fault.times is not None:
                fault.times -= 1
            await context.abort(fault.status, f"injected {fault.status.name}")
        return fault.error


def _stamp(seconds_from_now: float) -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    stamp.FromNanoseconds(stamp.ToNanoseconds() + int(seconds_from_now * 1e9))
    return stamp


def _number(seat_id: str) -> int:
    tail = seat_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


@dataclass
class _Held:
    reservation_id: str
    event_id: str
    user_id: str
    seats: list[common_pb2.Seat]
    status: reservation_pb2.ReservationStatus.ValueType
    hold_expires_at: Timestamp
    order_id: str = ""
    payment_intent_id: str = ""


class FakeReservationService(reservation_pb2_grpc.ReservationServiceServicer):
    """Holds whatever is asked (no inventory); confirms once per reservation."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.held: dict[str, _Held] = {}
        self.by_key: dict[str, str] = {}
        self.confirmations = 0  # confirms that changed a reservation's state
        self._ids = itertools.count(1)

    async def CreateReservation(
        self, request: reservation_pb2.CreateReservationRequest, context: Context
    ) -> reservation_pb2.CreateReservationResponse:
        error = await self.recorder.enter("CreateReservation", request, context)
        if error is not None:
            return reservation_pb2.CreateReservationResponse(error=error)
        known = self.by_key.get(request.idempotency_key) if request.idempotency_key else None
        if known is None:
            seat_ids = list(request.seat_ids) or [f"A-{n}" for n in range(1, request.quantity + 1)]
            seats = [
                common_pb2.Seat(
                    seat_id=seat_id,
                    section="A",
                    row="A",
                    number=_number(seat_id),
                    price=common_pb2.Money(amount=PRICE, currency=CURRENCY),
                )
                for seat_id in seat_ids
            ]
            known = f"rsv_{next(self._ids)}"
            self.held[known] = _Held(
                known,
                request.event_id,
                request.user_id,
                seats,
                reservation_pb2.RESERVATION_STATUS_HOLD,
                _stamp(60),
            )
            if request.idempotency_key:
                self.by_key[request.idempotency_key] = known
        held = self.held[known]
        return reservation_pb2.CreateReservationResponse(
            reservation_id=held.reservation_id,
            status=held.status,
            hold_expires_at=held.hold_expires_at,
            reserved_seats=held.seats,
            total_amount=common_pb2.Money(amount=PRICE * len(held.seats), currency=CURRENCY),
        )

    async def GetReservation(
        self, request: reservation_pb2.GetReservationRequest, context: Context
    ) -> reservation_pb2.GetReservationResponse:
        error = await self.recorder.enter("GetReservation", request, context)
        if error is not None:
            return reservation_pb2.GetReservationResponse(error=error)
        held = self.held.get(request.reservation_id)
        if held is None:
            return reservation_pb2.GetReservationResponse(
                error=common_pb2.Error(
                    code=common_pb2.ERROR_CODE_NOT_FOUND, message="no such reservation"
                )
            )
        # Like a careless backend, it answers anyone: the gateway must check the owner.
        return reservation_pb2.GetReservationResponse(
            reservation_id=held.reservation_id,
            event_id=held.event_id,
            user_id=held.user_id,
            status=held.status,
            reserved_seats=held.seats,
            total_amount=common_pb2.Money(amount=PRICE * len(held.seats), currency=CURRENCY),
            hold_expires_at=held.hold_expires_at,
            order_id=held.order_id,
            payment_intent_id=held.payment_intent_id,
        )

    async def ConfirmReservation(
        self, request: reservation_pb2.ConfirmReservationRequest, context: Context
    ) -> reservation_pb2.ConfirmReservationResponse:
        error = await self.recorder.enter("ConfirmReservation", request, context)
        if error is not None:
            return reservation_pb2.ConfirmReservationResponse(error=error)
        held = self.held.get(request.reservation_id)
        if held is None or held.user_id != request.user_id:
            return reservation_pb2.ConfirmReservationResponse(
                error=common_pb2.Error(
                    code=common_pb2.ERROR_CODE_NOT_FOUND, message="no such reservation"
                )
            )
        if held.status != reservation_pb2.RESERVATION_STATUS_CONFIRMED:
            held.status = reservation_pb2.RESERVATION_STATUS_CONFIRMED
            held.order_id = f"ord_{held.reservation_id}"
            held.payment_intent_id = request.payment_intent_id
            self.confirmations += 1
        return reservation_pb2.ConfirmReservationResponse(
            reservation_id=held.reservation_id, order_id=held.order_id, status=held.status
        )

    async def CancelReservation(
        self, request: reservation_pb2.CancelReservationRequest, context: Context
    ) -> reservation_pb2.CancelReservationResponse:
        error = await self.recorder.enter("CancelReservation", request, context)
        if error is not None:
            return reservation_pb2.CancelReservationResponse(error=error)
        held = self.held.get(request.reservation_id)
        if held is None or held.user_id != request.user_id:
            return reservation_pb2.CancelReservationResponse(
                error=common_pb2.Error(
                    code=common_pb2.ERROR_CODE_NOT_FOUND, message="no such reservation"
                )
            )
        held.status = reservation_pb2.RESERVATION_STATUS_CANCELLED
        return reservation_pb2.CancelReservationResponse(
            reservation_id=held.reservation_id, status=held.status
        )


@dataclass
class _Intent:
    payment_intent_id: str
    reservation_id: str
    user_id: str
    amount: common_pb2.Money
    status: payment_pb2.PaymentStatus.ValueType
    webhook_url: str


class FakePaymentService(payment_pb2_grpc.PaymentServiceServicer):
    """Intents settle at once (approve -> COMPLETED, anything else -> FAILED); the test sends
    the webhook itself, so it controls timing and replays."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.intents: dict[str, _Intent] = {}
        self._ids = itertools.count(1)

    async def CreatePaymentIntent(
        self, request: payment_pb2.CreatePaymentIntentRequest, context: Context
    ) -> payment_pb2.CreatePaymentIntentResponse:
        error = await self.recorder.enter("CreatePaymentIntent", request, context)
        if error is not None:
            return payment_pb2.CreatePaymentIntentResponse(error=error)
        intent_id = f"pay_{next(self._ids)}"
        approved = request.scenario == payment_pb2.PAYMENT_SCENARIO_APPROVE
        self.intents[intent_id] = _Intent(
            intent_id,
            request.reservation_id,
            request.user_id,
            request.amount,
            payment_pb2.PAYMENT_STATUS_COMPLETED if approved else payment_pb2.PAYMENT_STATUS_FAILED,
            request.webhook_url,
        )
        return payment_pb2.CreatePaymentIntentResponse(
            payment_intent_id=intent_id,
            status=payment_pb2.PAYMENT_STATUS_PENDING,
            next_action="webhook",
        )

    async def GetPaymentStatus(
        self, request: payment_pb2.GetPaymentStatusRequest, context: Context
    ) -> payment_pb2.GetPaymentStatusResponse:
        error = await self.recorder.enter("GetPaymentStatus", request, context)
        if error is not None:
            return payment_pb2.GetPaymentStatusResponse(error=error)
        intent = self.intents.get(request.payment_intent_id)
        if intent is None:
            return payment_pb2.GetPaymentStatusResponse(
                error=common_pb2.Error(code=common_pb2.ERROR_CODE_NOT_FOUND, message="no intent")
            )
        return payment_pb2.GetPaymentStatusResponse(
            payment_intent_id=intent.payment_intent_id,
            reservation_id=intent.reservation_id,
            status=intent.status,
            amount=intent.amount,
            user_id=intent.user_id,
        )

    async def ProcessPayment(
        self, request: payment_pb2.ProcessPaymentRequest, context: Context
    ) -> payment_pb2.ProcessPaymentResponse:
        await self.recorder.enter("ProcessPayment", request, context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not used by the gateway")
        raise AssertionError("unreachable")


@dataclass
class FakeBackends:
    address: str
    recorder: Recorder
    reservations: FakeReservationService
    payments: FakePaymentService

    def fail(self, method: str, fault: Fault) -> None:
        self.recorder.faults[method] = fault

    def heal(self) -> None:
        self.recorder.faults.clear()


@contextlib.asynccontextmanager
async def fake_backends(port: int = 0) -> AsyncIterator[FakeBackends]:
    """Both fake services on one server at 127.0.0.1:`port` (0: any free port)."""
    recorder = Recorder()
    reservations = FakeReservationService(recorder)
    payments = FakePaymentService(recorder)
    server = grpc.aio.server()
    reservation_pb2_grpc.add_ReservationServiceServicer_to_server(reservations, server)
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(payments, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound == 0:
        raise RuntimeError(f"could not bind 127.0.0.1:{port}")
    await server.start()
    try:
        yield FakeBackends(f"127.0.0.1:{bound}", recorder, reservations, payments)
    finally:
        await server.stop(grace=None)
