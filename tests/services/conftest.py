"""Fixtures of the service tests: the three gRPC servers on free ports over a real database
(a SQLite file, or a throwaway PostgreSQL schema), clients for them, and a webhook receiver
served by uvicorn on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.http_server import serve
from tests.unit.test_accounts_database import BACKENDS, DatabaseFactory, database_factory
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.payment.v1 import payment_pb2, payment_pb2_grpc
from ticketgate.proto.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from ticketgate.services.inventory import seat_map
from ticketgate.services.server import RunningServices, run_services
from ticketgate.services.settings import ServiceSettings

WEBHOOK_SECRET = b"test-webhook-secret-test-webhook-secret!"
# Rows A-J x 10: the 100-seat events of the oversell tests.
HUNDRED_SEATS = seat_map(
    {row: ("R", 100_000 + 1_000 * i) for i, row in enumerate("ABCDEFGHIJ")}, 10
)


def fast_settings(**overrides: Any) -> ServiceSettings:
    """Free ports, fast payments and sweeps; the hold TTL stays 60 s unless a test shortens it.

    The per-person seat cap is lifted (most tests book many seats as one user, e.g. 2,000
    oversell attempts); tests/services/test_seat_limit.py sets it."""
    base = ServiceSettings(
        inventory_address="127.0.0.1:0",
        reservation_address="127.0.0.1:0",
        payment_address="127.0.0.1:0",
        webhook_secret=WEBHOOK_SECRET,
        sweep_interval_sec=0.2,
        payment_approve_delay_sec=0.05,
        payment_delay_sec=0.6,
        payment_recovery_interval_sec=0.1,
        webhook_backoff_sec=0.05,
        webhook_timeout_sec=1.0,
        max_seats_per_user=10_000,
    )
    return replace(base, **overrides)


class Clock:
    """Real time plus an offset a test moves forward: a 60 s hold lapses without a 60 s wait."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Booking:
    """Running services plus a client stub for each."""

    running: RunningServices
    inventory: reservation_pb2_grpc.InventoryServiceAsyncStub
    reservations: reservation_pb2_grpc.ReservationServiceAsyncStub
    payments: payment_pb2_grpc.PaymentServiceAsyncStub
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    async def seed(self, seats: Iterable[Any] = HUNDRED_SEATS) -> str:
        """A fresh event with `seats`; returns its id."""
        event_id = f"evt_{uuid.uuid4().hex[:12]}"
        await self.running.inventory.seed_event(event_id, seats)
        return event_id

    async def reserve(
        self,
        event_id: str,
        *,
        user_id: str = "usr_alice",
        quantity: int = 0,
        seat_ids: Iterable[str] = (),
        key: str = "",
        token: str = "",
        deadline_sec: float = 10,
    ) -> reservation_pb2.CreateReservationResponse:
        return await self.reservations.CreateReservation(
            reservation_pb2.CreateReservationRequest(
                event_id=event_id,
                seat_ids=list(seat_ids),
                quantity=quantity,
                user_id=user_id,
                reservation_token=token or f"rt_{uuid.uuid4().hex}",
                idempotency_key=key,
            ),
            timeout=deadline_sec,
        )

    async def pay(
        self,
        reservation: reservation_pb2.CreateReservationResponse,
        *,
        user_id: str = "usr_alice",
        scenario: payment_pb2.PaymentScenario.ValueType = payment_pb2.PAYMENT_SCENARIO_APPROVE,
        webhook_url: str = "",
        key: str = "",
    ) -> payment_pb2.CreatePaymentIntentResponse:
        return await self.payments.CreatePaymentIntent(
            payment_pb2.CreatePaymentIntentRequest(
                reservation_id=reservation.reservation_id,
                amount=reservation.total_amount,
                user_id=user_id,
                scenario=scenario,
                webhook_url=webhook_url,
                idempotency_key=key,
            ),
            timeout=5,
        )

    async def confirm(
        self, reservation_id: str, intent_id: str, *, user_id: str = "usr_alice"
    ) -> reservation_pb2.ConfirmReservationResponse:
        return await self.reservations.ConfirmReservation(
            reservation_pb2.ConfirmReservationRequest(
                reservation_id=reservation_id, user_id=user_id, payment_intent_id=intent_id
            ),
            timeout=10,
        )

    async def payment_status(self, intent_id: str) -> payment_pb2.GetPaymentStatusResponse:
        return await self.payments.GetPaymentStatus(
            payment_pb2.GetPaymentStatusRequest(payment_intent_id=intent_id), timeout=5
        )

    async def wait_for_payment(
        self, intent_id: str, within: float = 5.0
    ) -> payment_pb2.GetPaymentStatusResponse:
        """Poll until the intent leaves PROCESSING."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            status = await self.payment_status(intent_id)
            if status.status != payment_pb2.PAYMENT_STATUS_PROCESSING:
                return status
            assert asyncio.get_running_loop().time() < deadline, "payment never settled"
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def booking(
    factory: DatabaseFactory,
    settings: ServiceSettings | None = None,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Booking]:
    database = factory.open()
    async with run_services(settings or fast_settings(), database, rng=rng, clock=clock) as running:
        channels = [
            grpc.aio.insecure_channel(address)
            for address in (
                running.inventory_address,
                running.reservation_address,
                running.payment_address,
            )
        ]
        try:
            yield Booking(
                running,
                reservation_pb2_grpc.InventoryServiceStub(channels[0]),
                reservation_pb2_grpc.ReservationServiceStub(channels[1]),
                payment_pb2_grpc.PaymentServiceStub(channels[2]),
                channels,
            )
        finally:
            for channel in channels:
                await channel.close(None)


@pytest.fixture(params=BACKENDS)
async def databases(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DatabaseFactory]:
    async with database_factory(request.param, tmp_path) as factory:
        yield factory


@pytest.fixture
async def sqlite_databases(tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    """For behaviour that does not depend on the SQL dialect."""
    async with database_factory("sqlite", tmp_path) as factory:
        yield factory


@pytest.fixture
async def services(databases: DatabaseFactory) -> AsyncIterator[Booking]:
    async with booking(databases) as running:
        yield running


@pytest.fixture
async def sqlite_services(sqlite_databases: DatabaseFactory) -> AsyncIterator[Booking]:
    async with booking(sqlite_databases) as running:
        yield running


def error_code(response: Any) -> common_pb2.ErrorCode.ValueType:
    code: common_pb2.ErrorCode.ValueType = response.error.code
    return code


class WebhookReceiver:
    """An ASGI app that records each POST and answers the next status of `statuses`
    (then 200)."""

    def __init__(self, statuses: Iterable[int] = ()) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.queue: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        status = self.statuses.pop(0) if self.statuses else 200
        self.received.append((headers, body))
        self.queue.put_nowait((headers, body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def next(self, within: float = 5.0) -> tuple[dict[str, str], bytes]:
        return await asyncio.wait_for(self.queue.get(), within)


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    async with serve(receiver) as client:
        receiver.url = f"{client.base_url}/api/v1/payment/webhook"
        yield receiver
