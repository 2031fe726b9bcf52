"""SIGTERM under load: `ticketgate serve` (the real command, one and two workers, a throwaway
Redis, the reference services in-process) stops accepting, finishes the requests in flight,
cuts off a stuck one at SERVER_SHUTDOWN_TIMEOUT_SEC, drains its background work and exits 0 —
what a Kubernetes rollout or scale-down does to every pod.

In flight for sure: requests whose headers and half their body reached the gateway before
the signal; their second half is sent after it, and each must still get its 202. Background
work drained: the rate limiter syncs every 60 s here, so what Redis holds for the load's
clients afterwards was pushed by the shutdown; the sweeper and the services stop without a
traceback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from tests.envs import child_env
from tests.integration.conftest import SECRET
from tests.redis_server import free_port

SHUTDOWN_TIMEOUT_SEC = 4
LOAD_CLIENTS = 12
IN_FLIGHT = 6


@dataclass
class Load:
    """Outcomes of the load's requests: statuses answered, and requests never answered
    because the connection was refused or closed before a response began."""

    statuses: list[int] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    clients_served: set[str] = field(default_factory=set)


def _start(tmp_path: Path, redis_address: str, workers: int) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = child_env(
        tmp_path,
        SERVER_ENVIRONMENT="production",
        QUEUE_TOKEN_SECRET=SECRET,
        REDIS_ADDRESS=redis_address,
        DATABASE_PATH=str(tmp_path / "gateway.db"),
        BACKEND_EMBEDDED="true",
        QUEUE_AUTO_CREATE_EVENTS="true",  # the load's event needs no registration
        SERVER_PORT=str(port),
        SERVER_WORKERS=str(workers),
        SERVER_SHUTDOWN_TIMEOUT_SEC=str(SHUTDOWN_TIMEOUT_SEC),
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_RPS="1",
        RATE_LIMIT_BURST="1000",
        RATE_LIMIT_SYNC_INTERVAL_MS="60000",
        RATE_LIMIT_TRUSTED_PROXIES="127.0.0.1",
        LOG_FORMAT="json",
    )
    # A file, not a pipe: nobody reads a pipe during the run, and a full one blocks the
    # gateway's log writes (and with them every request).
    with (tmp_path / "gateway.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ticketgate.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, (tmp_path / "gateway.log").read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "gateway did not become ready"
        time.sleep(0.1)


async def _fan(port: int, client: str, event_id: str, load: Load, stop: asyncio.Event) -> None:
    """One fan (one client address): join, then poll status until told to stop, each request
    on a fresh connection so every one is either answered or visibly refused."""
    headers = {"X-Forwarded-For": client, "Connection": "close"}
    token = ""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        while not stop.is_set():
            try:
                if not token:
                    reply = await http.post(
                        "/api/v1/queue/join", json={"event_id": event_id}, headers=headers
                    )
                    if reply.status_code == 202:
                        token = reply.json()["waiting_token"]
                else:
                    reply = await http.get(
                        "/api/v1/queue/status", params={"token": token}, headers=headers
                    )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                load.unanswered.append(type(exc).__name__)
                await asyncio.sleep(0.05)
                continue
            load.statuses.append(reply.status_code)
            if reply.status_code < 400:
                load.clients_served.add(client)
            if reply.status_code >= 500:
                assert reply.headers.get("Retry-After"), reply.text
            await asyncio.sleep(0.02)


@dataclass
class HalfSent:
    """A join whose headers and first half of the body have been written."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    rest: bytes

    @classmethod
    async def open(cls, port: int, event_id: str) -> HalfSent:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"event_id": event_id}).encode()
        writer.write(
            b"POST /api/v1/queue/join HTTP/1.1\r\nHost: gw\r\n"
            b"Content-Type: application/json\r\nX-Forwarded-For: 198.51.100.7\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        await writer.drain()
        return cls(reader, writer, body[len(body) // 2 :])

    def accepted(self, port: int) -> bool:
        """Whether a gateway process holds this connection (accepted, not waiting in the
        listen backlog): `ss` names the owning process only then."""
        client_port = self.writer.get_extra_info("sockname")[1]
        listing = subprocess.run(
            [
                "ss",
                "-Htnp",
                "state",
                "established",
                f"( sport = :{port} and dport = :{client_port} )",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return "users:" in listing

    async def finish(self) -> bytes:
        self.writer.write(self.rest)
        await self.writer.drain()
        return await self.answer()

    async def answer(self) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.read(), 10)
        finally:
            self.writer.close()


async def _serves_a_new_request(port: int) -> bool:
    """Whether a request on a new connection gets an answer. Once the gateway stops
    accepting, it is refused (one worker: the listening socket is closed) or left unanswered
    (several: uvicorn's supervisor keeps the shared socket open until it exits)."""
    async with httpx.AsyncClient(timeout=1) as http:
        try:
            await http.get(f"http://127.0.0.1:{port}/healthz")
        except httpx.HTTPError:
            return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_under_load_drains_and_exits_zero(
    workers: int, tmp_path: Path, redis_address: str
) -> None:
    event_id = f"evt_{uuid.uuid4().hex[:12]}"
    process, port = await asyncio.to_thread(_start, tmp_path, redis_address, workers)
    try:
        load, stop = Load(), asyncio.Event()
        clients = [f"203.0.113.{i + 1}" for i in range(LOAD_CLIENTS)]
        fans = [asyncio.create_task(_fan(port, c, event_id, load, stop)) for c in clients]
        await asyncio.sleep(1.5)  # the load is running, tokens are polled
        in_flight = [await HalfSent.open(port, event_id) for _ in range(IN_FLIGHT)]
        # A client that never sends the rest: the shutdown must not wait for it past the bound.
        stuck = await HalfSent.open(port, event_id)
        # In flight for sure: every one of them accepted by a worker (under CI load a
        # connection can sit in the listen backlog a while).
        deadline = time.monotonic() + 10
        while not all(request.accepted(port) for request in [*in_flight, stuck]):
            assert time.monotonic() < deadline, "the gateway never accepted the requests"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # and their headers parsed: the requests are in the app

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.5)
        answers = await asyncio.gather(*(request.finish() for request in in_flight))
        # Stopped accepting while the shutdown goes on (the stuck request keeps it going
        # until the bound, so this is seen before the exit).
        refused_after = None
        while refused_after is None and time.monotonic() - signalled < SHUTDOWN_TIMEOUT_SEC - 1:
            if not await _serves_a_new_request(port):
                refused_after = time.monotonic() - signalled
        assert refused_after is not None, "new requests were still served"
        stop.set()
        await asyncio.gather(*fans)
        code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT_SEC + 15)
        took = time.monotonic() - signalled
        stuck_answer = await stuck.answer()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output = (tmp_path / "gateway.log").read_text()

    assert code == 0, output[-3000:]
    # Every request in flight at the signal was finished, with its real answer.
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 202 "), answer[:300]
        assert b'"waiting_token"' in answer
    # The stuck one was cut off at the bound, no later, with a retryable 503 in the envelope
    # (uvicorn's own answer there was a plain-text 500).
    head, _, body = stuck_answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), stuck_answer[:300]
    assert b"\r\nretry-after: 1\r\n" in head.lower() + b"\r\n"
    assert json.loads(body)["error"]["code"] == "SHUTTING_DOWN"
    assert SHUTDOWN_TIMEOUT_SEC - 1 <= took <= SHUTDOWN_TIMEOUT_SEC + 10, took
    # The load was served before the signal and got no server error out of the shutdown.
    assert len(load.statuses) > LOAD_CLIENTS
    assert all(status < 500 for status in load.statuses), sorted(set(load.statuses))
    assert load.clients_served == set(clients)
    # Rate-limit consumption was pushed on the way out (the periodic sync never ran).
    keys = redis.Redis.from_url(f"redis://{redis_address}")
    for client in clients:
        assert keys.exists(f"rl:{{ip:{client}}}:tat"), client
    # uvicorn cancelled exactly the stuck request; nothing (sweeper, rate-limit sync,
    # services, the cancelled request) ended with a traceback.
    assert output.count("Cancel 1 running task(s), timeout graceful shutdown exceeded") == 1
    assert "Traceback" not in output, output[-3000:]
    assert "Task was destroyed" not in output
    assert output.count("Application shutdown complete") == workers
