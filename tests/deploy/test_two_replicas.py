"""The compose topology as real processes on loopback: two `ticketgate serve` replicas started
with docs/operations.md's production settings, behind HAProxy running deploy/haproxy's config,
on one Redis, one PostgreSQL database and one `ticketgate services`.

What broke when two replicas first ran on default settings (a seat sold twice, each refusing
the other's login tokens) is checked across replicas here: a login from one is accepted by the
other, a waiting token and a join's Idempotency-Key are shared, two fans racing for one seat
through different replicas get one hold, and the payment webhook, sent through the load
balancer, confirms the booking whichever replica receives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import text

from tests.deploy.test_operations_doc import SETTINGS
from tests.deploy.tools import DEPLOY, tool
from tests.redis_server import free_port
from tests.required import backend_unavailable
from tests.unit.test_accounts_database import TEST_DATABASE_URL, postgres_unreachable
from ticketgate.database import Database

WEBHOOK_SECRET = "w" * 48
PASSWORD = "correct horse 42"
EVENT = "evt_2025_1001"  # the reference services' demo event, seeded at start


@dataclass
class Stack:
    lb: str
    gateways: list[str]


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A database of its own on the test PostgreSQL server, dropped afterwards."""
    reason = await postgres_unreachable()
    if reason:
        backend_unavailable(reason)
    name = f"tg_replicas_{uuid.uuid4().hex[:12]}"
    admin = Database(TEST_DATABASE_URL, pool_size=1)
    async with admin.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    parts = urlsplit(TEST_DATABASE_URL)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        async with admin.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def loopback_haproxy_config(port: int, gateways: list[int]) -> str:
    """deploy/haproxy/haproxy.cfg with the replicas' loopback ports in place of Docker's DNS."""
    return haproxy_config(f"127.0.0.1:{port}", [f"127.0.0.1:{p}" for p in gateways])


def haproxy_config(bind: str, gateways: list[str]) -> str:
    """deploy/haproxy/haproxy.cfg bound to `bind`, with fixed `host:port` servers in place
    of Docker's DNS."""
    config = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    config = re.sub(r"\nresolvers docker\n(    .*\n)+", "\n", config)
    config = config.replace(" init-addr none resolvers docker", "")
    config = config.replace("bind :8080", f"bind {bind}")
    # 20,000 connections need ~40,000 descriptors, more than a test process may open here
    # (compose raises the container's limit; see deploy/compose.yaml).
    config = config.replace("maxconn 20000", "maxconn 2000")
    servers = "".join(f"    server gw{i} {a} check\n" for i, a in enumerate(gateways))
    config, replaced = re.subn(r"    server-template .*\n", servers, config)
    assert replaced == 1
    return config


def _wait_ready(url: str, processes: list[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"a process of the stack exited:\n{_tail(logs)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} never became ready:\n{_tail(logs)}")
        time.sleep(0.2)


def _tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))


