"""The wired app's lifecycle: the order its parts start in (stopped in reverse), pinned for
a configuration that has every part, and what that order buys at shutdown, on real
sockets, a real Redis and the embedded gRPC services.

The mechanism (start in order, stop in reverse, only what started) is tested in
tests/unit/test_app_lifecycle.py.
"""

from __future__ import annotations

import dataclasses
import uuid

import redis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.http_server import serve
from tests.integration.conftest import STATUS, dev_env
from ticketgate.app import compose, create_app
from ticketgate.config import load_settings
from ticketgate.observability import tracing

# Each part may use the parts above it: it starts after them and stops before them.
FULL_START_ORDER = [
    "tracing",  # the embedded services' servers, started later, trace their RPCs
    "access log",
    "metrics",
    "redis executor",  # closed after everything that talks to Redis
    "queue store",
    "idempotency store",
    "database",  # disposed after accounts and the services that use it
    "accounts",
    "embedded services",
    "booking clients",  # aimed at the embedded services once they listen
    "authenticator",  # preloads the accounts' signing keys
    "rate limit",  # its last push goes through the executor
    "ghost sweeper",
]


async def test_an_app_with_every_part_starts_them_in_this_order_and_serves(
    redis_address: str,
) -> None:
    settings = load_settings(
        dev_env(
            REDIS_ADDRESS=redis_address,
            RATE_LIMIT_ENABLED="true",
            OBSERVABILITY_TRACING_ENABLED="true",
            OBSERVABILITY_SAMPLE_RATE="1",
            OBSERVABILITY_METRICS_ENABLED="true",
            LOG_LEVEL="info",
            LOG_ACCESS="true",
        )
    )
    exporter = InMemorySpanExporter()
    settings = dataclasses.replace(
        settings, tracing=dataclasses.replace(settings.tracing, exporter=exporter)
    )
    app = compose(settings)
    assert app.lifecycle.names == FULL_START_ORDER
    async with serve(app.gateway) as http:
        assert tracing.is_active()
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text  # Redis and both embedded services up
    assert not tracing.is_active()  # stopped with the app, last: it sent what was waiting
    # The readiness request and the embedded services' answers to its health probes (SERVER
    # spans of their gRPC servers) were still waiting; tracing's stop sent them.
    names = {span.name for span in exporter.get_finished_spans()}
    assert names == {"GET /readyz", "grpc.health.v1.Health/Check"}


async def test_an_app_with_only_what_it_cannot_do_without_leaves_the_other_parts_out() -> None:
    """The memory store, no instruments, no accounts, backends elsewhere: no executor,
    database, services or telemetry parts; the ones kept keep their relative order."""
    env = dev_env(
        BACKEND_EMBEDDED="false",
        BACKEND_RESERVATION_API_GRPC_ADDRESS="127.0.0.1:1",  # never dialled here
        BACKEND_PAYMENT_API_GRPC_ADDRESS="127.0.0.1:1",
        PAYMENT_WEBHOOK_SECRET="lifecycle-webhook-secret-lifecycle",
        AUTH_ACCOUNTS_ENABLED="false",
        OBSERVABILITY_METRICS_ENABLED="false",
        LOG_ACCESS="false",
    )
    app = compose(load_settings(env))
    assert app.lifecycle.names == [
        "queue store",
        "idempotency store",
        "booking clients",
        "authenticator",
        "rate limit",
        "ghost sweeper",
    ]
    async with serve(app.gateway) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_the_rate_limit_pushes_its_last_counts_before_the_executor_closes(
    redis_address: str, redis_sync: redis.Redis
) -> None:
    """The periodic sync never runs (one a minute), so what Redis holds for this client after
    the app stopped was pushed by the rate limit's stop, through an executor still open."""
    client = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    key = f"rl:{{ip:{client}}}:tat"
    redis_sync.delete(key)
    env = dev_env(
        REDIS_ADDRESS=redis_address,
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_SYNC_INTERVAL_MS="60000",
        RATE_LIMIT_TRUSTED_PROXIES="127.0.0.1",
    )
    async with serve(create_app(load_settings(env))) as http:
        for _ in range(3):
            response = await http.get(STATUS, headers={"X-Forwarded-For": client})
            assert "ratelimit-policy" in response.headers, response.headers
        assert not redis_sync.exists(key)  # nothing pushed while serving
    assert redis_sync.exists(key)
