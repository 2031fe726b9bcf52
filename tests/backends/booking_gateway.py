"""A gateway with the queue and booking routes on a real socket, for the booking HTTP tests.

Built the way app/ builds it (BookingClients under a BookingService under BookingRoutes,
QueueRoutes, the idempotency interceptor, the development bypass authenticator), on either
queue store, aimed at whatever gRPC address the test hands in (fake servers, the reference
services, or nothing listening).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from tests.http_server import serve
from ticketgate import webhooks
from ticketgate.backends.booking_clients import BookingClients
from ticketgate.backends.settings import BackendSettings
from ticketgate.booking.service import BookingService
from ticketgate.http.booking import BookingRoutes
from ticketgate.http.core import Gateway
from ticketgate.http.queue import QueueRoutes
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
from ticketgate.middleware.idempotency import build_idempotency
from ticketgate.middleware.settings import IdempotencySettings
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.queuestore.redis_store import RedisQueueStore
from ticketgate.redisio.executor import build_executor
from ticketgate.redisio.settings import RedisSettings
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings
from ticketgate.waitingroom.store import QueueStore

WEBHOOK_SECRET = "webhook-secret-webhook-secret-webhook!"
QUEUE_SECRET = b"booking-test-secret-booking-test-secret"
RESERVATIONS = "/api/v1/reservations"
INTENT = "/api/v1/payment/intent"
WEBHOOK = "/api/v1/payment/webhook"

# Everyone in the first 100k is admitted at once: these tests are about booking, not pacing.
OPEN_DOOR = QueueSettings(
    token_secret=QUEUE_SECRET,
    admission_window=100_000,
    min_wait=(MinWaitRule(100_000, 0),),
    bucket_capacity=100_000,
    bucket_refill_per_sec=100_000.0,
)


def user(n: int | str) -> dict[str, str]:
    return {"Authorization": f"Bearer load-test-bypass-token-{n}"}


def backend_settings(address: str, **overrides: object) -> BackendSettings:
    base = BackendSettings(
        reservation_address=address,
        payment_address=address,
        reservation_timeout_ms=600,
        payment_timeout_ms=400,
        breaker_failures=3,
        breaker_reset_sec=0.5,
        webhook_secret=WEBHOOK_SECRET,
        webhook_url="http://127.0.0.1:1/api/v1/payment/webhook",
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class BookingGateway:
    http: httpx.AsyncClient
    routes: BookingRoutes
    booking: BookingService
    clients: BookingClients
    room: WaitingRoom


@contextlib.asynccontextmanager
async def booking_gateway(
    settings: BackendSettings,
    queue: QueueSettings = OPEN_DOOR,
    redis_address: str = "",
    webhook_to_self: bool = False,
) -> AsyncIterator[BookingGateway]:
    """Serve queue + booking routes; Redis store when `redis_address` is given.

    `webhook_to_self` points the webhook URL handed to the payment service at this gateway's
    own socket (known only once it listens), as PAYMENT_WEBHOOK_URL does in production.
    """
    store: QueueStore
    executor = build_executor(RedisSettings(address=redis_address)) if redis_address else None
    if executor is not None:
        redis_store = RedisQueueStore(executor, queue)
        await redis_store.start()
        store = redis_store
    else:
        store = MemoryQueueStore(queue)
    room = WaitingRoom(store, queue)
    clients = BookingClients(settings)
    booking = clients.booking_service(room)
    routes = BookingRoutes(booking, settings.webhook_secret)
    idempotency = build_idempotency(IdempotencySettings(), None)

    async def shutdown() -> None:
        await clients.close()
        await idempotency.store.close()
        await store.close()  # the Redis store closes its executor

    app = Gateway(
        QueueRoutes(room).routes() + routes.routes(),
        DevBypassAuthenticator(True),
        max_body_bytes=16_384,
        interceptors=(idempotency,),
        on_shutdown=shutdown,
    )
    async with serve(app) as http:
        if webhook_to_self:
            booking.webhook_url = f"{http.base_url}".rstrip("/") + WEBHOOK
        yield BookingGateway(http, routes, booking, clients, room)


async def admitted(http: httpx.AsyncClient, event_id: str, who: int | str) -> str:
    """join + enter as user `who`; the single-use reservation token."""
    joined = await http.post("/api/v1/queue/join", json={"event_id": event_id}, headers=user(who))
    assert joined.status_code == 202, joined.text
    entered = await http.post(
        "/api/v1/queue/enter",
        json={"waiting_token": joined.json()["waiting_token"]},
        headers=user(who),
    )
    assert entered.status_code == 200, entered.text
    token: str = entered.json()["reservation_token"]
    return token


async def reserve(
    http: httpx.AsyncClient,
    event_id: str,
    who: int | str,
    token: str,
    key: str,
    **body: object,
) -> httpx.Response:
    payload: dict[str, object] = {"event_id": event_id, "reservation_token": token, **body}
    if "seat_ids" not in body and "quantity" not in body:
        payload["quantity"] = 1
    return await http.post(
        RESERVATIONS, json=payload, headers={**user(who), "Idempotency-Key": key}
    )


def signed(body: bytes, secret: str = WEBHOOK_SECRET, now: float | None = None) -> dict[str, str]:
    header = webhooks.sign(secret, body, time.time() if now is None else now)
    return {webhooks.HEADER: header, "Content-Type": "application/json"}