@contextlib.contextmanager
def running(
    logs: Path, name: str, command: list[str], env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    with (logs / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def stack(tmp_path: Path, redis_address: str, key_file: Path) -> AsyncIterator[Stack]:
    async with fresh_database() as database_url:
        with contextlib.ExitStack() as processes:
            yield await asyncio.to_thread(
                _start_stack, processes, tmp_path, redis_address, key_file, database_url
            )


def _start_stack(
    processes: contextlib.ExitStack,
    tmp_path: Path,
    redis_address: str,
    key_file: Path,
    database_url: str,
) -> Stack:
    lb_port, reservation, payment, inventory = (free_port() for _ in range(4))
    gateway_ports = [free_port(), free_port()]
    cli = [sys.executable, "-m", "ticketgate.cli"]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SERVER_", "REDIS_"))}
    base["TMPDIR"] = str(tmp_path)
    services = processes.enter_context(
        running(
            tmp_path,
            "services",
            [*cli, "services"],
            {
                **base,
                "SERVER_ENVIRONMENT": "production",
                "DATABASE_URL": database_url,
                "PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "PAYMENT_WEBHOOK_URL": f"http://127.0.0.1:{lb_port}/api/v1/payment/webhook",
                "SERVICES_INVENTORY_ADDRESS": f"127.0.0.1:{inventory}",
                "SERVICES_RESERVATION_ADDRESS": f"127.0.0.1:{reservation}",
                "SERVICES_PAYMENT_ADDRESS": f"127.0.0.1:{payment}",
                "SERVICES_SEED_DEMO_EVENT": "true",
            },
        )
    )
    # docs/operations.md's block, pointed at this machine's Redis, PostgreSQL and services.
    documented = {name: value for name, (value, _) in SETTINGS.items()}
    gateway_env = {
        **base,
        **documented,
        "REDIS_ADDRESS": redis_address,
        "REDIS_CLUSTER_MODE": "false",
        "DATABASE_URL": database_url,
        "AUTH_SIGNING_KEY_FILE": str(key_file),
        "BACKEND_RESERVATION_API_GRPC_ADDRESS": f"127.0.0.1:{reservation}",
        "BACKEND_PAYMENT_API_GRPC_ADDRESS": f"127.0.0.1:{payment}",
        "PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PAYMENT_WEBHOOK_URL": f"http://127.0.0.1:{lb_port}/api/v1/payment/webhook",
        "RATE_LIMIT_TRUSTED_PROXIES": "127.0.0.1",
        "QUEUE_AUTO_CREATE_EVENTS": "true",
        "AUTH_ARGON2_TIME_COST": "1",
        "AUTH_ARGON2_MEMORY_KIB": "1024",
        "LOG_LEVEL": "warning",
    }
    assert int(gateway_env["SERVER_REPLICAS_EXPECTED"]) > 1  # the fleet check is on
    gateways = [
        processes.enter_context(
            running(
                tmp_path,
                f"gateway{i}",
                [*cli, "serve"],
                {**gateway_env, "SERVER_PORT": str(port)},
            )
        )
        for i, port in enumerate(gateway_ports)
    ]
    config = tmp_path / "haproxy.cfg"
    config.write_text(loopback_haproxy_config(lb_port, gateway_ports))
    haproxy = processes.enter_context(
        running(tmp_path, "haproxy", [tool_haproxy(), "-db", "-f", str(config)], base)
    )
    everything = [services, *gateways, haproxy]
    for port in gateway_ports:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", everything, tmp_path)
    _wait_ready(f"http://127.0.0.1:{lb_port}/readyz", everything, tmp_path)
    return Stack(f"http://127.0.0.1:{lb_port}", [f"http://127.0.0.1:{p}" for p in gateway_ports])


def tool_haproxy() -> str:
    for candidate in ("/usr/sbin/haproxy", "/usr/bin/haproxy"):
        if Path(candidate).exists():
            return candidate
    return tool("haproxy")


async def _login(http: httpx.AsyncClient, base: str, username: str) -> dict[str, str]:
    body = {"username": username, "password": PASSWORD}
    registered = await http.post(f"{base}/api/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    login = await http.post(f"{base}/api/v1/auth/login", json=body)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _admitted(
    http: httpx.AsyncClient, join_at: str, enter_at: str, auth: dict[str, str]
) -> str:
    """Join through one replica, enter through the other; the reservation token."""
    joined = await http.post(f"{join_at}/api/v1/queue/join", json={"event_id": EVENT}, headers=auth)
    assert joined.status_code == 202, joined.text
    token = joined.json()["waiting_token"]
    deadline = time.monotonic() + 20
    while True:
        status = await http.get(f"{enter_at}/api/v1/queue/status", params={"token": token})
        assert status.status_code == 200, status.text
        if status.json()["ready_for_entry"]:
            break
        assert time.monotonic() < deadline, status.text
        await asyncio.sleep(0.2)
    entered = await http.post(
        f"{enter_at}/api/v1/queue/enter", json={"waiting_token": token}, headers=auth
    )
    assert entered.status_code == 200, entered.text
    return str(entered.json()["reservation_token"])


@pytest.mark.slow
async def test_two_replicas_behind_haproxy_share_everything_a_fan_touches(stack: Stack) -> None:
    one, two = stack.gateways
    async with httpx.AsyncClient(timeout=10) as http:
        # A login issued by one replica is accepted by the other (one signing key).
        alice = await _login(http, one, f"alice_{uuid.uuid4().hex[:8]}")
        bob = await _login(http, two, f"bob_{uuid.uuid4().hex[:8]}")
        jwks = [(await http.get(f"{b}/.well-known/jwks.json")).json() for b in (one, two)]
        assert jwks[0] == jwks[1]
        missing = await http.get(f"{two}/api/v1/reservations/rsv_missing", headers=alice)
        assert missing.status_code == 404, missing.text

        # A join's Idempotency-Key is honoured across replicas (one Redis).
        key = {"Idempotency-Key": f"join-{uuid.uuid4().hex}"}
        first = await http.post(
            f"{one}/api/v1/queue/join", json={"event_id": "evt_idem"}, headers=key
        )
        again = await http.post(
            f"{two}/api/v1/queue/join", json={"event_id": "evt_idem"}, headers=key
        )
        assert first.status_code == again.status_code == 202
        assert again.json()["waiting_token"] == first.json()["waiting_token"]
        assert again.headers.get("X-Idempotency-Cached") == "true"

        # Waiting tokens from one replica are read by the other (one secret, one queue).
        alice_rt = await _admitted(http, one, two, alice)
        bob_rt = await _admitted(http, two, one, bob)

        # Two fans race for one seat through different replicas: one hold, one refusal.
        async def reserve(base: str, auth: dict[str, str], token: str) -> httpx.Response:
            return await http.post(
                f"{base}/api/v1/reservations",
                json={
                    "event_id": EVENT,
                    "seat_ids": ["A-1"],
                    "quantity": 1,
                    "reservation_token": token,
                },
                headers={**auth, "Idempotency-Key": f"rsv-{uuid.uuid4().hex}"},
            )

        answers = await asyncio.gather(reserve(one, alice, alice_rt), reserve(two, bob, bob_rt))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [201, 409], [a.text for a in answers]
        held = next(a for a in answers if a.status_code == 201).json()
        refused = next(a for a in answers if a.status_code == 409).json()
        assert refused["error"]["code"] == "SEAT_UNAVAILABLE"
        winner = alice if answers[0].status_code == 201 else bob

        # Pay through the load balancer; the webhook comes back through it to either replica.
        paid = await http.post(
            f"{stack.lb}/api/v1/payment/intent",
            json={
                "reservation_id": held["reservation_id"],
                "amount": held["total_amount"],
                "currency": held["currency"],
                "scenario": "approve",
            },
            headers={**winner, "Idempotency-Key": f"pay-{uuid.uuid4().hex}"},
        )
        assert paid.status_code == 200, paid.text
        deadline = time.monotonic() + 20
        while True:
            order = await http.get(
                f"{stack.lb}/api/v1/reservations/{held['reservation_id']}", headers=winner
            )
            assert order.status_code == 200, order.text
            if order.json()["status"] == "CONFIRMED":
                break
            assert time.monotonic() < deadline, order.text
            await asyncio.sleep(0.3)
