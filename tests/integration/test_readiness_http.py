"""/readyz over real sockets: Redis on a throwaway server, the reference gRPC services (or a
small real health server when a test must count or bend the checks), the gateway on uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import wrappers_pb2

from tests.envs import app_env
from tests.http_server import serve
from tests.integration.conftest import SECRET
from tests.redis_server import free_port
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.database import Database
from ticketgate.database.settings import SQLITE_DRIVER, DatabaseSettings
from ticketgate.envparse import ConfigError
from ticketgate.http.settings import ReadinessSettings
from ticketgate.http.system import PROBE_CACHE_SEC, READY_TIMEOUT_SEC
from ticketgate.services.server import run_services
from ticketgate.services.settings import ServiceSettings

WEBHOOK_SECRET = "readiness-webhook-secret-readiness-webhook"


def env(redis: str, reservation: str, payment: str, **overrides: str) -> dict[str, str]:
    return app_env(
        SERVER_ENVIRONMENT="development",
        QUEUE_TOKEN_SECRET=SECRET,
        REDIS_ADDRESS=redis,
        BACKEND_RESERVATION_API_GRPC_ADDRESS=reservation,
        BACKEND_PAYMENT_API_GRPC_ADDRESS=payment,
        PAYMENT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        **overrides,
    )


@contextlib.asynccontextmanager
async def gateway(environment: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(load_settings(environment))) as client:
        yield client


@contextlib.asynccontextmanager
async def reference_services(path: Path) -> AsyncIterator[tuple[str, str]]:
    """The three reference services on free ports; yields (reservation, payment) addresses."""
    database = Database.from_settings(DatabaseSettings(url=f"{SQLITE_DRIVER}:///{path}"))
    settings = ServiceSettings(
        inventory_address="127.0.0.1:0",
        reservation_address="127.0.0.1:0",
        payment_address="127.0.0.1:0",
        webhook_secret=WEBHOOK_SECRET.encode(),
        seed_demo_event=False,
        stop_grace_sec=0.1,
    )
    try:
        async with run_services(settings, database) as running:
            yield running.reservation_address, running.payment_address
    finally:
        await database.dispose()


@dataclass
class HealthServer:
    """A real gRPC server answering only grpc.health.v1.Health/Check, as told."""

    address: str = ""
    status: int = 1  # SERVING; 2 is NOT_SERVING
    delay_sec: float = 0.0
    checks: int = 0


@contextlib.asynccontextmanager
async def health_server() -> AsyncIterator[HealthServer]:
    state = HealthServer()

    async def check(request: wrappers_pb2.StringValue, context: Any) -> wrappers_pb2.Int32Value:
        state.checks += 1
        if state.delay_sec:
            await asyncio.sleep(state.delay_sec)
        return wrappers_pb2.Int32Value(value=state.status)

    handler = grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=wrappers_pb2.StringValue.FromString,
        response_serializer=wrappers_pb2.Int32Value.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})]
    )
    state.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    try:
        yield state
    finally:
        await server.stop(None)


def assert_not_ready(response: httpx.Response, code: str, down: str) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    body: dict[str, Any] = response.json()
    assert body["status"] == "not_ready"
    assert body["error"]["code"] == code
    assert down in body["error"]["message"]
    assert body["error"]["trace_id"] == response.headers["x-request-id"]
    return body


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await client.get(path)
    return response, time.perf_counter() - started


async def test_ready_when_redis_and_both_backends_are_up(
    redis_address: str, tmp_path: Path
) -> None:
    async with (
        reference_services(tmp_path / "services.db") as (reservation, payment),
        gateway(env(redis_address, reservation, payment)) as client,
    ):
        response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "dependencies": {"redis": "connected", "reservation": "connected", "payment": "connected"},
    }


async def test_stopping_the_reservation_service_is_a_fast_503_naming_it(
    redis_address: str, tmp_path: Path
) -> None:
    # Two sets of reference services, so reservation can stop while payment stays up.
    async with contextlib.AsyncExitStack() as stack:
        reservation, _ = await stack.enter_async_context(reference_services(tmp_path / "a.db"))
        async with (
            reference_services(tmp_path / "b.db") as (_, payment),
            gateway(env(redis_address, reservation, payment)) as client,
        ):
            assert (await client.get("/readyz")).status_code == 200
            await stack.aclose()  # the reservation server stops
            await asyncio.sleep(PROBE_CACHE_SEC)  # the last "connected" ages out
            response, elapsed = await timed_get(client, "/readyz")
            body = assert_not_ready(response, "UPSTREAM_UNAVAILABLE", "reservation")
            assert body["dependencies"] == {
                "redis": "connected",
                "reservation": "unavailable",
                "payment": "connected",
            }
            assert "payment" not in body["error"]["message"]
            assert elapsed < 1.0, elapsed


async def test_an_optional_backend_that_is_down_keeps_the_gateway_ready(
    redis_address: str, tmp_path: Path
) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    async with reference_services(tmp_path / "services.db") as (reservation, _):
        optional = env(redis_address, reservation, nobody, READINESS_REQUIRED="redis,reservation")
        async with gateway(optional) as client:
            response, elapsed = await timed_get(client, "/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["dependencies"]["payment"] == "unavailable"
        assert elapsed < 1.0
        # The same outage with payment required (the default) is a 503.
        async with gateway(env(redis_address, reservation, nobody)) as client:
            assert_not_ready(await client.get("/readyz"), "UPSTREAM_UNAVAILABLE", "payment")


async def test_redis_down_is_named_with_the_queue_code(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    async with (
        reference_services(tmp_path / "services.db") as (reservation, payment),
        gateway(env(nobody, reservation, payment)) as client,
    ):
        body = assert_not_ready(await client.get("/readyz"), "QUEUE_UNAVAILABLE", "redis")
    assert body["dependencies"]["reservation"] == "connected"


async def test_probes_are_cached_and_shared_by_concurrent_requests(redis_address: str) -> None:
    async with (
        health_server() as backend,
        gateway(env(redis_address, backend.address, backend.address)) as client,
    ):
        responses = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
        assert all(r.status_code == 200 for r in responses)
        # One check per backend (both point here) for 20 requests, then none within the TTL.
        assert backend.checks == 2
        await client.get("/readyz")
        assert backend.checks == 2
        await asyncio.sleep(PROBE_CACHE_SEC + 0.05)
        await client.get("/readyz")
        assert backend.checks == 4


async def test_not_serving_is_unavailable(redis_address: str) -> None:
    async with (
        health_server() as backend,
        gateway(
            env(redis_address, backend.address, backend.address, READINESS_REQUIRED="reservation")
        ) as client,
    ):
        backend.status = 2
        body = assert_not_ready(await client.get("/readyz"), "UPSTREAM_UNAVAILABLE", "reservation")
    assert body["dependencies"]["payment"] == "unavailable"  # reported, though not required


async def test_a_hanging_backend_costs_at_most_the_ready_timeout(redis_address: str) -> None:
    async with (
        health_server() as backend,
        gateway(env(redis_address, backend.address, backend.address)) as client,
    ):
        backend.delay_sec = 5.0
        response, elapsed = await timed_get(client, "/readyz")
        assert_not_ready(response, "UPSTREAM_UNAVAILABLE", "reservation, payment")
        # Both probes ran at once: one timeout, not two (slack for a busy box).
        assert READY_TIMEOUT_SEC <= elapsed < READY_TIMEOUT_SEC + 0.4, elapsed


@pytest.mark.parametrize(
    ("raw", "required"),
    [
        ("", {"redis", "reservation", "payment"}),
        ("payment, redis", {"payment", "redis"}),
        ("RESERVATION", {"reservation"}),
        ("none", set()),
    ],
)
def test_readiness_required_setting(raw: str, required: set[str]) -> None:
    assert ReadinessSettings.from_env({"READINESS_REQUIRED": raw}).required == required


@pytest.mark.parametrize("raw", ["inventory", "redis,postgres", ",", "none,redis"])
def test_readiness_required_refuses_unknown_names(raw: str) -> None:
    with pytest.raises(ConfigError, match="READINESS_REQUIRED"):
        ReadinessSettings.from_env({"READINESS_REQUIRED": raw})
