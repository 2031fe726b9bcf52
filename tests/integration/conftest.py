"""Gateways on real sockets for the HTTP-level tests, on either store.

`gateway` builds the app the way production does (`create_app` from settings read out of an
environment mapping), so the Redis variant goes through REDIS_ADDRESS, the executor and the
Lua scripts, and the memory variant through the embedded default.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from tests.envs import app_env
from tests.http_server import gateway_config, listening_socket, serve
from ticketgate.app import create_app
from ticketgate.config import load_settings

JOIN = "/api/v1/queue/join"
STATUS = "/api/v1/queue/status"
ENTER = "/api/v1/queue/enter"
LEAVE = "/api/v1/queue/leave"

SECRET = "integration-secret-integration-secret"
DEV = {"Authorization": "Bearer dev-super-key-local-testing"}


def as_user(n: int | str) -> dict[str, str]:
    """Headers of development user `load-test-<n>` (one bypass token per virtual user)."""
    return {"Authorization": f"Bearer load-test-bypass-token-{n}"}


def dev_env(**overrides: str) -> dict[str, str]:
    """A development environment: bypass tokens on, a fixed secret, the memory store."""
    return app_env(SERVER_ENVIRONMENT="development", QUEUE_TOKEN_SECRET=SECRET, **overrides)


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is `status` with the error envelope naming `code` and the trace id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str)
    assert error["message"]
    assert len(error["trace_id"]) == 32
    assert int(error["trace_id"], 16) >= 0
    assert response.headers["x-request-id"] == error["trace_id"]
    return body


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def base_env(store_kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of the store under test (Redis only asked for when it is used)."""
    if store_kind == "redis":
        return dev_env(REDIS_ADDRESS=request.getfixturevalue("redis_address"))
    return dev_env()


@pytest.fixture
def gateway(base_env: dict[str, str]) -> GatewayFactory:
    """`async with gateway(QUEUE_X="...") as client:` serves an app with those overrides."""

    @contextlib.asynccontextmanager
    async def start(**overrides: str) -> AsyncIterator[httpx.AsyncClient]:
        settings = load_settings({**base_env, **overrides})
        async with serve(create_app(settings)) as client:
            yield client

    return start


@pytest.fixture
async def client(gateway: GatewayFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with default tunables on the store under test."""
    async with gateway() as http:
        yield http


async def join(client: httpx.AsyncClient, event_id: str, **kw: Any) -> str:
    response = await client.post(JOIN, json={"event_id": event_id}, **kw)
    assert response.status_code == 202, response.text
    token: str = response.json()["waiting_token"]
    return token


async def eventually(
    probe: Callable[[], Awaitable[bool]], within: float = 5.0, step: float = 0.05
) -> float:
    """Wait until `probe()` is true; return the seconds it took (fails after `within` seconds)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await probe():
        if loop.time() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(step)
    return loop.time() - start


@contextlib.contextmanager
def threaded_gateway(env: dict[str, str]) -> Iterator[str]:
    """Serve an app from a background thread with its own event loop; yield its base URL.

    Hypothesis drives synchronous tests, so the property tests talk to a server that lives
    outside the test's (absent) event loop.
    """
    sock = listening_socket()
    port = int(sock.getsockname()[1])
    config = gateway_config(create_app(load_settings(env)), loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("gateway thread died during start-up")
            threading.Event().wait(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
