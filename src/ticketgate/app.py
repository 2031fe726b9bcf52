"""Builds the ASGI application: store, waiting room, auth, traffic control, routes, lifespan.

One Redis executor per worker serves the queue store, the rate-limit sync and the
idempotency store, so all of them ride the same pipelined connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
from collections.abc import Awaitable, Callable

from ticketgate.accounts.keys import LocalJwksSource, TokenSigner
from ticketgate.accounts.service import AccountService
from ticketgate.backends.booking_clients import BookingClients
from ticketgate.backends.health import GrpcHealthProbe
from ticketgate.background import cancel_and_wait
from ticketgate.config import Settings, load_settings
from ticketgate.database import Database
from ticketgate.http.accounts import AccountRoutes
from ticketgate.http.admin import AdminRoutes
from ticketgate.http.booking import BookingRoutes
from ticketgate.http.core import Gateway
from ticketgate.http.cors import Cors
from ticketgate.http.docs import SwaggerRoutes
from ticketgate.http.frontdoor import Frontdoor
from ticketgate.http.metrics import MetricsRoutes
from ticketgate.http.queue import QueueRoutes
from ticketgate.http.system import SystemRoutes
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
from ticketgate.middleware.idempotency import build_idempotency
from ticketgate.middleware.jwks import JwksSource
from ticketgate.middleware.jwt_auth import JwtAuthenticator
from ticketgate.middleware.ratelimit import RateLimit
from ticketgate.observability import prometheus
from ticketgate.observability.instruments import build_instruments
from ticketgate.observability.logs import configure_logging
from ticketgate.observability.queue_gauges import QueueGauges
from ticketgate.observability.scrape import ScrapeSource
from ticketgate.observability.tracing import Tracing, start_tracing
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.queuestore.redis_store import RedisQueueStore
from ticketgate.redisio.executor import RedisExecutor, build_executor
from ticketgate.services.inventory import DEMO_EVENT_ID
from ticketgate.services.server import run_services
from ticketgate.waitingroom.events import EventAdmin
from ticketgate.waitingroom.model import QueueUnavailable
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.store import QueueStore

log = logging.getLogger("ticketgate")
Hook = Callable[[], Awaitable[None]]


def create_app(settings: Settings | None = None, store: QueueStore | None = None) -> Gateway:
    """The gateway for `settings` (from the environment when omitted).

    `store` replaces the configured queue store (tests hand in a prepared one; its scripts
    are observed by whatever its own executor was built with).
    """
    settings = settings or load_settings()
    startup: list[Hook] = []
    tracing_settings = settings.tracing
    instruments = build_instruments(
        metrics=settings.metrics_enabled,
        tracing=tracing_settings,
        log_level=settings.log_level,
        logs=settings.logs,
    )
    metrics_flusher = instruments.metrics_flusher
    if metrics_flusher is not None:
        startup.append(metrics_flusher.start)
    scrape_sources: list[ScrapeSource] = []
    executor: RedisExecutor | None = (
        build_executor(settings.redis, instruments.redis) if settings.redis.enabled else None
    )
    if store is None:
        store = (
            RedisQueueStore(executor, settings.queue)
            if executor is not None
            else MemoryQueueStore(settings.queue)
        )
    access = instruments.access
    tracings: list[Tracing] = []

    room = WaitingRoom(store, settings.queue, instruments.queue)
    routes = QueueRoutes(room).routes()

    database: Database | None = None
    if settings.accounts_enabled or settings.services is not None:
        database = Database.from_settings(settings.database)

    jwt_settings = settings.jwt
    source: JwksSource | None = None
    if settings.accounts_enabled and database is not None:
        signer = TokenSigner(database, settings.accounts.signing_key_pem)
        accounts = AccountService(database, signer, settings.accounts)
        startup.append(accounts.start)
        routes += AccountRoutes(accounts).routes()
        source = LocalJwksSource(signer)
        # Our own tokens carry our issuer and audience; check them unless told otherwise.
        jwt_settings = dataclasses.replace(
            jwt_settings,
            issuer=jwt_settings.issuer or (settings.accounts.issuer,),
            audience=jwt_settings.audience or (settings.accounts.audience,),
        )
    cache = jwt_settings.jwks_cache(source)
    authenticator = JwtAuthenticator(
        jwt_settings, cache, DevBypassAuthenticator(settings.dev_bypass_enabled)
    )

    backends = settings.backends
    clients = BookingClients(backends, observers=instruments.rpc)
    routes += BookingRoutes(clients.booking_service(room), backends.webhook_secret).routes()
    events = EventAdmin(room)  # operators: /api/v1/admin/events
    routes += AdminRoutes(events).routes()
    if settings.metrics_enabled:
        scrape_sources.append(QueueGauges(events))  # queue depth and admission rate per event
    services = contextlib.AsyncExitStack()
    if settings.services is not None and database is not None:
        service_settings, service_db = settings.services, database

        async def start_services() -> None:
            running = await services.enter_async_context(
                run_services(service_settings, service_db, interceptors=instruments.services)
            )
            clients.use_embedded(running.reservation_address, running.payment_address)
            if service_settings.seed_demo_event and not settings.queue.auto_create_events:
                # The demo seats exist, so its queue does too (events must be registered here).
                with contextlib.suppress(QueueUnavailable):
                    await events.ensure_registered(DEMO_EVENT_ID)

        startup.append(start_services)

    rate_limit = RateLimit(settings.rate_limit, executor, observer=instruments.guards)
    idempotency = build_idempotency(
        settings.idempotency,
        executor,
        rate_limit.keys.client_ip,
        instruments.guards,
    )

    if settings.metrics_enabled:
        routes += MetricsRoutes(scrape_sources).routes()

    routes += SwaggerRoutes().routes()
    routes += Frontdoor(
        settings.frontdoor,
        events,
        accounts_enabled=settings.accounts_enabled,
    ).routes()
    cors_settings = settings.cors
    system = SystemRoutes(
        settings.environment,
        settings.redis,
        store,
        {
            "reservation": GrpcHealthProbe(clients.reservations),
            "payment": GrpcHealthProbe(clients.payments),
        },
        settings.readiness,
    )
    routes += system.routes(routes)
    sweeper: list[asyncio.Task[None]] = []

    async def on_startup() -> None:
        if tracing_settings.enabled:
            # Here, in the worker: spans are shipped from the worker's loop (and first, so
            # the embedded services' servers see it and trace their RPCs too).
            tracings.append(start_tracing(tracing_settings))
            tracings[-1].start()
        await store.start()
        await idempotency.store.start()
        for hook in startup:
            await hook()
        if cache is not None:
            await cache.preload()
        await rate_limit.start()
        sweeper.append(
            asyncio.get_running_loop().create_task(
                sweep_ghosts(room, settings.queue.sweep_interval_ms / 1000)
            )
        )

    async def on_shutdown() -> None:
        for task in sweeper:
            await cancel_and_wait(task)
        await rate_limit.stop()  # pushes what is pending before the executor closes
        await authenticator.aclose()
        await clients.close()
        await services.aclose()
        if database is not None:
            await database.dispose()
        await idempotency.store.close()
        await store.close()
        if executor is not None:
            await executor.close()
        if metrics_flusher is not None:
            await metrics_flusher.stop()  # the last counts, before the files are finalised
            prometheus.mark_process_dead()
        if access is not None:
            access.flush()
        for tracing in tracings:  # sends the spans still waiting
            await tracing.stop()

    return Gateway(
        routes,
        authenticator,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_sec=settings.body_timeout_sec,
        guard=rate_limit,
        interceptors=(idempotency,),
        observers=instruments.requests,
        auth_observer=instruments.guards,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        cors=Cors(cors_settings) if cors_settings.allowed_origins else None,
    )


async def sweep_ghosts(room: WaitingRoom, interval_sec: float) -> None:
    """The ghost sweeper, an app task (started with the app, cancelled at its shutdown):
    one WaitingRoom.sweep_once round every `interval_sec`. A round that finds the store
    unavailable was reported by the room; the next round tries again."""
    while True:
        await asyncio.sleep(interval_sec)
        try:
            removed = await room.sweep_once()
        except QueueUnavailable:
            continue
        if removed:
            log.info("swept %d ghost waiters", removed)


# Generation-0 collections every 50k allocations instead of 700. With many long-lived objects
# (the rate limiter tracks one state per client; 65k clients in the benchmark) CPython's
# default thresholds ran collections often enough to stall the loop: p99 84 ms with the
# defaults against 14-16 ms with these, one worker, 65,536 clients (see docs/benchmarks.md).
GC_THRESHOLDS = (50_000, 50, 100)


def tune_garbage_collector() -> None:
    """Freeze what start-up made (modules, routes, settings: never garbage) and collect
    less often. A server-process setting, so it lives here, not in `create_app`."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def app_factory() -> Gateway:
    """Entry for `uvicorn --factory` in worker processes (logging is set up here, per worker:
    uvicorn's spawned workers inherit no handlers)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.logs)
    app = create_app(settings)
    tune_garbage_collector()
    return app
