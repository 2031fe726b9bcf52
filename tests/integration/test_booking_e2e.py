"""The whole flow over real sockets: gateway (Redis queue store) + the three reference services
(gRPC servers on SQLite) + the payment simulator's signed webhook back into the gateway.

join → enter → reserve → pay → webhook → confirmed, for one user and for 200 at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends.booking_gateway import (
    INTENT,
    RESERVATIONS,
    WEBHOOK,
    WEBHOOK_SECRET,
    BookingGateway,
    admitted,
    booking_gateway,
    reserve,
    signed,
    user,
)
from tests.integration.conftest import assert_envelope
from ticketgate.backends.settings import BackendSettings
from ticketgate.database import Database
from ticketgate.database.settings import SQLITE_DRIVER, DatabaseSettings
from ticketgate.services.inventory import seat_map
from ticketgate.services.server import RunningServices, run_services
from ticketgate.services.settings import ServiceSettings

# 20 rows x 10 seats: one seat for each of the 200 concurrent users.
SEATS = seat_map({chr(ord("A") + i): ("R", 100_000) for i in range(20)}, 10)


@dataclasses.dataclass
class Stack:
    gateway: BookingGateway
    services: RunningServices
    event_id: str
    http: httpx.AsyncClient  # one connection per concurrent user, like 200 browsers


@pytest.fixture
async def stack(tmp_path: Path, redis_address: str) -> AsyncIterator[Stack]:
    database = Database.from_settings(
        DatabaseSettings(url=f"{SQLITE_DRIVER}:///{tmp_path / 'booking.db'}")
    )
    services_settings = ServiceSettings(
        inventory_address="127.0.0.1:0",
        reservation_address="127.0.0.1:0",
        payment_address="127.0.0.1:0",
        webhook_secret=WEBHOOK_SECRET.encode(),
        payment_approve_delay_sec=0.05,
        payment_recovery_interval_sec=0.2,
        webhook_backoff_sec=0.1,
        # The webhook's confirm queues behind 200 users' traffic on this one event loop;
        # a short timeout would only resend it and double the work.
        webhook_timeout_sec=30.0,
        upstream_timeout_sec=30.0,
        seed_demo_event=False,
    )
    try:
        async with run_services(services_settings, database) as services:
            event_id = f"evt_{uuid.uuid4().hex[:10]}"
            await services.inventory.seed_event(event_id, SEATS)
            settings = BackendSettings(
                reservation_address=services.reservation_address,
                payment_address=services.payment_address,
                # Gateway, three services and one SQLite file (whose writes the services
                # serialize) share one event loop here: under 200 users a call waits behind
                # the whole write queue. Deadlines are generous so the test checks the flow's
                # correctness; the deadline behaviour has its own tests on fake servers.
                reservation_timeout_ms=30_000,
                payment_timeout_ms=30_000,
                webhook_secret=WEBHOOK_SECRET,
            )
            async with (
                booking_gateway(
                    settings, redis_address=redis_address, webhook_to_self=True
                ) as gateway,
                httpx.AsyncClient(
                    base_url=gateway.http.base_url,
                    timeout=30,
                    limits=httpx.Limits(max_connections=250),
                ) as http,
            ):
                yield Stack(gateway, services, event_id, http)
    finally:
        await database.dispose()


async def until_confirmed(
    http: httpx.AsyncClient, who: int, rid: str, first_pause: float = 0.05, within: float = 50.0
) -> dict[str, Any]:
    """Poll GET until the webhook's confirm shows (the webhook is asynchronous by design),
    backing off like a polite client: every poll is a backend read."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = first_pause
    while True:
        await asyncio.sleep(pause)
        response = await http.get(f"{RESERVATIONS}/{rid}", headers=user(who))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "HOLD":
            return body
        if loop.time() > deadline:
            raise AssertionError(f"reservation {rid} never left HOLD")
        pause = min(pause * 2, 4.0)


