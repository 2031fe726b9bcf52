"""Gateway instructions per served join or status, in process, two checkouts (callgrind).

`python -m bench.request_instructions --redis 127.0.0.1:6399 --a-tree PATH` runs each
checkout's whole gateway as `bench.inprocess` does (its app, its HTTP protocol on transports
that only record, real Redis calls through the pipelined executor) under
`valgrind --tool=callgrind` and prints the instructions of the event-loop thread per request,
counted only while the measured requests run: the counters are zeroed on entry to
`os.getppid` and dumped on entry to `os.getpgrp`, which the driver calls right before and
after its loop (start-up, imports and the warm-up are not counted; other threads are
counted apart and left out). The garbage collector is off while counting.

Instructions, not time: on a shared two-core box a timed run swings by a third, an
instruction count repeats to about 1%, and two checkouts can be compared one after the
other (or at once: the count does not depend on the load). What it does not see is the
socket work of a served request and what it does to the caches (`bench.run`, `bench.ab`).
The Redis must have nothing else on it: the runs write queue keys and flush it first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs in the checkout's own interpreter, with the checkout's src and bench first on the path.
_DRIVER = r"""
import asyncio, gc, json, os, sys, tempfile
import uvloop
sys.path.insert(0, os.environ["TREE"])
import bench.inprocess as harness

os.environ.update(
    REDIS_ADDRESS=os.environ["REDIS"],
    SERVER_ENVIRONMENT="production",
    # No reference services in the process: their timers would run on the loop being counted
    # (the addresses are never dialled: no booking request is made).
    BACKEND_EMBEDDED="false",
    BACKEND_RESERVATION_API_GRPC_ADDRESS="127.0.0.1:1",
    BACKEND_PAYMENT_API_GRPC_ADDRESS="127.0.0.1:1",
    BACKEND_INVENTORY_API_GRPC_ADDRESS="127.0.0.1:1",
    PAYMENT_WEBHOOK_SECRET="w" * 32,
    LOG_LEVEL="warning",
    QUEUE_HEARTBEAT_TTL_SEC="3600",
    QUEUE_AUTO_CREATE_EVENTS="true",
    QUEUE_SWEEP_INTERVAL_MS="600000",
    RATE_LIMIT_ENABLED="false",
    QUEUE_TOKEN_SECRET="ab" * 24,
    DATABASE_PATH=os.path.join(tempfile.mkdtemp(), "accounts.db"),
)
SCENARIO, ROUNDS = os.environ["SCENARIO"], int(os.environ["ROUNDS"])


async def main():
    from ticketgate.app import app_factory
    from ticketgate.http.server import HttpProtocol

    app = app_factory()
    inbox, outbox = asyncio.Queue(), asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.get_running_loop().create_task(
        app({"type": "lifespan"}, inbox.get, outbox.put)
    )
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    harness._Config.timeout_keep_alive = 10**6  # no idle timer fires under valgrind
    batch, loop, connections = harness._Batch(), asyncio.get_running_loop(), []
    for _ in range(harness.CONNECTIONS):
        protocol = HttpProtocol(harness._Config(app), harness._ServerState(), {}, loop)
        transport = harness._RecordingTransport(batch)
        protocol.connection_made(transport)
        connections.append((protocol, transport))

    async def send(requests):
        batch.written, batch.expected = 0, len(requests)
        batch.done.clear()
        for (protocol, _), request in zip(connections, requests):
            protocol.data_received(request)
        await batch.done.wait()
        return [transport.last for _, transport in connections[: len(requests)]]

    size = harness.CONNECTIONS
    if SCENARIO == "status":
        join = (
            b"POST /api/v1/queue/join HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(harness.STATUS_EVENT), harness.STATUS_EVENT)
        )
        tokens = []
        while len(tokens) < 10 * size:
            for answer in await send([join] * size):
                tokens.append(json.loads(answer.partition(b"\r\n\r\n")[2])["waiting_token"])
        polls = [
            b"GET /api/v1/queue/status?token=%s HTTP/1.1\r\nHost: t\r\n\r\n" % token.encode()
            for token in tokens
        ]
        requests = lambda index: polls[(index % 10) * size : (index % 10 + 1) * size]
    else:
        requests = lambda index: [harness.JOIN] * size
    for index in range(5):
        await send(requests(index))
    gc.collect()
    gc.disable()
    os.getppid()  # callgrind zeroes its counters here
    for index in range(ROUNDS):
        answers = await send(requests(index))
    os.getpgrp()  # ... and dumps them here
    for answer in answers:
        assert answer.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 202 ")), answer[:120]
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan


uvloop.run(main())
"""


def per_request(tree: Path, scenario: str, redis: str, rounds: int) -> float:
    """Instructions of the event-loop thread per request of `scenario` in `tree`."""
    host, _, port = redis.rpartition(":")
    flush = ["redis-cli", "-h", host, "-p", port, "flushall"]
    subprocess.run(flush, check=True, capture_output=True)
    out = Path(tempfile.mkdtemp(prefix="tg-callgrind-"))
    env = {
        **os.environ,
        "TREE": str(tree),
        "REDIS": redis,
        "SCENARIO": scenario,
        "ROUNDS": str(rounds),
        "PYTHONPATH": str(tree / "src"),
    }
    run = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            "--zero-before=os_getppid",
            "--dump-before=os_getpgrp",
            f"--callgrind-out-file={out}/callgrind.out",
            str(tree / ".venv" / "bin" / "python"),
            "-c",
            _DRIVER,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    dump = out / "callgrind.out.1-01"  # the first dump, thread 1 (the event loop)
    if run.returncode != 0 or not dump.exists():
        raise SystemExit(f"{tree} {scenario}: no callgrind dump\n{run.stderr[-3000:]}")
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1]) / (rounds * 64)
    raise SystemExit(f"{dump}: no summary line")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", required=True, help="host:port of a Redis to write to")
    parser.add_argument("--a-tree", type=Path, required=True, help="the checkout before")
    parser.add_argument("--scenarios", default="join,status", help="join, status or both")
    parser.add_argument("--rounds", type=int, default=20, help="batches of 64 counted")
    options = parser.parse_args()
    for scenario in options.scenarios.split(","):
        a = per_request(options.a_tree.resolve(), scenario, options.redis, options.rounds)
        b = per_request(Path.cwd(), scenario, options.redis, options.rounds)
        print(
            f"{scenario}: A {a / 1000:.1f}k, B {b / 1000:.1f}k instructions per request "
            f"(B/A {b / a:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
