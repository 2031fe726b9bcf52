"""run_services and `ticketgate services`: real ports, health checks, clean stops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import wrappers_pb2

from tests.redis_server import free_port
from tests.services.conftest import booking, fast_settings
from tests.unit.test_accounts_database import DatabaseFactory
from ticketgate.proto.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from ticketgate.services.inventory import DEMO_EVENT_ID
from ticketgate.services.server import run_services

HEALTH = "/grpc.health.v1.Health/Check"


async def health(address: str, service: str = "") -> int:
    """The ServingStatus a grpc.health.v1 client would read (1 = SERVING)."""
    async with grpc.aio.insecure_channel(address) as channel:
        check = channel.unary_unary(
            HEALTH,
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.Int32Value.FromString,
        )
        response: wrappers_pb2.Int32Value = await check(
            wrappers_pb2.StringValue(value=service), timeout=5
        )
        return response.value


def port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


async def test_services_listen_on_real_ports_and_answer_health_checks(
    sqlite_databases: DatabaseFactory,
) -> None:
    async with booking(sqlite_databases) as services:
        running = services.running
        addresses = {
            running.inventory_address: "reservation.v1.InventoryService",
            running.reservation_address: "reservation.v1.ReservationService",
            running.payment_address: "payment.v1.PaymentService",
        }
        assert len(addresses) == 3
        for address, service in addresses.items():
            assert not address.endswith(":0")
            assert await health(address) == 1
            assert await health(address, service) == 1
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health(address, "nope.v1.Nothing")
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError):
            await health(running.inventory_address, "payment.v1.PaymentService")
    for address in addresses:
        assert not port_open(address)


async def test_a_port_in_use_fails_the_start_and_leaves_nothing_running(
    sqlite_databases: DatabaseFactory,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        inventory_port = free_port()
        settings = fast_settings(
            inventory_address=f"127.0.0.1:{inventory_port}", payment_address=f"127.0.0.1:{port}"
        )
        with pytest.raises(OSError, match=str(port)):
            async with run_services(settings, sqlite_databases.open()):
                pass
    assert not port_open(f"127.0.0.1:{inventory_port}")


async def test_fixed_ports_are_free_again_after_a_stop(sqlite_databases: DatabaseFactory) -> None:
    ports = [free_port() for _ in range(3)]
    settings = fast_settings(
        inventory_address=f"127.0.0.1:{ports[0]}",
        reservation_address=f"127.0.0.1:{ports[1]}",
        payment_address=f"127.0.0.1:{ports[2]}",
    )
    for _ in range(2):
        async with booking(sqlite_databases, settings) as services:
            assert services.running.inventory_address == f"127.0.0.1:{ports[0]}"
            assert await health(services.running.reservation_address) == 1


def _cli_env(tmp_path: Path, ports: list[int], **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SERVICES_", "PAYMENT_", "DATABASE_", "SERVER_"))
    }
    env.update(
        {
            "DATABASE_PATH": str(tmp_path / "cli.db"),
            "SERVICES_INVENTORY_ADDRESS": f"127.0.0.1:{ports[0]}",
            "SERVICES_RESERVATION_ADDRESS": f"127.0.0.1:{ports[1]}",
            "SERVICES_PAYMENT_ADDRESS": f"127.0.0.1:{ports[2]}",
            "LOG_LEVEL": "warning",
            "COLUMNS": "200",
        }
    )
    env.update(extra)
    return env


# How the lead registers the command in ticketgate/cli.py.
_CLI = (
    "import typer\n"
    "from ticketgate.services.cli import services_command\n"
    "cli = typer.Typer()\n"
    "cli.command('services')(services_command)\n"
    "@cli.command()\n"
    "def version() -> None: ...\n"
    "cli()\n"
)


@pytest.mark.slow
async def test_the_services_command_serves_until_interrupted(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CLI,
        "services",
        "--dev",
        env=_cli_env(tmp_path, ports),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        inventory = f"127.0.0.1:{ports[0]}"
        deadline = time.monotonic() + 20
        while not port_open(f"127.0.0.1:{ports[1]}"):
            assert process.returncode is None, "the services command exited early"
            assert time.monotonic() < deadline, "the services never started"
            await asyncio.sleep(0.1)
        async with grpc.aio.insecure_channel(inventory) as channel:
            stub = reservation_pb2_grpc.InventoryServiceStub(channel)
            seats = await stub.CheckAvailability(
                reservation_pb2.CheckAvailabilityRequest(event_id=DEMO_EVENT_ID), timeout=5
            )
        assert seats.available_count == 300
        process.send_signal(signal.SIGINT)
        _, raw = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = raw.decode()
    assert process.returncode == 0, stderr
    assert f"inventory    {inventory}" in stderr
    assert "PAYMENT_WEBHOOK_SECRET not set" in stderr
    assert not port_open(inventory)


def test_the_services_command_refuses_a_bad_configuration(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CLI, "services"],
        env=_cli_env(tmp_path, [1, 2, 3], SERVER_ENVIRONMENT="production"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "PAYMENT_WEBHOOK_SECRET is required" in result.stderr


def test_the_services_command_refuses_an_unknown_log_level(tmp_path: Path) -> None:
    """LOG_LEVEL is read by the same rule as the gateway's: refused in one line, before any
    server starts (it used to reach the logging setup as written)."""
    result = subprocess.run(
        [sys.executable, "-c", _CLI, "services", "--dev"],
        env=_cli_env(tmp_path, [1, 2, 3], LOG_LEVEL="loud"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "ticketgate: configuration error: LOG_LEVEL must be debug, info, warning, error or "
        "critical, got 'loud'\n"
    )
