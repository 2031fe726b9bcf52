"""How every RPC of the three services answers what goes wrong (services/common.py's `rpc`):
a refusal inside the response, echoing the ids the request named where the contract says so;
storage trouble as gRPC status UNAVAILABLE, which the gateway's breaker counts."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import text

from tests.services.conftest import Booking, booking, error_code
from tests.unit.test_accounts_database import DatabaseFactory
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.payment.v1 import payment_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2


async def test_refusals_echo_the_ids_their_request_named(sqlite_services: Booking) -> None:
    services = sqlite_services
    status = await services.payments.GetPaymentStatus(
        payment_pb2.GetPaymentStatusRequest(payment_intent_id="pi_missing"), timeout=5
    )
    processed = await services.payments.ProcessPayment(
        payment_pb2.ProcessPaymentRequest(payment_intent_id="pi_missing"), timeout=5
    )
    held = await services.inventory.ReserveSeat(
        reservation_pb2.ReserveSeatRequest(event_id="evt bad", quantity=1, hold_id="hold_1"),
        timeout=5,
    )
    confirmed = await services.reservations.ConfirmReservation(
        reservation_pb2.ConfirmReservationRequest(reservation_id="rsv_missing", user_id="usr_a"),
        timeout=5,
    )
    cancelled = await services.reservations.CancelReservation(
        reservation_pb2.CancelReservationRequest(reservation_id="rsv_missing", user_id="usr_a"),
        timeout=5,
    )
    assert error_code(status) == error_code(processed) == common_pb2.ERROR_CODE_NOT_FOUND
    assert status.payment_intent_id == processed.payment_intent_id == "pi_missing"
    assert error_code(held) == common_pb2.ERROR_CODE_INVALID_ARGUMENT
    assert held.hold_id == "hold_1"
    assert error_code(confirmed) == error_code(cancelled) == common_pb2.ERROR_CODE_NOT_FOUND
    assert confirmed.reservation_id == cancelled.reservation_id == "rsv_missing"


async def test_storage_trouble_is_unavailable_not_a_refusal(
    sqlite_databases: DatabaseFactory,
) -> None:
    async with booking(sqlite_databases) as services:
        async with services.running.payments.database.write() as conn:
            await conn.execute(text("DROP TABLE payment_intents"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await services.payment_status("pi_missing")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == "storage unavailable"