async def book(
    stack: Stack, who: int, scenario: str = "approve", http: httpx.AsyncClient | None = None
) -> tuple[dict[str, Any], str]:
    """One user's flow up to the payment intent; returns the reservation and the intent id."""
    http = http or stack.http
    token = await admitted(http, stack.event_id, who)
    created = await reserve(http, stack.event_id, who, token, uuid.uuid4().hex, quantity=1)
    assert created.status_code == 201, created.text
    reservation: dict[str, Any] = created.json()
    intent = await http.post(
        INTENT,
        json={
            "reservation_id": reservation["reservation_id"],
            "amount": reservation["total_amount"],
            "currency": reservation["currency"],
            "scenario": scenario,
        },
        headers={**user(who), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert intent.status_code == 200, intent.text
    assert intent.json()["next"] == "webhook"
    intent_id: str = intent.json()["payment_intent_id"]
    return reservation, intent_id


async def test_one_user_books_pays_and_is_confirmed_by_webhook(stack: Stack) -> None:
    reservation, intent_id = await book(stack, 1)
    assert reservation["status"] == "HOLD"
    assert reservation["total_amount"] == 100_000
    assert reservation["currency"] == "KRW"
    assert reservation["reserved_seats"][0]["seat_id"] == "A-1"  # best available
    shown = await until_confirmed(stack.http, 1, reservation["reservation_id"])
    assert shown["status"] == "CONFIRMED"
    assert shown["order_id"].startswith("ord_")
    assert shown["payment_intent_id"] == intent_id
    # Nobody else sees it.
    other = await stack.http.get(f"{RESERVATIONS}/{reservation['reservation_id']}", headers=user(2))
    assert_envelope(other, 404, "RESERVATION_NOT_FOUND")
    # The client's own confirm after the webhook answers the same order (idempotent).
    confirm = await stack.http.post(
        f"{RESERVATIONS}/{reservation['reservation_id']}/confirm",
        json={"payment_intent_id": intent_id},
        headers={**user(1), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert confirm.status_code == 200, confirm.text
    assert confirm.json()["order_id"] == shown["order_id"]
    assert confirm.json()["status"] == "CONFIRMED"


async def test_a_replayed_webhook_confirms_once(stack: Stack) -> None:
    reservation, intent_id = await book(stack, 1)
    shown = await until_confirmed(stack.http, 1, reservation["reservation_id"])
    replay = json.dumps(
        {
            "payment_intent_id": intent_id,
            "reservation_id": reservation["reservation_id"],
            "user_id": "load-test-1",
            "status": "COMPLETED",
            "amount": reservation["total_amount"],
            "currency": "KRW",
            "occurred_at": "2025-01-01T12:00:00.000Z",
        }
    ).encode()
    answers = await asyncio.gather(
        *(stack.http.post(WEBHOOK, content=replay, headers=signed(replay)) for _ in range(5))
    )
    assert {answer.status_code for answer in answers} == {200}
    assert {answer.json()["order_id"] for answer in answers} == {shown["order_id"]}
    again = await stack.http.get(f"{RESERVATIONS}/{reservation['reservation_id']}", headers=user(1))
    assert again.json()["order_id"] == shown["order_id"]


async def test_failed_payment_leaves_the_hold_and_confirm_is_412(stack: Stack) -> None:
    reservation, intent_id = await book(stack, 1, scenario="fail")
    rid = reservation["reservation_id"]
    for _ in range(100):  # the simulator settles FAILED and its webhook is ignored
        status = await stack.services.payments.status(intent_id)
        if status.status == "FAILED":
            break
        await asyncio.sleep(0.05)
    confirm = await stack.http.post(
        f"{RESERVATIONS}/{rid}/confirm",
        json={"payment_intent_id": intent_id},
        headers={**user(1), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert_envelope(confirm, 412, "PAYMENT_NOT_APPROVED")
    shown = await stack.http.get(f"{RESERVATIONS}/{rid}", headers=user(1))
    assert shown.json()["status"] == "HOLD"
    cancelled = await stack.http.post(
        f"{RESERVATIONS}/{rid}/cancel", headers={**user(1), "Idempotency-Key": uuid.uuid4().hex}
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    # The seat is free again: the next user gets A-1.
    taken_again, _ = await book(stack, 2)
    assert taken_again["reserved_seats"][0]["seat_id"] == "A-1"


async def test_a_reused_reservation_token_holds_no_second_seat(stack: Stack) -> None:
    token = await admitted(stack.http, stack.event_id, 1)
    first = await reserve(stack.http, stack.event_id, 1, token, uuid.uuid4().hex, quantity=1)
    assert first.status_code == 201
    second = await reserve(stack.http, stack.event_id, 1, token, uuid.uuid4().hex, quantity=1)
    assert_envelope(second, 410, "RESERVATION_EXPIRED")


@pytest.mark.slow
async def test_two_hundred_users_book_concurrently(stack: Stack) -> None:
    tls = ssl.create_default_context()

    async def flow(who: int) -> dict[str, Any]:
        # One client per user, as 200 browsers would be: one shared httpx pool of 200
        # connections costs more CPU than the gateway it is measuring. (The TLS context is
        # shared only because building one per client loads the CA bundle 200 times.)
        async with httpx.AsyncClient(base_url=stack.http.base_url, timeout=60, verify=tls) as http:
            reservation, intent_id = await book(stack, who, http=http)
            shown = await until_confirmed(http, who, reservation["reservation_id"], 1.0, 60.0)
        assert shown["status"] == "CONFIRMED", shown
        assert shown["payment_intent_id"] == intent_id
        return shown

    confirmed = await asyncio.gather(*(flow(n) for n in range(1, 201)))
    seats = [seat["seat_id"] for body in confirmed for seat in body["reserved_seats"]]
    assert len(seats) == 200
    assert len(set(seats)) == 200  # no seat sold twice
    assert len({body["order_id"] for body in confirmed}) == 200
    # Sold out: the 201st user is refused by the inventory, not oversold.
    token = await admitted(stack.http, stack.event_id, 201)
    late = await reserve(stack.http, stack.event_id, 201, token, uuid.uuid4().hex, quantity=1)
    assert_envelope(late, 409, "INSUFFICIENT_INVENTORY")
