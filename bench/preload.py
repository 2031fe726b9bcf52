"""Fill a queue fast with the gateway's own join script, and mint waiting tokens for it.

Going through HTTP would take minutes for a million waiters, so the harness calls the very
join.lua the store uses (same keys, same arguments) in pipelines of EVALSHA. The data in Redis
is therefore exactly what a million anonymous POST /join requests would have left.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hiredis
import redis

from ticketgate.queuestore.redis_store import _EventKeys, queue_script
from ticketgate.redisio.scripts import Script
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.tokens import TokenSigner, WaitingClaims

PIPELINE_CHUNK = 5_000
IDEMPOTENCY_TTL_MS = QueueSettings().idempotency_ttl_ms  # IDEMPOTENCY_TTL_SEC's default
# Only read for a returning user's place; the gateway under test runs with a one-hour TTL.
PRELOAD_HEARTBEAT_TTL_MS = 3_600_000
Command = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Preloaded:
    event_id: str
    waiters: int
    seconds: float
    used_memory_before: int
    used_memory_after: int
    # seq -> joined_ms for the waiters picked to get a token.
    sample: dict[int, int]

    @property
    def bytes_per_waiter(self) -> float:
        return (self.used_memory_after - self.used_memory_before) / max(1, self.waiters)


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _join_script() -> Script:
    return queue_script("join")


def preload(
    client: redis.Redis,
    event_id: str,
    count: int,
    *,
    sample: int = 0,
    users: bool = False,
    idempotency: bool = False,
) -> Preloaded:
    """Join `count` waiters to `event_id`; keep seq/joined_ms of `sample` spread evenly.

    `users=True` joins as distinct authenticated users (one HASH field each, what the
    duplicate-join check needs); `idempotency=True` sends an Idempotency-Key per join (one
    string key each, kept IDEMPOTENCY_TTL_SEC). Both off is an anonymous join, the common case.
    """
    script = _join_script()
    client.script_load(script.source)
    keys = _EventKeys(event_id)
    step = max(1, count // sample) if sample else 0
    picked: dict[int, int] = {}
    before = used_memory(client)
    started = time.perf_counter()
    with _RawPipe(client) as pipe:
        done = 0
        while done < count:
            size = min(PIPELINE_CHUNK, count - done)
            commands: list[Command] = []
            for i in range(done, done + size):
                user = f"bench-user-{i}" if users else ""
                slot = keys.idempotency(user, f"bench-key-{i}") if idempotency else keys.users
                commands.append(
                    (
                        "EVALSHA",
                        script.sha,
                        10,
                        keys.seq,
                        keys.wait,
                        keys.seen,
                        keys.users,
                        slot,
                        keys.bucket,
                        keys.cfg,
                        keys.marks,
                        keys.owners,
                        keys.admitted_users,
                        user,
                        "1" if idempotency else "0",
                        IDEMPOTENCY_TTL_MS,
                        PRELOAD_HEARTBEAT_TTL_MS,
                        "0",  # any event: the bench's gateways run QUEUE_AUTO_CREATE_EVENTS=true
                    )
                )
            for offset, reply in enumerate(pipe.run(commands)):
                kind, seq, joined_ms, _position = reply
                if kind != 1:
                    raise RuntimeError(f"preload join {done + offset} was not new: kind={kind}")
                if step and (done + offset) % step == 0 and len(picked) < sample:
                    picked[int(seq)] = int(joined_ms)
            done += size
    seconds = time.perf_counter() - started
    return Preloaded(event_id, count, seconds, before, used_memory(client), picked)


class _RawPipe:
    """A bare socket with hiredis packing and parsing: redis-py's per-command Python work
    would make the preload CPU-bound at ~40k joins/s, this runs at what Redis can execute."""

    def __init__(self, client: redis.Redis) -> None:
        kwargs = client.connection_pool.connection_kwargs
        self._address = (str(kwargs.get("host", "127.0.0.1")), int(kwargs.get("port", 6379)))
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()

    def __enter__(self) -> _RawPipe:
        self._sock = socket.create_connection(self._address, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()

    def run(self, commands: list[Command]) -> list[Any]:
        assert self._sock is not None
        pack: Any = hiredis.pack_command  # its stub types the argument as a 1-tuple
        self._sock.sendall(b"".join(pack(command) for command in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            data = self._sock.recv(1 << 20)
            if not data:
                raise ConnectionError("redis closed the connection during preload")
            self._reader.feed(data)
            while (reply := self._reader.gets()) is not False:
                if isinstance(reply, Exception):
                    raise reply
                replies.append(reply)
        return replies


def write_tokens(path: Path, secret: bytes, event_id: str, sample: dict[int, int]) -> int:
    """Sign one anonymous waiting token per sampled waiter, shuffled, one per line."""
    signer = TokenSigner(secret)
    tokens = [
        signer.sign_waiting(WaitingClaims(event_id, seq, ms, "")) for seq, ms in sample.items()
    ]
    random.Random(0).shuffle(tokens)
    path.write_text("\n".join(tokens) + "\n", encoding="ascii")
    return len(tokens)


def remove_event(client: redis.Redis, event_id: str, count: int, idempotency: bool) -> None:
    """Drop a side-measurement event's keys with DEL: UNLINK frees in a background thread,
    which would leak into the next used_memory baseline."""
    keys = _EventKeys(event_id)
    client.delete(keys.seq, keys.wait, keys.seen, keys.users, keys.admitted, keys.bucket)
    if idempotency:
        for first in range(0, count, 10_000):
            last = min(count, first + 10_000)
            client.delete(*(keys.idempotency("", f"bench-key-{i}") for i in range(first, last)))


def key_bytes(client: redis.Redis, event_id: str) -> dict[str, int]:
    """MEMORY USAGE (all elements) of the two sorted sets a waiter lives in."""
    keys = _EventKeys(event_id)
    return {
        "wait_zset": int(client.memory_usage(keys.wait, samples=0) or 0),
        "seen_zset": int(client.memory_usage(keys.seen, samples=0) or 0),
    }


def waiting(client: redis.Redis, event_id: str) -> int:
    return int(client.zcard(_EventKeys(event_id).wait))


def last_seq(client: redis.Redis, event_id: str) -> int:
    return int(client.get(_EventKeys(event_id).seq) or 0)


def users_count(client: redis.Redis, event_id: str) -> int:
    """Signed-in users recorded for the event (one users-HASH field per authenticated join)."""
    return int(client.hlen(_EventKeys(event_id).users))


def events_with_prefix(client: redis.Redis, prefix: str) -> list[str]:
    """Events whose id starts with `prefix` and that have a join counter in Redis."""
    head, _, tail = _EventKeys("\x00").seq.partition("\x00")  # the store's key layout
    pattern = f"{head}{_glob_escape(prefix)}*{tail}"
    events = []
    for raw in client.scan_iter(match=pattern, count=10_000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        events.append(key[len(head) : -len(tail)])
    return sorted(events)


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
