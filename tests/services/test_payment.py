"""Payment simulator over gRPC: scenarios with their real effects, durable intents, idempotency,
and signed webhooks delivered at least once with bounded retries."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import datetime
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from tests.http_server import serve
from tests.services.conftest import (
    WEBHOOK_SECRET,
    Booking,
    WebhookReceiver,
    booking,
    error_code,
    fast_settings,
)
from tests.unit.test_accounts_database import DatabaseFactory
from ticketgate import webhooks
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.payment.v1 import payment_pb2
from ticketgate.services import tables

APPROVE = payment_pb2.PAYMENT_SCENARIO_APPROVE
COMPLETED = payment_pb2.PAYMENT_STATUS_COMPLETED
FAILED = payment_pb2.PAYMENT_STATUS_FAILED
PROCESSING = payment_pb2.PAYMENT_STATUS_PROCESSING


def intent_request(
    *,
    reservation_id: str = "rsv_1",
    amount: int = 165_000,
    currency: str = "KRW",
    user_id: str = "usr_alice",
    scenario: payment_pb2.PaymentScenario.ValueType = APPROVE,
    webhook_url: str = "",
    key: str = "",
) -> payment_pb2.CreatePaymentIntentRequest:
    return payment_pb2.CreatePaymentIntentRequest(
        reservation_id=reservation_id,
        amount=common_pb2.Money(amount=amount, currency=currency),
        user_id=user_id,
        scenario=scenario,
        webhook_url=webhook_url,
        idempotency_key=key,
    )


async def create(
    services: Booking, request: payment_pb2.CreatePaymentIntentRequest
) -> payment_pb2.CreatePaymentIntentResponse:
    return await services.payments.CreatePaymentIntent(request, timeout=5)


async def intent_rows(services: Booking, reservation_id: str) -> int:
    intents = tables.payment_intents.c
    async with services.running.payments.database.read() as conn:
        count = await conn.execute(
            select(func.count())
            .select_from(tables.payment_intents)
            .where(intents.reservation_id == reservation_id)
        )
        return int(count.scalar_one())


async def webhook_state(services: Booking, intent_id: str) -> tuple[str, int]:
    intents = tables.payment_intents.c
    async with services.running.payments.database.read() as conn:
        row = (
            await conn.execute(
                select(intents.webhook_state, intents.webhook_attempts).where(
                    intents.id == intent_id
                )
            )
        ).one()
        return row.webhook_state, row.webhook_attempts


async def test_approve_completes_and_posts_the_documented_signed_webhook(
    services: Booking, webhook: WebhookReceiver
) -> None:
    created = await create(services, intent_request(webhook_url=webhook.url))
    assert created.payment_intent_id.startswith("pi_")
    assert created.status == PROCESSING
    assert created.next_action == "webhook"

    headers, body = await webhook.next()
    assert headers["content-type"] == "application/json"
    header = headers["x-ticketgate-signature"]
    assert webhooks.verify(WEBHOOK_SECRET, body, header, time.time())
    assert not webhooks.verify(WEBHOOK_SECRET, body + b" ", header, time.time())
    event = json.loads(body)
    assert set(event) == {
        "payment_intent_id",
        "reservation_id",
        "user_id",
        "status",
        "amount",
        "currency",
        "occurred_at",
    }
    assert event["payment_intent_id"] == created.payment_intent_id
    assert (event["reservation_id"], event["user_id"]) == ("rsv_1", "usr_alice")
    assert (event["status"], event["amount"], event["currency"]) == ("COMPLETED", 165_000, "KRW")
    occurred = datetime.fromisoformat(event["occurred_at"])
    assert event["occurred_at"].endswith("Z")
    assert abs(occurred.timestamp() - time.time()) < 10

    status = await services.payment_status(created.payment_intent_id)
    assert status.status == COMPLETED
    assert status.amount == common_pb2.Money(amount=165_000, currency="KRW")
    assert (status.reservation_id, status.user_id) == ("rsv_1", "usr_alice")
    assert abs(status.updated_at.seconds - occurred.timestamp()) <= 1
    await asyncio.sleep(0.2)
    assert await webhook_state(services, created.payment_intent_id) == ("DELIVERED", 1)
    assert len(webhook.received) == 1


async def test_fail_fails_and_says_so(sqlite_services: Booking, webhook: WebhookReceiver) -> None:
    created = await create(
        sqlite_services,
        intent_request(scenario=payment_pb2.PAYMENT_SCENARIO_FAIL, webhook_url=webhook.url),
    )
    _, body = await webhook.next()
    assert json.loads(body)["status"] == "FAILED"
    assert (await sqlite_services.payment_status(created.payment_intent_id)).status == FAILED


async def test_delay_completes_only_after_the_configured_delay(sqlite_services: Booking) -> None:
    started = time.monotonic()
    created = await create(
        sqlite_services, intent_request(scenario=payment_pb2.PAYMENT_SCENARIO_DELAY)
    )
    await asyncio.sleep(0.2)  # well past the approve delay (0.05 s)
    assert (await sqlite_services.payment_status(created.payment_intent_id)).status == PROCESSING
    settled = await sqlite_services.wait_for_payment(created.payment_intent_id)
    assert settled.status == COMPLETED
    assert time.monotonic() - started >= 0.6  # PAYMENT_DELAY_SEC in these tests


async def test_process_payment_applies_the_outcome_now(sqlite_services: Booking) -> None:
    created = await create(
        sqlite_services, intent_request(scenario=payment_pb2.PAYMENT_SCENARIO_DELAY)
    )
    processed = await sqlite_services.payments.ProcessPayment(
        payment_pb2.ProcessPaymentRequest(payment_intent_id=created.payment_intent_id), timeout=5
    )
    assert processed.status == COMPLETED
    again = await sqlite_services.payments.ProcessPayment(
        payment_pb2.ProcessPaymentRequest(payment_intent_id=created.payment_intent_id), timeout=5
    )
    assert again.status == COMPLETED
    missing = await sqlite_services.payments.ProcessPayment(
        payment_pb2.ProcessPaymentRequest(payment_intent_id="pi_nope"), timeout=5
    )
    assert error_code(missing) == common_pb2.ERROR_CODE_NOT_FOUND


async def test_random_approves_as_its_random_source_decides(
    sqlite_databases: DatabaseFactory,
) -> None:
    async with booking(sqlite_databases, rng=random.Random(42)) as services:
        intents = [
            await create(
                services,
                intent_request(
                    reservation_id=f"rsv_{i}", scenario=payment_pb2.PAYMENT_SCENARIO_RANDOM
                ),
            )
            for i in range(20)
        ]
        outcomes = [
            (await services.wait_for_payment(intent.payment_intent_id)).status for intent in intents
        ]
    replay = random.Random(42)
    expected = [COMPLETED if replay.random() < 0.8 else FAILED for _ in range(20)]
    assert outcomes == expected
    assert {COMPLETED, FAILED} <= set(outcomes)


async def test_timeout_stalls_the_call_past_the_deadline_and_stores_nothing(
    sqlite_services: Booking,
) -> None:
    services = sqlite_services
    started = time.monotonic()
    stalled = asyncio.ensure_future(
        services.payments.CreatePaymentIntent(
            intent_request(reservation_id="rsv_t", scenario=payment_pb2.PAYMENT_SCENARIO_TIMEOUT),
            timeout=0.4,
        )
    )
    # The server keeps serving other calls meanwhile.
    other = await create(services, intent_request(reservation_id="rsv_other"))
    assert not other.HasField("error")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stalled
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    assert await intent_rows(services, "rsv_t") == 0


async def test_create_is_idempotent_by_key(services: Booking) -> None:
    first = await create(services, intent_request(key="pay-1"))
    again = await create(services, intent_request(key="pay-1"))
    assert again.payment_intent_id == first.payment_intent_id
    changed = await create(services, intent_request(key="pay-1", amount=1))
    assert error_code(changed) == common_pb2.ERROR_CODE_IDEMPOTENCY_CONFLICT
    assert changed.error.message == "idempotency key was already used for a different payment"
    bob = await create(services, intent_request(key="pay-1", user_id="usr_bob"))
    assert bob.payment_intent_id != first.payment_intent_id

    racing = await asyncio.gather(
        *(
            create(services, intent_request(reservation_id="rsv_race", key="pay-2"))
            for _ in range(8)
        )
    )
    assert len({response.payment_intent_id for response in racing}) == 1
    assert await intent_rows(services, "rsv_race") == 1


@pytest.mark.parametrize(
    ("request_fields", "reason"),
    [
        ({"amount": 0}, "positive"),
        ({"amount": -5}, "positive"),
        ({"currency": "won"}, "currency"),
        ({"reservation_id": ""}, "reservation_id"),
        ({"user_id": ""}, "user_id"),
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
    ],
)
async def test_malformed_intents_are_invalid_arguments(
    sqlite_services: Booking, request_fields: dict[str, object], reason: str
) -> None:
    response = await create(sqlite_services, intent_request(**request_fields))  # type: ignore[arg-type]
    assert error_code(response) == common_pb2.ERROR_CODE_INVALID_ARGUMENT
    assert reason in response.error.message
    assert response.payment_intent_id == ""


async def test_unknown_intents_are_not_found(sqlite_services: Booking) -> None:
    response = await sqlite_services.payment_status("pi_nope")
    assert error_code(response) == common_pb2.ERROR_CODE_NOT_FOUND


async def test_intents_survive_a_restart_and_settle_in_the_new_process(
    databases: DatabaseFactory, webhook: WebhookReceiver
) -> None:
    async with booking(databases) as first:
        done = await create(first, intent_request(reservation_id="rsv_done"))
        await first.wait_for_payment(done.payment_intent_id)
        # Due in 0.6 s, but this process stops before then.
        delayed = await create(
            first,
            intent_request(
                reservation_id="rsv_delayed",
                scenario=payment_pb2.PAYMENT_SCENARIO_DELAY,
                webhook_url=webhook.url,
            ),
        )
    assert webhook.received == []

    async with booking(databases) as second:
        assert (await second.payment_status(done.payment_intent_id)).status == COMPLETED
        _, body = await webhook.next()
        event = json.loads(body)
        assert (event["payment_intent_id"], event["status"]) == (
            delayed.payment_intent_id,
            "COMPLETED",
        )
        assert (await second.payment_status(delayed.payment_intent_id)).status == COMPLETED


async def test_webhooks_are_retried_with_backoff_until_accepted(
    sqlite_services: Booking,
) -> None:
    receiver = WebhookReceiver(statuses=[500, 503])
    async with serve(receiver) as client:
        created = await create(
            sqlite_services, intent_request(webhook_url=f"{client.base_url}/hook")
        )
        deliveries = [await receiver.next() for _ in range(3)]
        await asyncio.sleep(0.2)
    bodies = {body for _, body in deliveries}
    assert len(bodies) == 1  # the same event each time, freshly signed
    for headers, body in deliveries:
        assert webhooks.verify(WEBHOOK_SECRET, body, headers["x-ticketgate-signature"], time.time())
    assert len(receiver.received) == 3
    assert await webhook_state(sqlite_services, created.payment_intent_id) == ("DELIVERED", 3)


async def test_a_refused_or_unreachable_webhook_is_given_up_without_touching_the_payment(
    sqlite_databases: DatabaseFactory,
) -> None:
    async with booking(sqlite_databases, fast_settings(webhook_max_attempts=2)) as services:
        receiver = WebhookReceiver(statuses=[401])
        async with serve(receiver) as client:
            refused = await create(services, intent_request(webhook_url=f"{client.base_url}/hook"))
            await receiver.next()
            await asyncio.sleep(0.3)
        assert len(receiver.received) == 1  # a 4xx other than 408/425/429 is final
        assert await webhook_state(services, refused.payment_intent_id) == ("FAILED", 1)

        unreachable = await create(
            services, intent_request(reservation_id="rsv_2", webhook_url="http://127.0.0.1:1/x")
        )
        for _ in range(100):
            if (await webhook_state(services, unreachable.payment_intent_id))[0] != "PENDING":
                break
            await asyncio.sleep(0.05)
        assert await webhook_state(services, unreachable.payment_intent_id) == ("FAILED", 2)
        assert (await services.payment_status(unreachable.payment_intent_id)).status == COMPLETED


class SlowReceiver(WebhookReceiver):
    """Takes `delay` seconds to answer each webhook, so a delivery is surely in flight."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.arrived = asyncio.Event()
        self.answered = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.arrived.set()
            await asyncio.sleep(self.delay)
        await super().__call__(scope, receive, send)
        if scope["type"] == "http":
            self.answered += 1


@pytest.mark.parametrize(
    ("grace", "state"),
    [
        (2.0, "DELIVERED"),  # the delivery in flight at shutdown is let finish
        (0.0, "PENDING"),  # no grace: cut off, kept pending for the next process's recovery
    ],
)
async def test_shutdown_drains_the_webhook_in_flight_within_the_grace(
    sqlite_databases: DatabaseFactory, grace: float, state: str
) -> None:
    receiver = SlowReceiver(delay=0.5)
    async with serve(receiver) as client:
        async with booking(sqlite_databases, fast_settings(stop_grace_sec=grace)) as services:
            created = await create(services, intent_request(webhook_url=f"{client.base_url}/h"))
            await asyncio.wait_for(receiver.arrived.wait(), 5)
            started = time.monotonic()
        stopped_in = time.monotonic() - started  # run_services exited: the shutdown is done
        await asyncio.sleep(0.6)  # a cut-off request would have been answered by now
    assert await webhook_state(services, created.payment_intent_id) == (state, 1)
    if grace:
        assert receiver.answered == 1
        assert stopped_in < grace + 1.0
    else:
        assert stopped_in < 0.4, "without grace nothing waits for the receiver"
