"""Gateway instructions per status handler call, two checkouts (valgrind cachegrind).

`python -m bench.status_instructions --a-tree PATH` drives each checkout's status handler
(`QueueRoutes.status` -> `WaitingRoom.status` -> `RedisQueueStore.status`) with a Redis
executor that answers at once with one fixed status.lua reply (a waiter at place 1501 of a
window of 100, 40 admissions counted), under `valgrind --tool=cachegrind --cache-sim=no`,
and prints the instructions per call: the run with `--calls` calls minus the run with a
sixth of them, divided. Instructions, not time: on a shared two-core box timeit swings by a
third between runs, an instruction count repeats to about 1%. No I/O is measured: the
socket, the event loop and Redis itself are the served path's (bench.script_cost measures
Redis).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

# Runs in the checkout's own interpreter: argv is the checkout's src and the number of calls.
_DRIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from ticketgate.edge.request import Request
from ticketgate.http.queue import QueueRoutes
from ticketgate.queuestore.redis_store import RedisQueueStore
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.tokens import WaitingClaims

NOW = int(time.time() * 1000)
REPLY = [1, 1501, NOW, 100, b"", 500, b"3.0000000000000004", 40, 0, 0, 0,
         10, 25, 40, NOW - 800_000, NOW + 1_000]

class Answering:
    observers = ()
    async def execute(self, *args):
        return REPLY

settings = QueueSettings(token_secret=b"s" * 32)
room = WaitingRoom(RedisQueueStore(Answering(), settings), settings)
routes = QueueRoutes(room)
token = room.signer.sign_waiting(WaitingClaims("ev", 1501, NOW - 20_000, ""))
request = Request("GET", "/api/v1/queue/status", b"token=" + token.encode(), {}, "trace")
for _ in range(200 + int(sys.argv[2])):
    call = routes.status(request)
    try:
        call.send(None)
    except StopIteration:
        pass
"""


def instructions(tree: Path, calls: int) -> int:
    """Instructions valgrind counted for a run of `calls` handler calls in `tree`."""
    run = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            str(tree / ".venv" / "bin" / "python"),
            "-c",
            _DRIVER,
            str(tree / "src"),
            str(calls),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{run.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_call(tree: Path, calls: int) -> float:
    fewer = calls // 6
    return (instructions(tree, calls) - instructions(tree, fewer)) / (calls - fewer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a-tree", type=Path, required=True, help="the checkout before")
    parser.add_argument("--calls", type=int, default=6_000)
    options = parser.parse_args()
    results = {
        "A": per_call(options.a_tree, options.calls),
        "B": per_call(Path.cwd(), options.calls),
    }
    for side, value in results.items():
        print(f"{side}: {value / 1000:.1f}k instructions per status handler call")
    print(f"B/A: {results['B'] / results['A']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
