"""A real gateway in a child process (`ticketgate serve --dev`) for rehearsals to drive.

A separate process, not a server inside the test's event loop: the fans' event-loop lag
and CPU cost must be the tool's own, and the gateway gets its own core as it would in a
deployment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.envs import app_env
from tests.redis_server import free_port

SECRET = "rehearsal-secret-rehearsal-secret-rehearsal"
WEBHOOK_SECRET = "rehearsal-webhook-secret-rehearsal-webhook"


@contextmanager
def serve_services(tmp: Path) -> Iterator[dict[str, str]]:
    """`ticketgate services` (inventory, reservation, payment simulator) in a child process;
    yields the gateway settings that point at it, so the rehearsal can also read the
    reservation service directly (BACKEND_RESERVATION_API_GRPC_ADDRESS)."""
    inventory, reservation, payment = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        **app_env(
            SERVER_ENVIRONMENT="development",
            DATABASE_PATH=str(tmp / "services.db"),
            # SQLite has one writer: a pool of one queues the services' writes in the process
            # instead of in SQLite's busy-wait backoff (reserve p90 1.5 s with the default 10).
            DATABASE_POOL_SIZE="1",
            LOG_LEVEL="warning",
            PAYMENT_WEBHOOK_SECRET=WEBHOOK_SECRET,
            SERVICES_INVENTORY_ADDRESS=f"127.0.0.1:{inventory}",
            SERVICES_RESERVATION_ADDRESS=f"127.0.0.1:{reservation}",
            SERVICES_PAYMENT_ADDRESS=f"127.0.0.1:{payment}",
            SERVICES_SEED_DEMO_EVENT="true",
        ),
    }
    with _child(tmp, "services", ["services"], env):
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", reservation), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("ticketgate services did not listen within 60 s") from None
                time.sleep(0.1)
        yield {
            "BACKEND_RESERVATION_API_GRPC_ADDRESS": f"127.0.0.1:{reservation}",
            "BACKEND_PAYMENT_API_GRPC_ADDRESS": f"127.0.0.1:{payment}",
            "PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }


@contextmanager
def _child(tmp: Path, name: str, args: list[str], env: dict[str, str]) -> Iterator[None]:
    log = (tmp / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketgate.cli", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited: " + (tmp / f"{name}.log").read_text())
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.close()


@contextmanager
def serve_gateway(tmp: Path, **settings: str) -> Iterator[str]:
    """Yield the base URL of a development gateway with `settings` in its environment."""
    port = free_port()
    env = {
        **os.environ,
        **app_env(
            SERVER_ENVIRONMENT="development",
            QUEUE_TOKEN_SECRET=SECRET,
            DATABASE_PATH=str(tmp / "gateway.db"),
            LOG_LEVEL="warning",
            LOG_ACCESS="false",
            OBSERVABILITY_TRACING_ENABLED="false",
            # Fans come from one host: believe its X-Forwarded-For (one address per fan),
            # as a gateway behind a load balancer would, so per-IP limits see fans.
            RATE_LIMIT_ENABLED="true",
            RATE_LIMIT_TRUSTED_PROXIES="127.0.0.1",
        ),
        **settings,
    }
    base = f"http://127.0.0.1:{port}"
    with _child(tmp, "gateway", ["serve", "--dev", "--port", str(port)], env):
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    "gateway did not come up within 60 s: "
                    + (tmp / "gateway.log").read_text(errors="replace")[-2000:]
                )
            time.sleep(0.1)
        yield base
