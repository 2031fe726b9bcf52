"""A real gateway in a child process (`ticketgate serve --dev`) for rehearsals to drive.

A separate process, not a server inside the test's event loop: the fans' event-loop lag
and CPU cost must be the tool's own, and the gateway gets its own core as it would in a
deployment.
"""

from __future__ import annotations

import os
import signal
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
    log = (tmp / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketgate.cli", "serve", "--dev", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    "gateway exited: " + (tmp / "gateway.log").read_text(errors="replace")
                )
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("gateway did not come up within 60 s")
            time.sleep(0.1)
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.close()
