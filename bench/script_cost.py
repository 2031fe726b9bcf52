"""Redis CPU per status script call, two checkouts at the same moment.

`python -m bench.script_cost --a-tree PATH` loads status.lua (with its prelude) as checkout
PATH builds it (A) and as this checkout builds it (B) into one private redis-server holding
10,000 waiters and `--admitted` admissions `--gap-ms` apart, then sends rounds of 10,000
pipelined EVALSHA to each in turn and reads the server's own CPU time (INFO cpu) around each
round. Redis CPU time, not `usec_per_call`: on a shared two-core box the wall time a call
takes inside Redis grows with every preemption, its CPU time does not. Rounds alternate, the
minimum and median per side are printed.

B's status.lua takes the caller's admission counts (lua/counts.lua); "B" sends the counts its
first call returned (the steady state of a worker whose counts are current), "B recount" sends
none, so every call counts again (what a call pays after an admission or a window edge).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from tests.redis_server import free_port

CALLS = 10_000
WAITERS = 10_000
KEYS = [f"tg:{{ev}}:{name}" for name in ("wait", "seen", "adm", "epoch", "cfg", "bucket")] + [
    "tg:{ev}:users",
    "tg:{ev}:owners",
]
# seq, heartbeat TTL ms, joined_ms (none), window, refill/s, capacity, refill/ms
ARGS: list[Any] = [0, 300_000_000, "", 100, "5.0", 10, "0.005"]


def status_source(tree: Path) -> str:
    """status.lua with its prelude, exactly as `tree`'s RedisQueueStore loads it."""
    code = (
        f"import sys; sys.path.insert(0, {str(tree / 'src')!r})\n"
        "from ticketgate.queuestore.redis_store import queue_script\n"
        "print(queue_script('status').source)\n"
    )
    python = tree / ".venv" / "bin" / "python"
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def fill(client: redis.Redis, admitted: int, gap_ms: int) -> None:
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for seq in range(1, WAITERS + 1):
        pipe.zadd(KEYS[0], {str(seq): seq})
        pipe.zadd(KEYS[1], {str(seq): now + 3_000_000})
    for n in range(1, admitted + 1):
        pipe.zadd(KEYS[2], {str(WAITERS + n): now - n * gap_ms})
    pipe.hset(KEYS[5], mapping={"tokens": 3, "ts": now, "used": admitted})
    pipe.execute()


def cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def one_round(client: redis.Redis, sha: str, extra: list[Any] | None) -> float:
    """Redis CPU µs per call over CALLS pipelined calls."""
    before = cpu_seconds(client)
    pipe = client.pipeline(transaction=False)
    for i in range(CALLS):
        args = [1 + (i * 7) % WAITERS, *ARGS[1:]]
        pipe.evalsha(sha, len(KEYS), *KEYS, *args, *(extra or []))
    pipe.execute()
    return (cpu_seconds(client) - before) / CALLS * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a-tree", type=Path, required=True, help="the checkout before")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--admitted", type=int, default=40, help="admissions kept (40)")
    parser.add_argument("--gap-ms", type=int, default=20_000, help="ms between them (20000)")
    options = parser.parse_args()
    sources = {"A": status_source(options.a_tree), "B": status_source(Path.cwd())}
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen(
            ["timeout", "900", "redis-server", "--port", str(port), "--save", "", "--dir", scratch],
            stdout=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            fill(client, options.admitted, options.gap_ms)
            shas = {side: client.script_load(source) for side, source in sources.items()}
            results: dict[str, list[float]] = {"A": [], "B": [], "B recount": []}
            for _ in range(options.rounds):
                results["A"].append(one_round(client, shas["A"], None))
                first = client.evalsha(shas["B"], len(KEYS), *KEYS, *ARGS, -1, 0, 0)
                counts = [first[7], first[2], first[15]]  # used, read at, exact until
                results["B"].append(one_round(client, shas["B"], counts))
                results["B recount"].append(one_round(client, shas["B"], [-1, 0, 0]))
            for side, values in results.items():
                print(
                    f"{side}: Redis CPU µs per status call min {min(values):.2f}, "
                    f"median {statistics.median(values):.2f} "
                    f"({', '.join(f'{v:.1f}' for v in values)})"
                )
            ratio = statistics.median(results["B"]) / statistics.median(results["A"])
            print(f"B/A (median): {ratio:.3f}")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
