"""CPU per join and per status of the whole gateway in one process, without client sockets.

`python -m bench.inprocess --redis 127.0.0.1:6399` builds the app as a worker does
(`app_factory`, Redis store, rate limiting off, production settings), opens 64 connections
of the gateway's own HTTP protocol (http/server.py) on transports that only record what
they are given, and feeds them raw HTTP requests: 64 at a time, each batch awaited until
every answer is written. The Redis calls are real (the pipelined executor over a socket),
the client side is not, so the process CPU per request (getrusage, the best of `--repeat`)
is what the gateway's Python, the protocol and the Redis client cost, without the client
sockets' system calls, epoll and wrk that `bench.run` adds. Status polls tokens of 10,000
waiters it joined first. Use a Redis with nothing else on it: the run writes queue keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
from typing import Any

import uvloop

CONNECTIONS = 64
JOIN = (
    b"POST /api/v1/queue/join HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b'Content-Length: 29\r\n\r\n{"event_id":"inprocess-join"}'
)
STATUS_EVENT = b'{"event_id":"inprocess-poll"}'


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Config:
    """What the protocol reads of uvicorn's Config."""

    loaded = True
    root_path = ""
    limit_concurrency = None
    timeout_keep_alive = 5

    def __init__(self, app: Any) -> None:
        self.loaded_app = app


class _ServerState:
    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.total_requests = 0
        self.default_headers: list[tuple[bytes, bytes]] = []


class _Batch:
    """Counts the answers written; wakes the driver when a batch is complete."""

    def __init__(self) -> None:
        self.written = 0
        self.expected = 0
        self.done = asyncio.Event()

    def wrote(self) -> None:
        self.written += 1
        if self.written >= self.expected:
            self.done.set()


class _RecordingTransport:
    def __init__(self, batch: _Batch) -> None:
        self.batch = batch
        self.last = b""

    def write(self, data: bytes) -> None:
        self.last = data
        self.batch.wrote()

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("sockname", "peername") else default

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        return None


async def _measure(redis: str, rounds: int, repeat: int) -> dict[str, list[float]]:
    from ticketgate.app import app_factory
    from ticketgate.http.server import HttpProtocol

    app = app_factory()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.get_running_loop().create_task(
        app({"type": "lifespan"}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    batch = _Batch()
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(CONNECTIONS):
        protocol = HttpProtocol(_Config(app), _ServerState(), {}, loop)
        transport = _RecordingTransport(batch)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        connections.append((protocol, transport))

    async def send(requests: list[bytes]) -> list[bytes]:
        batch.written, batch.expected = 0, len(requests)
        batch.done.clear()
        for (protocol, _), request in zip(connections, requests, strict=False):
            protocol.data_received(request)
        await batch.done.wait()
        return [transport.last for _, transport in connections[: len(requests)]]

    poll_join = (
        b"POST /api/v1/queue/join HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(STATUS_EVENT), STATUS_EVENT)
    )
    tokens: list[str] = []
    while len(tokens) < 10_000:
        for answer in await send([poll_join] * CONNECTIONS):
            tokens.append(json.loads(answer.partition(b"\r\n\r\n")[2])["waiting_token"])
    polls = [
        b"GET /api/v1/queue/status?token=%s HTTP/1.1\r\nHost: t\r\n\r\n" % token.encode()
        for token in tokens
    ]

    def status_batch(index: int) -> list[bytes]:
        start = (index * CONNECTIONS) % (len(polls) - CONNECTIONS)
        return polls[start : start + CONNECTIONS]

    scenarios = {"join": lambda index: [JOIN] * CONNECTIONS, "status": status_batch}
    results: dict[str, list[float]] = {}
    for name, requests in scenarios.items():
        for index in range(50):  # warm-up
            await send(requests(index))
        samples = []
        for _ in range(repeat):
            before = _cpu()
            for index in range(rounds):
                answers = await send(requests(index))
            samples.append((_cpu() - before) / (rounds * CONNECTIONS) * 1e6)
            if not answers[0].startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 202 ")):
                raise RuntimeError(f"{name} answered {answers[0][:80]!r}")
        results[name] = samples
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="host:port of a Redis to write to")
    parser.add_argument("--rounds", type=int, default=100, help="batches of 64 per sample")
    parser.add_argument("--repeat", type=int, default=5, help="samples per scenario")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="tg-inprocess-")
    os.environ.update(
        REDIS_ADDRESS=args.redis,
        SERVER_ENVIRONMENT="production",
        BACKEND_EMBEDDED="true",
        LOG_LEVEL="warning",
        QUEUE_HEARTBEAT_TTL_SEC="3600",
        QUEUE_AUTO_CREATE_EVENTS="true",
        RATE_LIMIT_ENABLED="false",
        QUEUE_TOKEN_SECRET=os.urandom(24).hex(),
        DATABASE_PATH=os.path.join(scratch, "accounts.db"),
    )
    results = uvloop.run(_measure(args.redis, args.rounds, args.repeat))
    for name, samples in results.items():
        print(
            f"{name}: CPU µs per request, best {min(samples):.1f}, "
            f"median {statistics.median(samples):.1f} ({len(samples)} samples)"
        )


if __name__ == "__main__":
    main()
