"""The background sync that makes every process's local limiter share one budget per key.

Every `RATE_LIMIT_SYNC_INTERVAL_MS` the process sends, in one pipelined round trip, a Lua
script per batch of keys (per hash slot in Redis Cluster). For each key it adds what this
process admitted since its last push to the shared GCRA time in `rl:{<key>}:tat` and returns
how far that time is ahead of now (the key's debt); the process adopts that as its local
state. A key expires (PX) about a second after its bucket is full again, so Redis holds
nothing for idle clients.

Merging needs no per-request timestamps: a process sends its count `n` and `own`, the GCRA
of those `n` requests alone, relative to its clock; `max(tat + n * period, own)` is exactly
the bucket after them (max-plus algebra), and relative times make clocks of different pods
irrelevant (Redis's TIME is the one clock per key).

Over-admission while the others' consumption is still in flight (at most about one sync
interval of their traffic, or `push_threshold - 1` requests per process before a key is
seen shared) is not forgiven: it stays in the shared debt and is paid back by later
refusals, so the long-run rate per key is the configured one however many processes serve
it. When Redis is down the pushes are dropped and each process goes on limiting alone.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot

from ticketgate.middleware.ratelimit_gcra import LocalLimiter, Push
from ticketgate.redisio.executor import ClusterExecutor, RedisExecutor
from ticketgate.redisio.scripts import Script

log = logging.getLogger("ticketgate.ratelimit")

SYNC_SOURCE = """\
-- Rate-limit sync: merge one process's admissions into each key's shared GCRA time.
-- KEYS: rl:{<key>}:tat per key
-- ARGV: 1 period in us (1 / rate), 2 how long in ms to keep a key once its bucket is full,
--       3 per key two little-endian doubles: the admitted count and the own GCRA time
--       relative to now in us (those requests' bucket as if nobody else used the key)
-- Returns per key the debt in us: how far its shared time is ahead of now (0 = full).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local data = ARGV[3]
local pos = 1
local out = {}
for i, key in ipairs(KEYS) do
  local taken, own_ahead
  taken, own_ahead, pos = struct.unpack('<dd', data, pos)
  local tat = tonumber(redis.call('GET', key) or '0')
  if taken > 0 then
    tat = tat + taken * period
    local own = now + own_ahead
    if own > tat then tat = own end
    local ttl = keep
    if tat > now then ttl = ttl + math.ceil((tat - now) / 1000) end
    redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl)
  end
  local debt = 0
  if tat > now then debt = math.floor(tat - now) end
  out[i] = debt
end
return out
"""

SYNC_SCRIPT = Script("ratelimit_sync", SYNC_SOURCE)
# Keys per script call: one call then costs Redis ~0.3 ms, short enough not to stall the
# queue scripts pipelined behind it.
CHUNK = 256


def redis_key(key: str) -> str:
    return f"rl:{{{key}}}:tat"


class ClusterSync:
    """Pushes local consumption and pulls the shared debt, off the request path."""

    def __init__(
        self,
        limiter: LocalLimiter,
        executor: RedisExecutor,
        *,
        interval: float,
        max_batch: int = 4096,
        per_slot: bool | None = None,
    ) -> None:
        self.limiter = limiter
        self.executor = executor
        self.interval = interval
        self.max_batch = max_batch
        # Redis Cluster refuses a script whose keys span slots; group by slot there.
        self._per_slot = isinstance(executor, ClusterExecutor) if per_slot is None else per_slot
        self._period_us = repr(limiter.period * 1e6)
        # A push carries requests from up to one interval ago (more for keys below the push
        # threshold); merging them needs the shared time as it was then, even if it has since
        # fallen behind now. So a key outlives its debt by this much.
        self._keep_ms = max(1000, int(interval * 10_000))
        self._healthy = True
        self.rounds = 0  # script calls issued, for measurements and tests
        self.keys_pushed = 0

    async def preload(self) -> None:
        await SYNC_SCRIPT.preload(self.executor)

    async def sync_once(self, *, flush_all: bool = False) -> int:
        """One round trip: push every due key, adopt the shared debts. Returns keys pushed."""
        pushes = self.limiter.take_batch(self.max_batch, flush_all=flush_all)
        if not pushes:
            return 0
        groups = self._groups(pushes)
        self.rounds += len(groups)
        self.keys_pushed += len(pushes)
        # One chunk at a time, not all at once: Redis runs scripts one after another, so a
        # round of thousands of keys sent in one pipelined burst held every join and status
        # behind it for tens of milliseconds (p99 55-65 ms measured). Chunk by chunk, a hot
        # request waits behind at most one chunk (~1 ms).
        failure: BaseException | None = None
        for group in groups:
            try:
                result = await self._run(group)
            except Exception as exc:
                failure = exc
                continue
            for push, debt_us in zip(group, result, strict=True):
                self.limiter.apply(push, int(debt_us) / 1e6)
        self._report(failure)
        return len(pushes)

    async def _run(self, group: Sequence[Push]) -> list[Any]:
        # Per-key numbers travel as one binary argument: redis-py packs each argument on its
        # own, which made the arguments, not Redis, the main cost of a large round.
        numbers: list[float] = []
        for push in group:
            numbers.append(push.taken)
            numbers.append(push.own_ahead * 1e6)
        data = struct.pack(f"<{len(numbers)}d", *numbers)
        keys = tuple(redis_key(push.key) for push in group)
        reply = await SYNC_SCRIPT.run(self.executor, keys, self._period_us, self._keep_ms, data)
        return list(reply)

    def _groups(self, pushes: list[Push]) -> list[list[Push]]:
        if not self._per_slot:
            return [pushes[i : i + CHUNK] for i in range(0, len(pushes), CHUNK)]
        by_slot: dict[int, list[Push]] = {}
        for push in pushes:
            by_slot.setdefault(key_slot(redis_key(push.key).encode()), []).append(push)
        groups: list[list[Push]] = []
        for group in by_slot.values():
            groups += [group[i : i + CHUNK] for i in range(0, len(group), CHUNK)]
        return groups

    def _report(self, failure: BaseException | None) -> None:
        """Log the transitions only: a Redis outage must not write a line every 100 ms."""
        if failure is None:
            if not self._healthy:
                log.info("rate-limit sync with Redis restored")
            self._healthy = True
        elif self._healthy:
            self._healthy = False
            log.warning(
                "rate-limit sync with Redis failed (%s); limiting per process until it is back",
                failure,
            )

    async def run(self) -> None:
        """The background loop; the next round starts one interval after the last began."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rate-limit sync round failed")
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))
