"""Redis CPU per status script call, two checkouts at the same moment.

`python -m bench.script_cost --a-tree PATH` loads status.lua (with its prelude) as checkout
PATH builds it (A) and as this checkout builds it (B) into one private redis-server holding
10,000 waiters and `--admitted` admissions `--gap-ms` apart, then sends rounds of 10,000
pipelined EVALSHA to each in turn and reads the server's own CPU time (INFO cpu) around each
round. Redis CPU time, not `usec_per_call`: on a shared two-core box the wall time a call
takes inside Redis grows with every preemption, its CPU time does not. Rounds alternate, the
minimum and median per side are printed.

Each side's KEYS and ARGV come from its own checkout (`status_call`), so the two may lay out
their keys differently. status.lua takes the caller's admission counts (lua/counts.lua) and,
since version.lua, the version of its copy of the event: "A" and "B" send what their first
call returned (the steady state of a worker whose counts and copy are current), "A recount"
and "B recount" send none, so every call counts and reads the event again (what a call pays
after an admission or a window edge).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import redis
from tests.redis_server import free_port

CALLS = 10_000
WAITERS = 10_000
EVENT = "ev"
PREFIX = f"tg:{{{EVENT}}}:"
WAIT, SEEN, ADMITTED, BUCKET = (PREFIX + name for name in ("wait", "seen", "adm", "bucket"))


class StatusCall(NamedTuple):
    """status.lua as one checkout builds and calls it: its source (with the prelude), its
    KEYS and its ARGV after the seq (the process settings, when the checkout still sends them,
    and the token's join time, at `joined_at`, as RedisQueueStore.status sends them; the
    caller's admission counts follow them)."""

    source: str
    keys: list[str]
    args: list[Any]
    joined_at: int
    counts_first: bool  # the caller's counts (and version) are ARGV 1-4, the seq after them

    def argv(self, seq: int, counts: list[Any]) -> list[Any]:
        """The ARGV of one call in this checkout's layout."""
        if self.counts_first:
            return [*counts, seq, *self.args]
        return [seq, *self.args, *counts]


def status_call(tree: Path) -> StatusCall:
    """Asked of `tree`'s own code, so checkouts whose status.lua takes other KEYS or ARGV
    compare: window 100, capacity 10, refill 5 per second, heartbeat TTL 300 s."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(tree / 'src')!r})\n"
        "from ticketgate.queuestore.redis_store import RedisQueueStore, _EventKeys\n"
        "from ticketgate.waitingroom.settings import QueueSettings\n"
        "settings = QueueSettings(token_secret=b'x' * 32, admission_window=100,\n"
        "    bucket_capacity=10, bucket_refill_per_sec=5.0, heartbeat_ttl_ms=300_000)\n"
        "store = RedisQueueStore(None, settings)\n"
        # checkouts before status_constants sent the settings as ARGV 2 and 4-6
        "old = hasattr(store, '_status_args')\n"
        "args = [settings.heartbeat_ttl_ms, '', *store._status_args] if old else ['']\n"
        # checkouts since the status head send the counts and the version first
        "first = 'local seq = ARGV[5]' in store._status.source\n"
        "print(json.dumps({'source': store._status.source,\n"
        f"    'keys': list(_EventKeys({EVENT!r}).status_keys),\n"
        "    'args': args, 'joined_at': 1 if old else 0, 'counts_first': first}))\n"
    )
    python = tree / ".venv" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return StatusCall(**json.loads(out))


def fill(client: redis.Redis, admitted: int, gap_ms: int) -> int:
    """The event both sides read; returns the fill's ms (the waiters' join time)."""
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for seq in range(1, WAITERS + 1):
        pipe.zadd(WAIT, {str(seq): seq})
        pipe.zadd(SEEN, {str(seq): now + 3_000_000})
    for n in range(1, admitted + 1):
        pipe.zadd(ADMITTED, {str(WAITERS + n): now - n * gap_ms})
    # as join.lua starts it (held count 0, a version: version.lua); a checkout without the
    # count or the version ignores the field
    pipe.hset(BUCKET, mapping={"tokens": 3, "ts": now, "used": admitted, "held": 0, "v": 1})
    pipe.execute()
    return now


def cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def one_round(client: redis.Redis, sha: str, call: StatusCall, counts: list[Any]) -> float:
    """Redis CPU µs per call over CALLS pipelined calls."""
    before = cpu_seconds(client)
    pipe = client.pipeline(transaction=False)
    for i in range(CALLS):
        seq = 1 + (i * 7) % WAITERS
        pipe.evalsha(sha, len(call.keys), *call.keys, *call.argv(seq, counts))
    pipe.execute()
    return (cpu_seconds(client) - before) / CALLS * 1e6


def kept_state(client: redis.Redis, sha: str, call: StatusCall) -> tuple[list[Any], list[Any]]:
    """The counts (and version) sent by a worker that keeps what status.lua let it keep, and
    by one that keeps nothing. A checkout from before the event copy (version.lua) answers
    a first call with 16 values and takes the counts' (used, read at, exact until); a later
    one answers with 20 (the event and the counts after the first five) and takes the
    event's version after them."""
    first = client.evalsha(sha, len(call.keys), *call.keys, *call.argv(1, [-1, 0, 0, ""]))
    if len(first) == 16:
        return [first[7], first[2], first[15]], [-1, 0, 0]
    return [first[4], first[2], first[19], first[14]], [-1, 0, 0, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a-tree", type=Path, required=True, help="the checkout before")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--admitted", type=int, default=40, help="admissions kept (40)")
    parser.add_argument("--gap-ms", type=int, default=20_000, help="ms between them (20000)")
    options = parser.parse_args()
    calls = {"A": status_call(options.a_tree), "B": status_call(Path.cwd())}
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
            joined = fill(client, options.admitted, options.gap_ms)
            for call in calls.values():
                call.args[call.joined_at] = joined  # the token's join time: the epoch check runs
            shas = {side: client.script_load(call.source) for side, call in calls.items()}
            results: dict[str, list[float]] = {}
            for _ in range(options.rounds):
                for side, call in calls.items():
                    kept, nothing = kept_state(client, shas[side], call)
                    results.setdefault(side, []).append(one_round(client, shas[side], call, kept))
                    results.setdefault(f"{side} recount", []).append(
                        one_round(client, shas[side], call, nothing)
                    )
            for side, values in results.items():
                print(
                    f"{side}: Redis CPU µs per status call min {min(values):.2f}, "
                    f"median {statistics.median(values):.2f} "
                    f"({', '.join(f'{v:.1f}' for v in values)})"
                )
            for kind in ("", " recount"):
                ratio = statistics.median(results[f"B{kind}"]) / statistics.median(
                    results[f"A{kind}"]
                )
                print(f"B/A{kind} (median): {ratio:.3f}")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
