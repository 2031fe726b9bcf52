"""The composition root: builds the gateway from the settings, part by part, and the
lifecycle that starts those parts in order and stops them in reverse.

Read `compose` top to bottom: the instruments, the one Redis executor, the queue, the
database, auth, booking, the edge's guards, then the lifecycle (the start order, with why
each part sits where it does) and the gateway over the routes. Each part is built in its own
module here (queue.py, auth.py, booking.py, guards.py, routes.py, telemetry.py).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

from ticketgate.app.auth import build_auth
from ticketgate.app.booking import build_booking
from ticketgate.app.guards import build_guards
from ticketgate.app.lifecycle import Lifecycle, Part
from ticketgate.app.queue import build_queue
from ticketgate.app.routes import build_routes
from ticketgate.app.telemetry import access_log_part, metrics_part, tracing_part
from ticketgate.config import Settings, load_settings, uses_database
from ticketgate.database import Database
from ticketgate.http.core import Gateway
from ticketgate.http.cors import Cors
from ticketgate.observability.instruments import build_instruments
from ticketgate.observability.logs import configure_logging
from ticketgate.redisio.executor import build_executor
from ticketgate.waitingroom.store import QueueStore


@dataclass(frozen=True, slots=True)
class Composition:
    gateway: Gateway  # the ASGI app; its lifespan runs `lifecycle`
    lifecycle: Lifecycle


def compose(settings: Settings, store: QueueStore | None = None) -> Composition:
    """The gateway for `settings` and its lifecycle. `store` replaces the configured queue
    store (tests hand in a prepared one; its scripts are observed by whatever its own
    executor was built with)."""
    instruments = build_instruments(
        metrics=settings.metrics_enabled,
        tracing=settings.tracing,
        log_level=settings.log_level,
        logs=settings.logs,
    )
    # One Redis executor per worker: the queue store, the rate-limit sync and the idempotency
    # store all ride its pipelined connection.
    executor = build_executor(settings.redis, instruments.redis) if settings.redis.enabled else None
    queue = build_queue(settings.queue, executor, instruments.queue, store)
    database = Database.from_settings(settings.database) if uses_database(settings) else None
    auth = build_auth(settings, database)
    booking = build_booking(settings, instruments, queue, database)
    guards = build_guards(settings, executor, instruments)

    # Started top to bottom, stopped bottom to top: each part may use those above it.
    lifecycle = Lifecycle(
        [
            # First, so the embedded services' servers see it and trace their RPCs; last to
            # stop, so it sends the spans of everything else's shutdown.
            tracing_part(settings.tracing),
            access_log_part(instruments),  # flushed once nothing serves any more
            metrics_part(instruments),  # last counts flushed, then the worker's files end
            Part("redis executor", stop=executor.close) if executor is not None else None,
            Part("queue store", queue.store.start, queue.store.close),
            Part(
                "idempotency store", guards.idempotency.store.start, guards.idempotency.store.close
            ),
            Part("database", stop=database.dispose) if database is not None else None,
            Part("accounts", auth.accounts.start) if auth.accounts is not None else None,
            (
                Part("embedded services", booking.embedded.start, booking.embedded.stop)
                if booking.embedded is not None
                else None
            ),
            Part("booking clients", stop=booking.clients.close),  # aimed at the services above
            Part("authenticator", auth.preload_keys, auth.authenticator.aclose),  # accounts' keys
            # Pushes the counts still pending while the executor is open.
            Part("rate limit", guards.rate_limit.start, guards.rate_limit.stop),
            Part("ghost sweeper", queue.sweeper.start, queue.sweeper.stop),
        ]
    )
    cors = settings.cors
    gateway = Gateway(
        build_routes(settings, queue, auth, booking),
        auth.authenticator,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_sec=settings.body_timeout_sec,
        guard=guards.rate_limit,
        interceptors=(guards.idempotency,),
        observers=instruments.requests,
        auth_observer=instruments.guards,
        on_startup=lifecycle.start,
        on_shutdown=lifecycle.stop,
        cors=Cors(cors) if cors.allowed_origins else None,
    )
    return Composition(gateway, lifecycle)


def create_app(settings: Settings | None = None, store: QueueStore | None = None) -> Gateway:
    """The gateway for `settings` (from the environment when omitted); see `compose`."""
    return compose(settings or load_settings(), store).gateway


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
