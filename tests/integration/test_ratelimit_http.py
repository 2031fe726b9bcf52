"""Rate limiting over real sockets against a real Redis: one gateway, then two processes.

A client runs at twice its limit; what it receives must be its limit (burst + rate x elapsed),
not zero and, with two gateway processes, not twice the limit. Each test draws from its own
bucket: the gateways trust 127.0.0.1 as a proxy and the test sends a fresh X-Forwarded-For.
RATE_LIMIT_TEST_SECONDS lengthens the runs (default 3 s and 4 s, to keep CI short).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.http_server import serve
from tests.redis_server import free_port
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import Route
from ticketgate.http.core import Gateway
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
from ticketgate.middleware.ratelimit import RateLimit
from ticketgate.middleware.settings import RateLimitSettings
from ticketgate.redisio.executor import build_executor
from ticketgate.redisio.settings import RedisSettings

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("RATE_LIMIT_TEST_SECONDS", "0") or 0)
RATE, BURST = 25, 20


def fresh_client_ip() -> str:
    return f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"


def limit_env(redis_address: str = "", rate: float = RATE, burst: int = BURST) -> dict[str, str]:
    env = {
        "RATE_LIMIT_RPS": str(rate),
        "RATE_LIMIT_BURST": str(burst),
        "RATE_LIMIT_TRUSTED_PROXIES": "127.0.0.1",
    }
    if redis_address:
        env["REDIS_ADDRESS"] = redis_address
    return env


@dataclass
class Run:
    admitted: int = 0
    refused: list[httpx.Response] = field(default_factory=list)
    first_admitted: httpx.Response | None = None
    elapsed: float = 0.0  # first send to last send

    @property
    def expected(self) -> float:
        """What GCRA owes a client that never paused: the burst, then the rate."""
        return BURST + RATE * self.elapsed


async def drive(clients: list[httpx.AsyncClient], seconds: float, ip: str) -> Run:
    """Send at twice the rate for `seconds`, alternating over `clients`.

    Each request leaves at its scheduled time whether or not earlier ones were answered, so
    a slow, loaded machine still delivers twice the rate; sending one at a time let the
    response latency throttle the client below its limit (a CI flake).
    """
    loop = asyncio.get_running_loop()
    pace = 2 * RATE
    run = Run()
    start = loop.time()
    sent: list[asyncio.Task[httpx.Response]] = []
    for i in range(int(seconds * pace)):
        delay = start + i / pace - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        run.elapsed = loop.time() - start
        client = clients[i % len(clients)]
        sent.append(loop.create_task(client.get("/ping", headers={"x-forwarded-for": ip})))
    for response in await asyncio.gather(*sent):
        if response.status_code == 200:
            run.admitted += 1
            run.first_admitted = run.first_admitted or response
        else:
            assert response.status_code == 429, response.text
            run.refused.append(response)
    return run


def gateway(
    redis_address: str, rate: float = RATE, burst: int = BURST
) -> tuple[Gateway, RateLimit]:
    executor = build_executor(RedisSettings(address=redis_address))
    limit = RateLimit(RateLimitSettings.from_env(limit_env(rate=rate, burst=burst)), executor)

    async def ping(request: Request) -> Response:
        return Response.json(200, {"ok": True})

    async def shutdown() -> None:
        await limit.stop()
        await executor.close()

    app = Gateway(
        [Route("GET", "/ping", ping)],
        DevBypassAuthenticator(False),
        max_body_bytes=1024,
        guard=limit,
        on_startup=limit.start,
        on_shutdown=shutdown,
    )
    return app, limit


@pytest.mark.parametrize("seconds", [SECONDS or 3.0])
async def test_one_gateway_at_twice_the_limit_gets_the_limit(
    redis_address: str, seconds: float
) -> None:
    app, limit = gateway(redis_address)
    async with serve(app) as client:
        run = await drive([client], seconds, fresh_client_ip())
    assert run.admitted == pytest.approx(run.expected, rel=0.10)
    assert len(run.refused) > 0.3 * run.admitted  # it really was overloaded
    assert limit.describe()["sync_rounds"] > 0  # and the sync ran against Redis meanwhile

    assert run.first_admitted is not None
    ok = run.first_admitted.headers
    assert "x-ratelimit-remaining" not in ok  # RATE_LIMIT_HEADERS=ietf, the default
    assert ok["ratelimit-policy"] == f'"default";q={BURST};w=1'
    assert ok["ratelimit"] == f'"default";r={BURST - 1};t=1'

    refused = run.refused[0]
    assert refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["message"]
    assert len(error["trace_id"]) == 32
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-ratelimit-limit"] == str(BURST)
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) >= 1
    assert refused.headers["ratelimit-policy"] == f'"default";q={BURST};w=1'
    assert refused.headers["ratelimit"] == f'"default";r=0;t={refused.headers["x-ratelimit-reset"]}'


async def test_redis_unreachable_keeps_limiting_locally_and_never_fails_requests() -> None:
    # 1/s with a burst of 5: eight quick requests are 5 admitted, 3 refused (unless they
    # took over a second), and 1.1 s later one more is admitted.
    app, limit = gateway(f"127.0.0.1:{free_port()}", rate=1, burst=5)  # nothing listens there
    ip = fresh_client_ip()
    async with serve(app) as client:
        statuses = [
            (await client.get("/ping", headers={"x-forwarded-for": ip})).status_code
            for _ in range(8)
        ]
        await asyncio.sleep(1.1)  # a few failed sync rounds meanwhile
        later = (await client.get("/ping", headers={"x-forwarded-for": ip})).status_code
    assert statuses == [200] * 5 + [429] * 3
    assert later == 200  # refilled; the failing sync neither blocked nor poisoned it
    assert limit.describe()["sync_rounds"] > 0  # it did try Redis


# -- two server processes, one budget -------------------------------------------------------


def _wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway process exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"gateway on port {port} did not become healthy")


@pytest.fixture
def two_gateways(redis_address: str) -> Iterator[list[int]]:
    """Two uvicorn processes of tests/integration/ratelimit_app.py sharing one Redis."""
    env = {**os.environ, **limit_env(redis_address), "PYTHONPATH": str(ROOT)}
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tests.integration.ratelimit_app:create",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--http",
                "httptools",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
        )
        for port in ports
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            _wait_healthy(port, process)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
async def clients(two_gateways: list[int]) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{two_gateways[0]}", timeout=5) as a,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{two_gateways[1]}", timeout=5) as b,
    ):
        yield [a, b]


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [SECONDS or 4.0])
async def test_two_gateway_processes_share_one_budget(
    clients: list[httpx.AsyncClient], seconds: float
) -> None:
    run = await drive(clients, seconds, fresh_client_ip())
    # Each process alone would admit all of its half (it runs at exactly its rate): twice
    # the limit. Shared, the pair admits the limit.
    assert run.admitted == pytest.approx(run.expected, rel=0.15)
    assert run.admitted < 1.3 * run.expected
    assert len(run.refused) > 0.3 * run.admitted
