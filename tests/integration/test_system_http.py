"""Health, readiness, version and the OpenAPI document over a real socket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.http_server import serve
from tests.integration.conftest import dev_env, eventually
from tests.redis_server import RedisServer
from ticketgate import __version__
from ticketgate.app import create_app
from ticketgate.config import load_settings

QUEUE_OPERATIONS = {
    ("post", "/api/v1/queue/join"),
    ("get", "/api/v1/queue/status"),
    ("post", "/api/v1/queue/enter"),
    ("delete", "/api/v1/queue/leave"),
    ("post", "/api/v1/queue/leave"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/version"),
    ("get", "/openapi.json"),
}
EVERYTHING_UP = {"redis": "connected", "reservation": "connected", "payment": "connected"}


async def test_healthz_is_alive_with_a_utc_timestamp(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=5)


async def test_healthz_ignores_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Authorization": "Basic broken"})
    assert response.status_code == 200


async def test_readyz_on_the_memory_store_says_redis_is_not_configured() -> None:
    async with serve(create_app(load_settings(dev_env()))) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    # Embedded mode: the reference services run in-process, so they are up too.
    assert response.json() == {
        "status": "ready",
        "dependencies": {
            "redis": "not_configured",
            "reservation": "connected",
            "payment": "connected",
        },
    }


async def test_readyz_on_redis_says_connected(redis_address: str) -> None:
    async with serve(create_app(load_settings(dev_env(REDIS_ADDRESS=redis_address)))) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "dependencies": EVERYTHING_UP}


async def _assert_not_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["dependencies"] == {**EVERYTHING_UP, "redis": "unavailable"}
    assert body["error"]["code"] == "QUEUE_UNAVAILABLE"
    assert body["error"]["message"]
    assert body["error"]["trace_id"] == response.headers["x-request-id"]


async def test_readyz_is_503_while_redis_is_down_and_200_once_back(
    own_redis: RedisServer,
) -> None:
    async with serve(create_app(load_settings(dev_env(REDIS_ADDRESS=own_redis.address)))) as client:
        assert (await client.get("/readyz")).status_code == 200
        own_redis.stop()
        await _assert_not_ready(client)
        own_redis.start()

        async def ready() -> bool:
            response = await client.get("/readyz")
            return response.status_code == 200 and response.json()["dependencies"] == EVERYTHING_UP

        await eventually(ready, within=5.0)


async def test_readyz_is_503_while_redis_hangs(own_redis: RedisServer) -> None:
    async with serve(create_app(load_settings(dev_env(REDIS_ADDRESS=own_redis.address)))) as client:
        assert (await client.get("/readyz")).status_code == 200
        own_redis.pause()
        try:
            await _assert_not_ready(client)
        finally:
            own_redis.resume()


async def test_readyz_is_503_when_redis_was_never_up() -> None:
    server = RedisServer()  # a free port nobody listens on
    async with serve(create_app(load_settings(dev_env(REDIS_ADDRESS=server.address)))) as client:
        await _assert_not_ready(client)
        # Liveness is not readiness: the process itself is fine.
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    ("env", "store"),
    [({}, "memory (embedded)"), ({"REDIS_ADDRESS": "127.0.0.1:1"}, "redis")],
)
async def test_version_names_the_build_environment_and_store(
    env: dict[str, str], store: str
) -> None:
    async with serve(create_app(load_settings(dev_env(**env)))) as client:
        response = await client.get("/version")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == __version__
    assert body["environment"] == "development"
    assert body["store"] == store
    assert body["python"].startswith("3.")


async def test_openapi_documents_every_route_the_gateway_serves() -> None:
    app = create_app(load_settings(dev_env()))
    async with serve(app) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    spec = response.json()
    assert spec["openapi"].startswith("3.1")
    documented = {(m, path) for path, ops in spec["paths"].items() for m in ops}
    served = {(route.method.lower(), route.path) for route in app.routes}
    assert documented == served
    assert documented >= QUEUE_OPERATIONS


async def test_openapi_schemas_are_the_ones_the_handlers_validate_with(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    join = spec["paths"]["/api/v1/queue/join"]["post"]
    assert join["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/JoinRequest"
    )
    assert schemas["JoinRequest"]["properties"]["event_id"]["maxLength"] == 64
    assert join["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/JoinResponse"
    )
    status_props = schemas["StatusResponse"]["properties"]
    assert {"poll_after_ms", "eta_confidence", "ready_for_entry"} <= set(status_props)
    assert set(status_props["status"]["enum"]) == {"waiting", "ready", "admitted", "expired"}
    enter = spec["paths"]["/api/v1/queue/enter"]["post"]
    assert enter["security"] == [{"bearerAuth": []}]
    for code in ("401", "403", "404", "409", "410", "429", "503"):
        assert enter["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorEnvelope"
        )
    status = spec["paths"]["/api/v1/queue/status"]["get"]
    assert [(p["name"], p["required"]) for p in status["parameters"]] == [("token", True)]
    events = spec["paths"]["/api/v1/admin/events"]["get"]
    assert [(p["name"], p["required"]) for p in events["parameters"]] == [("limit", False)]
