"""BookingService's rules without HTTP: the service over the real gRPC clients, against real
gRPC servers that misbehave on demand (tests/backends/fake_servers), and a real waiting room.

The HTTP tests (tests/integration/test_booking_http.py) check what a client sees; these check
the decisions themselves: which refusal, before or after which backend call, and what each
refusal leaves of the single-use reservation token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.backends.booking_gateway import OPEN_DOOR, backend_settings
from tests.backends.fake_servers import PRICE, FakeBackends, Fault, fake_backends
from tests.conftest import make_redis_store
from tests.integration.conftest import eventually
from tests.redis_server import RedisServer
from ticketgate.backends.booking_clients import BookingClients
from ticketgate.booking.errors import (
    BackendRefusal,
    BookingError,
    HoldExpired,
    InvalidBooking,
    MissingEventId,
    MissingToken,
    NotPayable,
    PaymentNotApproved,
    ReservationNotFound,
    TokenBusy,
    TokenForbidden,
    TokenGone,
)
from ticketgate.booking.model import PaymentOutcome
from ticketgate.booking.ports import CallContext
from ticketgate.booking.service import BookingService
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.waitingroom.model import ClaimOutcome, QueueError, QueueUnavailable
from ticketgate.waitingroom.service import WaitingRoom

TRACE = "0af7651916cd43dd8448eb211c80319c"
READ = CallContext(trace_id=TRACE, request_id="req-1")


def keyed(key: str = "k-1") -> CallContext:
    return CallContext(trace_id=TRACE, request_id="req-1", idempotency_key=key)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBackends]:
    async with fake_backends() as backends:
        yield backends


@pytest.fixture
async def room() -> AsyncIterator[WaitingRoom]:
    store = MemoryQueueStore(OPEN_DOOR)
    yield WaitingRoom(store, OPEN_DOOR)
    await store.close()


@pytest.fixture
async def clients(fake: FakeBackends) -> AsyncIterator[BookingClients]:
    wired = BookingClients(backend_settings(fake.address))
    yield wired
    await wired.close()


@pytest.fixture
def booking(clients: BookingClients, room: WaitingRoom) -> BookingService:
    return clients.booking_service(room)


async def admitted(room: WaitingRoom, event_id: str, user_id: str) -> str:
    """join + enter: the single-use reservation token."""
    joined = await room.join(event_id, user_id)
    return (await room.enter(joined.waiting_token, user_id)).reservation_token


async def reserve(
    booking: BookingService, event_id: str, user_id: str, token: str, key: str = "k-1"
) -> reservation_pb2.CreateReservationResponse:
    return await booking.reserve(
        keyed(key), user_id, event_id=event_id, seat_ids=["A-1", "A-2"], quantity=0, token=token
    )


async def still_claimable(room: WaitingRoom, token: str, user_id: str, event_id: str) -> bool:
    """True when the token was neither used nor left leased (the claim is given back)."""
    claim = await room.claim_reservation(token, user_id, event_id, 1_000)
    await room.settle_reservation(claim, used=False)
    return claim.outcome is ClaimOutcome.CLAIMED


async def called(fake: FakeBackends, method: str) -> None:
    """Wait until the backend has received `method`."""

    async def arrived() -> bool:
        return bool(fake.recorder.of(method))

    await eventually(arrived, step=0.01)


async def trip(call: Any, failures: int = 3) -> None:
    """Fail `failures` calls so the backend's breaker opens (backend_settings: 3 failures)."""
    for _ in range(failures):
        with pytest.raises(BackendRefusal):
            await call()


# --------------------------------------------------------------------------- the request


