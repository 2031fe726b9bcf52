"""The gRPC clients against real grpc.aio servers: metadata, deadlines, retries, breaker."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from tests.backends.fake_servers import FakeBackends, Fault, fake_backends
from tests.backends.test_breaker import state
from tests.redis_server import free_port
from ticketgate.backends.breaker import BreakerState
from ticketgate.backends.clients import PaymentClient, ReservationClient
from ticketgate.backends.errors import BackendError
from ticketgate.backends.settings import BackendSettings
from ticketgate.booking.ports import CallContext
from ticketgate.proto.common.v1 import common_pb2

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CTX = CallContext(trace_id=TRACE, request_id="req-1")


def settings_for(address: str, **kw: object) -> BackendSettings:
    base: dict[str, object] = {
        "reservation_address": address,
        "payment_address": address,
        "reservation_timeout_ms": 300,
        "payment_timeout_ms": 300,
        "breaker_failures": 3,
        "breaker_reset_sec": 0.3,
        "webhook_secret": "s" * 32,
    }
    base.update(kw)
    return BackendSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def backends() -> AsyncIterator[FakeBackends]:
    async with fake_backends() as fake:
        yield fake


@pytest.fixture
async def client(backends: FakeBackends) -> AsyncIterator[ReservationClient]:
    reservations = ReservationClient(settings_for(backends.address))
    yield reservations
    await reservations.close()


async def create(client: ReservationClient, context: CallContext = CTX) -> str:
    created = await client.create(
        context,
        event_id="evt_1",
        seat_ids=["A-1"],
        quantity=1,
        user_id="alice",
        reservation_token="rt1.x",
    )
    return created.reservation_id


async def test_trace_request_id_and_idempotency_key_reach_the_server(
    backends: FakeBackends, client: ReservationClient
) -> None:
    context = CallContext(trace_id=TRACE, request_id="req-7", idempotency_key="k-1")
    await create(client, context)
    await create(client, context)
    first, second = backends.recorder.of("CreateReservation")
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", first.metadata["traceparent"])
    assert match is not None
    assert match.group(1) == TRACE
    # Each call is its own span of the same trace.
    assert second.metadata["traceparent"] != first.metadata["traceparent"]
    assert second.metadata["traceparent"].split("-")[1] == TRACE
    assert first.metadata["x-request-id"] == "req-7"
    assert first.metadata["idempotency-key"] == "k-1"
    assert first.request.idempotency_key == "k-1"
    assert first.request.user_id == "alice"
    assert first.request.reservation_token == "rt1.x"


async def test_no_idempotency_metadata_when_the_call_has_no_key(
    backends: FakeBackends, client: ReservationClient
) -> None:
    reservation_id = await create(client)
    await client.get(CTX, reservation_id=reservation_id, user_id="alice")
    (call,) = backends.recorder.of("GetReservation")
    assert "idempotency-key" not in call.metadata
    assert call.metadata["x-request-id"] == "req-1"


async def test_slow_backend_times_out_at_the_configured_deadline(
    backends: FakeBackends, client: ReservationClient
) -> None:
    backends.fail("GetReservation", Fault(delay_sec=2.0))
    started = time.monotonic()
    with pytest.raises(BackendError) as failed:
        await client.get(CTX, reservation_id="rsv_1", user_id="alice")
    elapsed = time.monotonic() - started
    assert (failed.value.status, failed.value.code) == (504, "UPSTREAM_TIMEOUT")
    # At the deadline, not at the servicer's 2 s (slack for a busy shared box).
    assert 0.28 <= elapsed < 1.2, elapsed
    # A timed-out read is not retried: the deadline is spent.
    assert len(backends.recorder.of("GetReservation")) == 1


async def test_reads_are_retried_once_on_unavailable(
    backends: FakeBackends, client: ReservationClient
) -> None:
    reservation_id = await create(client)
    backends.fail("GetReservation", Fault(status=grpc.StatusCode.UNAVAILABLE, times=1))
    found = await client.get(CTX, reservation_id=reservation_id, user_id="alice")
    assert found.reservation_id == reservation_id
    assert len(backends.recorder.of("GetReservation")) == 2


async def test_reads_are_retried_only_once(
    backends: FakeBackends, client: ReservationClient
) -> None:
    backends.fail("GetReservation", Fault(status=grpc.StatusCode.UNAVAILABLE))
    with pytest.raises(BackendError) as failed:
        await client.get(CTX, reservation_id="rsv_1", user_id="alice")
    assert failed.value.code == "UPSTREAM_UNAVAILABLE"
    assert failed.value.retry_after_sec is not None
    assert len(backends.recorder.of("GetReservation")) == 2


async def test_writes_without_a_key_are_never_retried(
    backends: FakeBackends, client: ReservationClient
) -> None:
    backends.fail("CreateReservation", Fault(status=grpc.StatusCode.UNAVAILABLE, times=1))
    with pytest.raises(BackendError) as failed:
        await create(client)
    assert failed.value.code == "UPSTREAM_UNAVAILABLE"
    assert len(backends.recorder.of("CreateReservation")) == 1
    backends.fail("ConfirmReservation", Fault(status=grpc.StatusCode.UNAVAILABLE, times=1))
    with pytest.raises(BackendError):
        await client.confirm(CTX, reservation_id="rsv_1", user_id="alice", payment_intent_id="p")
    assert len(backends.recorder.of("ConfirmReservation")) == 1


async def test_writes_with_a_key_are_retried_once_on_unavailable(
    backends: FakeBackends, client: ReservationClient
) -> None:
    backends.fail("CreateReservation", Fault(status=grpc.StatusCode.UNAVAILABLE, times=1))
    keyed = CallContext(trace_id=TRACE, idempotency_key="k-2")
    assert await create(client, keyed)
    calls = backends.recorder.of("CreateReservation")
    assert len(calls) == 2
    assert {call.request.idempotency_key for call in calls} == {"k-2"}


async def test_writes_are_not_retried_on_other_failures(
    backends: FakeBackends, client: ReservationClient
) -> None:
    backends.fail("CreateReservation", Fault(status=grpc.StatusCode.INTERNAL, times=1))
    with pytest.raises(BackendError) as failed:
        await create(client, CallContext(trace_id=TRACE, idempotency_key="k-3"))
    assert (failed.value.status, failed.value.code) == (502, "INTERNAL_ERROR")
    assert len(backends.recorder.of("CreateReservation")) == 1


async def test_an_error_in_the_response_is_mapped_and_is_not_a_breaker_failure(
    backends: FakeBackends, client: ReservationClient
) -> None:
    taken = common_pb2.Error(code=common_pb2.ERROR_CODE_INVENTORY_CONFLICT, message="A-1 taken")
    backends.fail("CreateReservation", Fault(error=taken))
    for _ in range(5):
        with pytest.raises(BackendError) as refused:
            await create(client)
        assert (refused.value.status, refused.value.code) == (409, "SEAT_UNAVAILABLE")
        assert refused.value.message == "A-1 taken"
    assert state(client.breaker) is BreakerState.CLOSED


async def test_backend_reported_unavailability_counts_towards_the_breaker(
    backends: FakeBackends, client: ReservationClient
) -> None:
    down = common_pb2.Error(code=common_pb2.ERROR_CODE_UNAVAILABLE, message="inventory down")
    backends.fail("CreateReservation", Fault(error=down))
    for _ in range(3):
        with pytest.raises(BackendError):
            await create(client)
    assert state(client.breaker) is BreakerState.OPEN


async def test_open_breaker_answers_fast_without_calling(
    backends: FakeBackends, client: ReservationClient
) -> None:
    backends.fail("CreateReservation", Fault(status=grpc.StatusCode.UNAVAILABLE))
    for _ in range(3):
        with pytest.raises(BackendError):
            await create(client)
    calls = len(backends.recorder.calls)
    assert state(client.breaker) is BreakerState.OPEN
    started = time.monotonic()
    with pytest.raises(BackendError) as refused:
        await client.get(CTX, reservation_id="rsv_1", user_id="alice")
    assert time.monotonic() - started < 0.15  # well inside the 0.3 s deadline
    assert (refused.value.status, refused.value.code) == (503, "UPSTREAM_UNAVAILABLE")
    assert refused.value.retry_after_sec is not None
    assert 0 < refused.value.retry_after_sec <= 0.3
    with pytest.raises(BackendError):
        client.check_available()
    assert len(backends.recorder.calls) == calls


async def test_breaker_opens_on_a_dead_backend_and_closes_when_it_returns() -> None:
    port = free_port()
    reservations = ReservationClient(settings_for(f"127.0.0.1:{port}"))
    try:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(BackendError) as failed:
                await reservations.get(CTX, reservation_id="rsv_1", user_id="alice")
            assert failed.value.code == "UPSTREAM_UNAVAILABLE"
            assert time.monotonic() - started < 0.3  # within the deadline
        assert state(reservations.breaker) is BreakerState.OPEN
        async with fake_backends(port) as fake:
            with pytest.raises(BackendError):  # still open: nothing reaches the server
                await reservations.get(CTX, reservation_id="rsv_1", user_id="alice")
            assert fake.recorder.calls == []
            await asyncio.sleep(0.35)
            assert state(reservations.breaker) is BreakerState.HALF_OPEN
            reservation_id = await create(reservations)  # the probe
            assert state(reservations.breaker) is BreakerState.CLOSED
            assert reservation_id
    finally:
        await reservations.close()


async def test_a_failed_probe_reopens_the_breaker(
    backends: FakeBackends, client: ReservationClient
) -> None:
    backends.fail("GetReservation", Fault(status=grpc.StatusCode.UNAVAILABLE))
    for _ in range(3):
        with pytest.raises(BackendError):
            await client.get(CTX, reservation_id="rsv_1", user_id="alice")
    await asyncio.sleep(0.35)
    before = len(backends.recorder.calls)
    with pytest.raises(BackendError):
        await client.get(CTX, reservation_id="rsv_1", user_id="alice")
    assert len(backends.recorder.calls) > before  # the probe did call
    assert state(client.breaker) is BreakerState.OPEN


async def test_a_cancelled_probe_lets_the_next_call_probe(
    backends: FakeBackends, client: ReservationClient
) -> None:
    backends.fail("GetReservation", Fault(status=grpc.StatusCode.UNAVAILABLE))
    for _ in range(3):
        with pytest.raises(BackendError):
            await client.get(CTX, reservation_id="rsv_1", user_id="alice")
    await asyncio.sleep(0.35)
    backends.fail("GetReservation", Fault(delay_sec=1.0))
    probe = asyncio.create_task(client.get(CTX, reservation_id="rsv_1", user_id="alice"))
    await asyncio.sleep(0.05)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    backends.heal()
    reservation_id = await create(client)
    assert reservation_id
    assert state(client.breaker) is BreakerState.CLOSED


async def test_each_backend_has_its_own_breaker(backends: FakeBackends) -> None:
    settings = settings_for(backends.address)
    reservations = ReservationClient(settings)
    payments = PaymentClient(settings)
    try:
        backends.fail("GetReservation", Fault(status=grpc.StatusCode.UNAVAILABLE))
        for _ in range(3):
            with pytest.raises(BackendError):
                await reservations.get(CTX, reservation_id="r", user_id="u")
        assert state(reservations.breaker) is BreakerState.OPEN
        intent = await payments.create_intent(
            CallContext(trace_id=TRACE, idempotency_key="k"),
            reservation_id="rsv_1",
            amount=120_000,
            currency="KRW",
            user_id="alice",
            scenario="fail",
            webhook_url="http://127.0.0.1:1/api/v1/payment/webhook",
        )
        assert intent.payment_intent_id
        (call,) = backends.recorder.of("CreatePaymentIntent")
        assert call.request.webhook_url == "http://127.0.0.1:1/api/v1/payment/webhook"
        assert call.request.scenario == 2  # PAYMENT_SCENARIO_FAIL
        assert call.request.amount.amount == 120_000
        assert call.request.idempotency_key == "k"
        status = await payments.status(CTX, payment_intent_id=intent.payment_intent_id)
        assert status.user_id == "alice"
        assert state(payments.breaker) is BreakerState.CLOSED
    finally:
        await reservations.close()
        await payments.close()
