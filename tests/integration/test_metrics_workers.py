"""`ticketgate serve --workers 2`: one `/metrics`, whichever worker answers the scrape.

The real command in a child process against a throwaway Redis. The workers are spawned
processes with their own prometheus_client; only the multi-process directory the command
prepares lets one worker report the requests the other served. TMPDIR points into the test's
directory so the test can look at the per-worker files and see them removed at exit.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.envs import child_env
from tests.integration.conftest import SECRET
from tests.redis_server import free_port
from tests.scrape import parse

REQUESTS = 120
ROUTE = "/version"


@dataclass
class Served:
    base: str
    tmp: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> int:
        """Ctrl-C, as an operator would; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


@pytest.fixture
def served(tmp_path: Path, redis_address: str) -> Iterator[Served]:
    port = free_port()
    env = child_env(
        tmp_path,
        SERVER_ENVIRONMENT="development",
        QUEUE_TOKEN_SECRET=SECRET,
        REDIS_ADDRESS=redis_address,
        DATABASE_PATH=str(tmp_path / "gateway.db"),
        # Nothing listens there; no request below reaches a backend, and the workers
        # start no embedded services of their own.
        BACKEND_RESERVATION_API_GRPC_ADDRESS="127.0.0.1:1",
        BACKEND_PAYMENT_API_GRPC_ADDRESS="127.0.0.1:1",
        PAYMENT_WEBHOOK_SECRET="webhook-secret-webhook-secret-webhook!",
        LOG_LEVEL="warning",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketgate.cli", "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    handle = Served(f"http://127.0.0.1:{port}", tmp_path, process)
    try:
        yield handle
    finally:
        handle.stop()


async def wait_until_up(base: str, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with httpx.AsyncClient(base_url=base, timeout=1) as client:
        while loop.time() < deadline:
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("ticketgate serve did not come up")


def served_per_worker(metrics_dir: Path) -> dict[str, float]:
    """GET /version answers counted in each worker's own counter file (pid -> count)."""
    counts: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        mmap = MmapedDict(str(path), read_mode=True)  # type: ignore[no-untyped-call]
        try:
            total = sum(
                value
                for key, value, _ in mmap.read_all_values()  # type: ignore[no-untyped-call]
                if '"http_server_requests_total"' in key and f'"{ROUTE}"' in key
            )
        finally:
            mmap.close()  # type: ignore[no-untyped-call]
        counts[path.stem.removeprefix("counter_")] = total
    return counts


async def test_every_worker_scrape_counts_the_requests_of_all_workers(served: Served) -> None:
    base = served.base
    await wait_until_up(base)
    (metrics_dir,) = served.tmp.glob("ticketgate-metrics-*")

    # A new connection per request, many at once, so both workers take a share.
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=5, limits=fresh) as client:

        async def one() -> None:
            assert (await client.get(ROUTE)).status_code == 200

        for _ in range(REQUESTS // 20):
            await asyncio.gather(*(one() for _ in range(20)))
        # Each worker writes its buffered counts to its file within ~1 s (FLUSH_INTERVAL_SEC).
        per_worker = served_per_worker(metrics_dir)
        for _ in range(50):
            if sum(per_worker.values()) == REQUESTS:
                break
            await asyncio.sleep(0.1)
            per_worker = served_per_worker(metrics_dir)
        assert sum(per_worker.values()) == REQUESTS
        assert len([n for n in per_worker.values() if n > 0]) == 2, per_worker

        for _ in range(10):
            text = (await client.get("/metrics")).text
            family = parse(text)["http_server_requests"]
            total = family.value("http_server_requests_total", route=ROUTE, status_code="200")
            assert total == REQUESTS


async def test_the_prepared_directory_is_removed_when_the_server_stops(served: Served) -> None:
    await wait_until_up(served.base)
    (metrics_dir,) = served.tmp.glob("ticketgate-metrics-*")
    assert list(metrics_dir.glob("*.db"))  # the workers write there
    assert served.stop() == 0
    assert not metrics_dir.exists()