@pytest.mark.parametrize(
    ("event", "seats", "quantity", "with_token", "refusal", "message"),
    [
        ("", ["A-1"], 0, True, MissingEventId, "event_id is required"),
        ("bad id!", ["A-1"], 0, True, QueueError, "event_id must be"),
        (None, ["A-1"], 0, False, MissingToken, "reservation_token"),
        (None, ["A-1", "A-1"], 0, True, InvalidBooking, "must not repeat"),
        (None, ["A-1"], 2, True, InvalidBooking, "quantity must equal"),
        (None, [], 0, True, InvalidBooking, "at least 1"),
    ],
)
async def test_a_request_that_cannot_be_booked_is_refused_before_the_token_or_a_backend(
    booking: BookingService,
    room: WaitingRoom,
    fake: FakeBackends,
    event_id: str,
    event: str | None,
    seats: list[str],
    quantity: int,
    with_token: bool,
    refusal: type[Exception],
    message: str,
) -> None:
    token = await admitted(room, event_id, "u1")
    with pytest.raises(refusal, match=message):
        await booking.reserve(
            keyed(),
            "u1",
            event_id=event_id if event is None else event,
            seat_ids=seats,
            quantity=quantity,
            token=token if with_token else "",
        )
    assert fake.recorder.calls == []
    assert await still_claimable(room, token, "u1", event_id)


