"""Reservation service over gRPC: holds through the inventory, confirmation only against a
completed payment for this reservation, cancel, expiry, idempotency, owner-only reads."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest
from sqlalchemy import select, update

from tests.services.conftest import (
    Booking,
    Clock,
    WebhookReceiver,
    booking,
    error_code,
    fast_settings,
)
from tests.unit.test_accounts_database import DatabaseFactory
from ticketgate import webhooks
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.payment.v1 import payment_pb2, payment_pb2_grpc
from ticketgate.proto.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from ticketgate.services import tables
from ticketgate.services.common import ServiceError
from ticketgate.services.reservation import ReservationService

HOLD = reservation_pb2.RESERVATION_STATUS_HOLD
CONFIRMED = reservation_pb2.RESERVATION_STATUS_CONFIRMED


async def seat_states(services: Booking, event_id: str) -> dict[str, tuple[str, str | None]]:
    seats = tables.seats.c
    async with services.running.inventory.database.read() as conn:
        rows = await conn.execute(
            select(seats.seat_id, seats.status, seats.hold_id).where(seats.event_id == event_id)
        )
        return {row.seat_id: (row.status, row.hold_id) for row in rows}


async def free_seats(services: Booking, event_id: str) -> int:
    states = await seat_states(services, event_id)
    return sum(1 for status, _ in states.values() if status == tables.SEAT_AVAILABLE)


async def get(
    services: Booking, reservation_id: str, user_id: str = "usr_alice"
) -> reservation_pb2.GetReservationResponse:
    return await services.reservations.GetReservation(
        reservation_pb2.GetReservationRequest(reservation_id=reservation_id, user_id=user_id),
        timeout=5,
    )


async def cancel(
    services: Booking, reservation_id: str, user_id: str = "usr_alice"
) -> reservation_pb2.CancelReservationResponse:
    return await services.reservations.CancelReservation(
        reservation_pb2.CancelReservationRequest(reservation_id=reservation_id, user_id=user_id),
        timeout=5,
    )


async def paid(
    services: Booking,
    reservation: reservation_pb2.CreateReservationResponse,
    scenario: payment_pb2.PaymentScenario.ValueType = payment_pb2.PAYMENT_SCENARIO_APPROVE,
    webhook_url: str = "",
) -> payment_pb2.GetPaymentStatusResponse:
    intent = await services.pay(reservation, scenario=scenario, webhook_url=webhook_url)
    assert not intent.HasField("error"), intent.error
    return await services.wait_for_payment(intent.payment_intent_id)


async def test_a_reservation_holds_seats_and_shows_only_to_its_owner(services: Booking) -> None:
    event_id = await services.seed()
    before = time.time()
    created = await services.reserve(event_id, quantity=2)
    assert not created.HasField("error")
    assert created.reservation_id.startswith("rsv_")
    assert created.status == HOLD
    assert [seat.seat_id for seat in created.reserved_seats] == ["A-1", "A-2"]
    assert created.total_amount == common_pb2.Money(amount=200_000, currency="KRW")
    assert before + 59 <= created.hold_expires_at.seconds <= time.time() + 61
    states = await seat_states(services, event_id)
    assert states["A-1"] == ("HELD", created.reservation_id)

    mine = await get(services, created.reservation_id)
    assert (mine.reservation_id, mine.event_id, mine.user_id) == (
        created.reservation_id,
        event_id,
        "usr_alice",
    )
    assert mine.status == HOLD
    assert mine.total_amount.amount == 200_000
    assert mine.hold_expires_at == created.hold_expires_at
    assert mine.order_id == ""

    theirs = await get(services, created.reservation_id, user_id="usr_mallory")
    unknown = await get(services, "rsv_000000000000000000000000")
    # Someone else's reservation and a missing one are indistinguishable.
    assert error_code(theirs) == error_code(unknown) == common_pb2.ERROR_CODE_NOT_FOUND
    assert theirs.error.message == unknown.error.message
    assert theirs.reservation_id == theirs.event_id == ""
    assert not theirs.reserved_seats


async def test_user_and_reservation_token_are_required(sqlite_services: Booking) -> None:
    services = sqlite_services
    event_id = await services.seed()
    no_user = await services.reserve(event_id, quantity=1, user_id="")
    no_token = await services.reservations.CreateReservation(
        reservation_pb2.CreateReservationRequest(event_id=event_id, quantity=1, user_id="usr_a"),
        timeout=5,
    )
    no_seats = await services.reserve(event_id)
    for response in (no_user, no_token, no_seats):
        assert error_code(response) == common_pb2.ERROR_CODE_INVALID_ARGUMENT
    assert await free_seats(services, event_id) == 100


async def test_create_is_idempotent_per_user_and_key(services: Booking) -> None:
    event_id = await services.seed()
    first = await services.reserve(event_id, quantity=2, key="k-1")
    again = await services.reserve(event_id, quantity=2, key="k-1")
    assert again.reservation_id == first.reservation_id
    assert again.reserved_seats == first.reserved_seats
    assert await free_seats(services, event_id) == 98

    other_user = await services.reserve(event_id, quantity=2, key="k-1", user_id="usr_bob")
    assert other_user.reservation_id != first.reservation_id
    changed = await services.reserve(event_id, quantity=3, key="k-1")
    assert error_code(changed) == common_pb2.ERROR_CODE_IDEMPOTENCY_CONFLICT
    assert changed.error.message == (
        "idempotency key was already used for a different reservation request"
    )

    # Concurrent duplicates: one reservation; the seats the losers held go back.
    duplicates = await asyncio.gather(
        *(services.reserve(event_id, quantity=2, key="k-2", user_id="usr_carol") for _ in range(8))
    )
    assert len({response.reservation_id for response in duplicates}) == 1
    assert all(not response.HasField("error") for response in duplicates)
    assert await free_seats(services, event_id) == 94


async def test_a_refusal_replays_under_the_same_key(services: Booking) -> None:
    event_id = await services.seed()
    await services.reserve(event_id, seat_ids=["B-1"], user_id="usr_bob")
    refused = await services.reserve(event_id, seat_ids=["B-1", "B-2"], key="k-1")
    assert error_code(refused) == common_pb2.ERROR_CODE_INVENTORY_CONFLICT
    assert refused.status == reservation_pb2.RESERVATION_STATUS_FAILED
    assert not refused.reserved_seats
    again = await services.reserve(event_id, seat_ids=["B-1", "B-2"], key="k-1")
    assert again.reservation_id == refused.reservation_id
    assert again.error == refused.error
    fresh = await services.reserve(event_id, seat_ids=["B-2"], key="k-2")
    assert not fresh.HasField("error")
    # Without a key a refusal is just an answer: nothing is stored.
    unkeyed = await services.reserve(event_id, seat_ids=["B-1"])
    assert error_code(unkeyed) == common_pb2.ERROR_CODE_INVENTORY_CONFLICT
    assert unkeyed.reservation_id == ""


async def test_one_reservation_token_buys_one_reservation(services: Booking) -> None:
    event_id = await services.seed()
    first = await services.reserve(event_id, quantity=1, token="rt_once", key="k-1")
    second = await services.reserve(event_id, quantity=1, token="rt_once", key="k-2")
    assert not first.HasField("error")
    assert error_code(second) == common_pb2.ERROR_CODE_ALREADY_EXISTS
    assert await free_seats(services, event_id) == 99  # the second hold was given back


async def test_confirm_without_a_completed_payment_is_refused(services: Booking) -> None:
    event_id = await services.seed()
    created = await services.reserve(event_id, quantity=1)
    for intent_id in ("", "pi_doesnotexist"):
        refused = await services.confirm(created.reservation_id, intent_id)
        assert error_code(refused) == common_pb2.ERROR_CODE_PAYMENT_NOT_APPROVED
        assert refused.order_id == ""
    pending = await services.pay(created, scenario=payment_pb2.PAYMENT_SCENARIO_DELAY)
    refused = await services.confirm(created.reservation_id, pending.payment_intent_id)
    assert error_code(refused) == common_pb2.ERROR_CODE_PAYMENT_NOT_APPROVED
    assert "PROCESSING" in refused.error.message
    assert (await get(services, created.reservation_id)).status == HOLD
    assert (await seat_states(services, event_id))["A-1"] == ("HELD", created.reservation_id)


async def test_a_payment_only_confirms_its_own_reservation_and_amount(
    sqlite_services: Booking,
) -> None:
    services = sqlite_services
    event_id = await services.seed()
    mine = await services.reserve(event_id, quantity=1)
    other = await services.reserve(event_id, quantity=1, user_id="usr_bob")
    payment = await paid(services, mine)
    assert payment.status == payment_pb2.PAYMENT_STATUS_COMPLETED

    wrong_reservation = await services.confirm(
        other.reservation_id, payment.payment_intent_id, user_id="usr_bob"
    )
    assert error_code(wrong_reservation) == common_pb2.ERROR_CODE_PAYMENT_NOT_APPROVED
    not_owner = await services.confirm(
        mine.reservation_id, payment.payment_intent_id, user_id="usr_bob"
    )
    assert error_code(not_owner) == common_pb2.ERROR_CODE_NOT_FOUND

    short = await services.payments.CreatePaymentIntent(
        payment_pb2.CreatePaymentIntentRequest(
            reservation_id=other.reservation_id,
            amount=common_pb2.Money(amount=other.total_amount.amount - 1, currency="KRW"),
            user_id="usr_bob",
        ),
        timeout=5,
    )
    await services.wait_for_payment(short.payment_intent_id)
    underpaid = await services.confirm(
        other.reservation_id, short.payment_intent_id, user_id="usr_bob"
    )
    assert error_code(underpaid) == common_pb2.ERROR_CODE_PAYMENT_NOT_APPROVED
    assert "amount" in underpaid.error.message
    assert (await get(services, other.reservation_id, "usr_bob")).status == HOLD


async def test_approved_payment_sends_a_signed_webhook_and_confirms_once(
    services: Booking, webhook: WebhookReceiver
) -> None:
    event_id = await services.seed()
    created = await services.reserve(event_id, seat_ids=["C-3", "C-4"])
    intent = await services.pay(created, webhook_url=webhook.url, key="pay-1")
    assert intent.next_action == "webhook"

    headers, body = await webhook.next()
    header = headers[webhooks.HEADER.lower()]
    assert webhooks.verify(b"test-webhook-secret-test-webhook-secret!", body, header, time.time())
    event = json.loads(body)
    assert event["status"] == "COMPLETED"
    assert event["payment_intent_id"] == intent.payment_intent_id
    assert event["reservation_id"] == created.reservation_id
    assert event["amount"] == created.total_amount.amount == 204_000
    assert event["currency"] == "KRW"

    # What the gateway's webhook handler does: confirm as the reservation's owner.
    confirmed = await services.confirm(
        event["reservation_id"], event["payment_intent_id"], user_id=event["user_id"]
    )
    assert not confirmed.HasField("error")
    assert confirmed.status == CONFIRMED
    assert confirmed.order_id.startswith("ord_")
    states = await seat_states(services, event_id)
    assert states["C-3"] == states["C-4"] == ("SOLD", created.reservation_id)

    # The user's own confirm, a replayed webhook: the same order, nothing sold twice.
    replays = await asyncio.gather(
        *(services.confirm(created.reservation_id, intent.payment_intent_id) for _ in range(5))
    )
    assert {replay.order_id for replay in replays} == {confirmed.order_id}
    shown = await get(services, created.reservation_id)
    assert (shown.status, shown.order_id, shown.payment_intent_id) == (
        CONFIRMED,
        confirmed.order_id,
        intent.payment_intent_id,
    )
    refused = await cancel(services, created.reservation_id)
    assert error_code(refused) == common_pb2.ERROR_CODE_FAILED_PRECONDITION
    assert (await seat_states(services, event_id))["C-3"][0] == "SOLD"


async def test_concurrent_confirms_sell_once_and_share_one_order(services: Booking) -> None:
    event_id = await services.seed()
    created = await services.reserve(event_id, quantity=3)
    payment = await paid(services, created)
    results = await asyncio.gather(
        *(services.confirm(created.reservation_id, payment.payment_intent_id) for _ in range(10))
    )
    assert [r.error.message for r in results if r.HasField("error")] == []
    assert len({r.order_id for r in results}) == 1
    states = await seat_states(services, event_id)
    assert sum(1 for status, _ in states.values() if status == "SOLD") == 3


async def test_failed_payment_is_refused_and_the_seats_return_on_expiry(
    databases: DatabaseFactory, webhook: WebhookReceiver
) -> None:
    clock = Clock()
    async with booking(databases, clock=clock) as services:
        event_id = await services.seed()
        created = await services.reserve(event_id, quantity=2)
        payment = await paid(
            services, created, payment_pb2.PAYMENT_SCENARIO_FAIL, webhook_url=webhook.url
        )
        assert payment.status == payment_pb2.PAYMENT_STATUS_FAILED
        _, body = await webhook.next()
        assert json.loads(body)["status"] == "FAILED"
        refused = await services.confirm(created.reservation_id, payment.payment_intent_id)
        assert error_code(refused) == common_pb2.ERROR_CODE_PAYMENT_NOT_APPROVED
        assert await free_seats(services, event_id) == 98

        clock.advance(61)
        assert (await get(services, created.reservation_id)).status == (
            reservation_pb2.RESERVATION_STATUS_EXPIRED
        )
        for _ in range(100):
            if await free_seats(services, event_id) == 100:
                break
            await asyncio.sleep(0.05)
        assert await free_seats(services, event_id) == 100
        late = await services.confirm(created.reservation_id, payment.payment_intent_id)
        assert error_code(late) == common_pb2.ERROR_CODE_RESERVATION_EXPIRED


async def test_an_expired_hold_cannot_be_confirmed_even_when_paid(
    sqlite_databases: DatabaseFactory,
) -> None:
    clock = Clock()
    settings = fast_settings(sweep_interval_sec=3600)  # the confirm itself must notice
    async with booking(sqlite_databases, settings, clock=clock) as services:
        event_id = await services.seed()
        created = await services.reserve(event_id, quantity=1)
        payment = await paid(services, created)
        clock.advance(61)
        refused = await services.confirm(created.reservation_id, payment.payment_intent_id)
        assert error_code(refused) == common_pb2.ERROR_CODE_RESERVATION_EXPIRED
        assert await free_seats(services, event_id) == 100
        stored = await get(services, created.reservation_id)
        assert stored.status == reservation_pb2.RESERVATION_STATUS_EXPIRED


async def test_cancel_gives_the_seats_back_once(services: Booking) -> None:
    event_id = await services.seed()
    created = await services.reserve(event_id, quantity=3)
    assert error_code(await cancel(services, created.reservation_id, "usr_bob")) == (
        common_pb2.ERROR_CODE_NOT_FOUND
    )
    first = await cancel(services, created.reservation_id)
    second = await cancel(services, created.reservation_id)
    assert first.status == second.status == reservation_pb2.RESERVATION_STATUS_CANCELLED
    assert not second.HasField("error")
    assert await free_seats(services, event_id) == 100
    payment = await paid(services, created)
    refused = await services.confirm(created.reservation_id, payment.payment_intent_id)
    assert error_code(refused) == common_pb2.ERROR_CODE_FAILED_PRECONDITION


async def test_a_confirmation_interrupted_before_the_commit_is_finished(
    sqlite_databases: DatabaseFactory,
) -> None:
    """A crash between claiming the row and committing the seats leaves CONFIRMING: the next
    confirm (a webhook retry) finishes it, and so does the sweeper."""
    async with booking(sqlite_databases, fast_settings(sweep_interval_sec=3600)) as services:
        event_id = await services.seed()
        reservations = tables.reservations.c
        stuck = []
        for _ in range(2):
            created = await services.reserve(event_id, quantity=1)
            payment = await paid(services, created)
            async with services.running.inventory.database.write() as conn:
                await conn.execute(
                    update(tables.reservations)
                    .where(reservations.id == created.reservation_id)
                    .values(
                        status=tables.RESERVATION_CONFIRMING,
                        order_id=f"ord_{created.reservation_id}",
                        payment_intent_id=payment.payment_intent_id,
                        updated_ms=0,
                    )
                )
            stuck.append((created, payment))
        assert (await get(services, stuck[0][0].reservation_id)).status == HOLD

        retried = await services.confirm(stuck[0][0].reservation_id, stuck[0][1].payment_intent_id)
        assert retried.status == CONFIRMED
        assert retried.order_id == f"ord_{stuck[0][0].reservation_id}"

        await services.running.reservations.sweep_once()
        swept = await get(services, stuck[1][0].reservation_id)
        assert (swept.status, swept.order_id) == (CONFIRMED, f"ord_{stuck[1][0].reservation_id}")
        states = await seat_states(services, event_id)
        assert sorted(status for status, _ in states.values() if status != "AVAILABLE") == [
            "SOLD",
            "SOLD",
        ]


async def test_errors_carry_the_callers_trace_id(sqlite_services: Booking) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await sqlite_services.reservations.GetReservation(
        reservation_pb2.GetReservationRequest(reservation_id="rsv_x", user_id="usr_a"),
        timeout=5,
        metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),),
    )
    assert error_code(response) == common_pb2.ERROR_CODE_NOT_FOUND
    assert response.error.trace_id == trace_id


async def test_an_unreachable_inventory_is_unavailable_not_a_hang(
    sqlite_databases: DatabaseFactory,
) -> None:
    database = sqlite_databases.open()
    dead = grpc.aio.insecure_channel("127.0.0.1:1")
    service = ReservationService(
        database,
        reservation_pb2_grpc.InventoryServiceStub(dead),
        payment_pb2_grpc.PaymentServiceStub(dead),
        upstream_timeout_sec=2,
    )
    await database.create_all()
    started = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        await service.create(
            event_id="evt_x", seat_ids=[], quantity=1, user_id="usr_a", reservation_token="rt"
        )
    assert caught.value.code == common_pb2.ERROR_CODE_UNAVAILABLE
    assert time.monotonic() - started < 2.5
    await service.close()
    await dead.close(None)