async def test_quantity_zero_means_as_many_as_the_seats_named(
    booking: BookingService, room: WaitingRoom, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(room, event_id, "u1")
    await reserve(booking, event_id, "u1", token)
    (create,) = fake.recorder.of("CreateReservation")
    assert (list(create.request.seat_ids), create.request.quantity) == (["A-1", "A-2"], 2)


# --------------------------------------------------------------------------- the token


async def test_a_hold_uses_the_token_up(
    booking: BookingService, room: WaitingRoom, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(room, event_id, "u1")
    created = await reserve(booking, event_id, "u1", token)
    assert created.status == reservation_pb2.RESERVATION_STATUS_HOLD
    (create,) = fake.recorder.of("CreateReservation")
    assert (create.request.user_id, create.request.reservation_token) == ("u1", token)
    assert create.metadata["idempotency-key"] == "k-1"
    with pytest.raises(TokenGone, match="expired or was already used"):
        await reserve(booking, event_id, "u1", token, key="k-2")
    assert len(fake.recorder.of("CreateReservation")) == 1


@pytest.mark.parametrize(
    ("holder", "event_suffix", "message"),
    [("u2", "", "another user"), ("u1", "_other", "another event")],
)
async def test_a_token_that_is_not_the_callers_is_forbidden_and_stays_the_owners(
    booking: BookingService,
    room: WaitingRoom,
    fake: FakeBackends,
    event_id: str,
    holder: str,
    event_suffix: str,
    message: str,
) -> None:
    token = await admitted(room, event_id, "u1")
    with pytest.raises(TokenForbidden, match=message):
        await reserve(booking, event_id + event_suffix, holder, token)
    assert fake.recorder.calls == []
    await reserve(booking, event_id, "u1", token)


async def test_a_forged_or_waiting_token_is_forbidden(
    booking: BookingService, room: WaitingRoom, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(room, event_id, "u1")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    waiting = (await room.join(event_id, "u9")).waiting_token
    for wrong, who in ((forged, "u1"), (waiting, "u9")):
        with pytest.raises(TokenForbidden, match="not valid"):
            await reserve(booking, event_id, who, wrong)
    assert fake.recorder.calls == []


async def test_a_second_attempt_while_the_first_runs_is_busy_with_retry_after(
    booking: BookingService, room: WaitingRoom, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(room, event_id, "u1")
    fake.fail("CreateReservation", Fault(delay_sec=0.3))
    first = asyncio.create_task(reserve(booking, event_id, "u1", token))
    await called(fake, "CreateReservation")
    with pytest.raises(TokenBusy, match="in progress") as busy:
        await reserve(booking, event_id, "u1", token, key="k-2")
    assert busy.value.retry_after_sec == 1.0
    assert (await first).reservation_id
    assert len(fake.recorder.of("CreateReservation")) == 1


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (
            Fault(error=common_pb2.Error(code=common_pb2.ERROR_CODE_INVENTORY_CONFLICT)),
            "SEAT_UNAVAILABLE",
        ),
        (Fault(status=grpc.StatusCode.UNAVAILABLE), "UPSTREAM_UNAVAILABLE"),
        (Fault(status=grpc.StatusCode.INTERNAL), "INTERNAL_ERROR"),
    ],
)
async def test_a_refused_or_failed_hold_leaves_the_token_usable(
    booking: BookingService,
    room: WaitingRoom,
    fake: FakeBackends,
    event_id: str,
    fault: Fault,
    code: str,
) -> None:
    token = await admitted(room, event_id, "u1")
    fake.fail("CreateReservation", fault)
    with pytest.raises(BackendRefusal) as refused:
        await reserve(booking, event_id, "u1", token)
    assert refused.value.code == code
    fake.heal()
    assert (await reserve(booking, event_id, "u1", token, key="k-2")).reservation_id
    with pytest.raises(TokenGone):
        await reserve(booking, event_id, "u1", token, key="k-3")


async def test_a_backend_known_down_refuses_before_the_token_is_claimed(
    booking: BookingService,
    room: WaitingRoom,
    clients: BookingClients,
    fake: FakeBackends,
    event_id: str,
) -> None:
    """While the breaker is open the answer is 503 at once, not "your other attempt is
    running": the token is not even looked at (here it is leased by a slow first attempt)."""
    token = await admitted(room, event_id, "u1")
    fake.fail("CreateReservation", Fault(delay_sec=0.5))
    first = asyncio.create_task(reserve(booking, event_id, "u1", token))
    await called(fake, "CreateReservation")
    fake.fail("GetReservation", Fault(status=grpc.StatusCode.UNAVAILABLE))
    await trip(lambda: clients.reservations.get(READ, reservation_id="r", user_id="u1"))
    with pytest.raises(BackendRefusal) as refused:
        await reserve(booking, event_id, "u1", token, key="k-2")
    assert refused.value.code == "UPSTREAM_UNAVAILABLE"
    assert (await first).reservation_id


async def test_a_hold_survives_a_store_that_cannot_settle_its_token(
    own_redis: RedisServer,
    fake: FakeBackends,
    clients: BookingClients,
    event_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis hangs between the claim and the settle: the seats are held all the same, and
    the token buys no second hold (still leased, or used up by the settle Redis ran late)."""
    store = make_redis_store(own_redis.address, OPEN_DOOR)
    await store.start()
    room = WaitingRoom(store, OPEN_DOOR)
    booking = clients.booking_service(room)
    caplog.set_level(logging.WARNING, logger="ticketgate.booking")
    try:
        token = await admitted(room, event_id, "u1")
        fake.fail("CreateReservation", Fault(delay_sec=0.3))
        attempt = asyncio.create_task(reserve(booking, event_id, "u1", token))
        await called(fake, "CreateReservation")
        own_redis.pause()
        try:
            created = await attempt
        finally:
            own_redis.resume()
        assert created.reservation_id
        assert "could not settle reservation token" in caplog.text

        async def token_guarded() -> bool:
            """True once the store answers again (after its reconnect pause) with a refusal."""
            try:
                await reserve(booking, event_id, "u1", token, key="k-2")
            except QueueUnavailable:
                return False
            except (TokenBusy, TokenGone):
                return True
            raise AssertionError("a second hold went through on an unsettled token")

        await eventually(token_guarded)
        assert len(fake.recorder.of("CreateReservation")) == 1
    finally:
        await store.close()


# --------------------------------------------------------------------------- ownership


async def held(booking: BookingService, room: WaitingRoom, event_id: str, user_id: str) -> str:
    token = await admitted(room, event_id, user_id)
    created = await reserve(booking, event_id, user_id, token, key=f"hold-{event_id}-{user_id}")
    return created.reservation_id


async def test_a_reservation_is_shown_to_its_owner_only(
    booking: BookingService, room: WaitingRoom, event_id: str
) -> None:
    reservation_id = await held(booking, room, event_id, "u1")
    found = await booking.reservation(READ, "u1", reservation_id)
    assert (found.reservation_id, found.user_id) == (reservation_id, "u1")
    with pytest.raises(ReservationNotFound):
        await booking.reservation(READ, "u2", reservation_id)


async def test_a_backend_forbidden_read_is_not_found_and_other_refusals_pass(
    booking: BookingService, fake: FakeBackends
) -> None:
    forbidden = common_pb2.Error(code=common_pb2.ERROR_CODE_FORBIDDEN, message="not yours")
    fake.fail("GetReservation", Fault(error=forbidden))
    with pytest.raises(ReservationNotFound, match="reservation not found"):
        await booking.reservation(READ, "u1", "rsv_1")
    fake.fail("GetReservation", Fault(status=grpc.StatusCode.UNAVAILABLE))
    with pytest.raises(BackendRefusal) as refused:
        await booking.reservation(READ, "u1", "rsv_1")
    assert refused.value.code == "UPSTREAM_UNAVAILABLE"


# --------------------------------------------------------------------------- paying


async def start(
    booking: BookingService, user_id: str, reservation_id: str, amount: int = 2 * PRICE, **kw: Any
) -> str:
    intent = await booking.start_payment(
        keyed("pay-key"),
        user_id,
        reservation_id=reservation_id,
        amount=amount,
        currency=kw.get("currency", "KRW"),
        scenario=kw.get("scenario", "approve"),
    )
    return intent.payment_intent_id


async def test_the_owner_pays_the_exact_total_and_the_read_carries_no_key(
    booking: BookingService, room: WaitingRoom, fake: FakeBackends, event_id: str
) -> None:
    reservation_id = await held(booking, room, event_id, "u1")
    assert await start(booking, "u1", reservation_id)
    (read,) = fake.recorder.of("GetReservation")
    assert "idempotency-key" not in read.metadata
    (created,) = fake.recorder.of("CreatePaymentIntent")
    assert created.metadata["idempotency-key"] == "pay-key"
    assert created.request.webhook_url == booking.webhook_url
    assert (created.request.user_id, created.request.amount.amount) == ("u1", 2 * PRICE)


@pytest.mark.parametrize(
    ("who", "amount", "currency", "refusal", "message"),
    [
        ("u2", 2 * PRICE, "KRW", ReservationNotFound, "not found"),
        ("u1", 1, "KRW", InvalidBooking, rf"reservation's total \({2 * PRICE} KRW\)"),
        ("u1", 2 * PRICE, "USD", InvalidBooking, "reservation's total"),
    ],
)
async def test_nobody_pays_for_someone_elses_seats_or_less_than_their_total(
    booking: BookingService,
    room: WaitingRoom,
    fake: FakeBackends,
    event_id: str,
    who: str,
    amount: int,
    currency: str,
    refusal: type[BookingError],
    message: str,
) -> None:
    reservation_id = await held(booking, room, event_id, "u1")
    with pytest.raises(refusal, match=message):
        await start(booking, who, reservation_id, amount, currency=currency)
    assert fake.recorder.of("CreatePaymentIntent") == []


@pytest.mark.parametrize(
    ("status", "refusal", "message"),
    [
        (reservation_pb2.RESERVATION_STATUS_EXPIRED, HoldExpired, "the hold has expired"),
        (reservation_pb2.RESERVATION_STATUS_CONFIRMED, NotPayable, "is CONFIRMED, not payable"),
        (reservation_pb2.RESERVATION_STATUS_CANCELLED, NotPayable, "is CANCELLED, not payable"),
        (reservation_pb2.RESERVATION_STATUS_PENDING, None, ""),
    ],
)
async def test_only_a_held_or_pending_reservation_is_payable(
    booking: BookingService,
    room: WaitingRoom,
    fake: FakeBackends,
    event_id: str,
    status: reservation_pb2.ReservationStatus.ValueType,
    refusal: type[BookingError] | None,
    message: str,
) -> None:
    reservation_id = await held(booking, room, event_id, "u1")
    fake.reservations.held[reservation_id].status = status
    if refusal is None:
        assert await start(booking, "u1", reservation_id)
        return
    with pytest.raises(refusal, match=message):
        await start(booking, "u1", reservation_id)
    assert fake.recorder.of("CreatePaymentIntent") == []


async def test_a_payment_backend_known_down_refuses_before_the_reservation_is_read(
    booking: BookingService, clients: BookingClients, fake: FakeBackends
) -> None:
    fake.fail("GetPaymentStatus", Fault(status=grpc.StatusCode.UNAVAILABLE))
    await trip(lambda: clients.payments.status(READ, payment_intent_id="pay_x"))
    with pytest.raises(BackendRefusal) as refused:
        await start(booking, "u1", "rsv_1")
    assert refused.value.code == "UPSTREAM_UNAVAILABLE"
    assert fake.recorder.of("GetReservation") == []


# --------------------------------------------------------------------------- the outcome


async def paid(
    booking: BookingService, room: WaitingRoom, event_id: str, scenario: str = "approve"
) -> tuple[str, str]:
    reservation_id = await held(booking, room, event_id, "u1")
    return reservation_id, await start(booking, "u1", reservation_id, scenario=scenario)


@pytest.mark.parametrize("status", ["FAILED", "REFUNDED", ""])
async def test_an_outcome_other_than_completed_changes_nothing(
    booking: BookingService, fake: FakeBackends, status: str
) -> None:
    outcome = PaymentOutcome("pay_1", "rsv_1", status)
    assert await booking.apply_payment_outcome(READ, outcome) is None
    assert fake.recorder.calls == []


async def test_a_completed_payment_confirms_once_under_a_key_of_its_intent(
    booking: BookingService, room: WaitingRoom, fake: FakeBackends, event_id: str
) -> None:
    reservation_id, intent_id = await paid(booking, room, event_id)
    outcome = PaymentOutcome(intent_id, reservation_id, "COMPLETED")
    for _ in range(2):  # a replay
        confirmed = await booking.apply_payment_outcome(READ, outcome)
        assert confirmed is not None
        assert confirmed.order_id == f"ord_{reservation_id}"
    checks = fake.recorder.of("GetPaymentStatus")
    assert [call.request.payment_intent_id for call in checks] == [intent_id, intent_id]
    assert all("idempotency-key" not in call.metadata for call in checks)
    confirms = fake.recorder.of("ConfirmReservation")
    assert {call.metadata["idempotency-key"] for call in confirms} == {
        f"payment-webhook:{intent_id}"
    }
    # The payment service's record says who paid, not the outcome's sender.
    assert {call.request.user_id for call in confirms} == {"u1"}
    assert fake.reservations.confirmations == 1


async def test_an_outcome_the_payment_service_contradicts_confirms_nothing(
    booking: BookingService, room: WaitingRoom, fake: FakeBackends, event_id: str
) -> None:
    reservation_id, failed = await paid(booking, room, event_id, scenario="fail")
    with pytest.raises(PaymentNotApproved, match=f"payment {failed} is FAILED"):
        await booking.apply_payment_outcome(
            READ, PaymentOutcome(failed, reservation_id, "COMPLETED")
        )
    _, approved = await paid(booking, room, f"{event_id}_b")
    with pytest.raises(InvalidBooking, match="does not match the payment"):
        await booking.apply_payment_outcome(
            READ, PaymentOutcome(approved, reservation_id, "COMPLETED")
        )
    assert fake.recorder.of("ConfirmReservation") == []
