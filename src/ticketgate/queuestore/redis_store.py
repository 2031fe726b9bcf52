"""Queue store on Redis: each operation is one Lua script on the keys of one event.

All keys of an event carry the hash tag `{event_id}` so a script never crosses slots in
Redis Cluster. Per waiter Redis keeps two sorted-set entries (order and last-seen); tokens
are signed and stateless, so there is no key per token.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from ticketgate.redisio.errors import (
    REDIS_FAILURES,
    client_message,
    note_unavailable,
    unavailable_reason,
)
from ticketgate.redisio.executor import PackedHead, RedisExecutor
from ticketgate.redisio.scripts import Script
from ticketgate.waitingroom.admission import HELD_OFFSET, AdmissionPolicy, refilled
from ticketgate.waitingroom.eta import entry_grace_ms
from ticketgate.waitingroom.model import (
    AdmissionCounts,
    ClaimOutcome,
    EnterOutcome,
    EnterResult,
    EventExists,
    EventNotFound,
    EventOverrides,
    EventState,
    EventStats,
    Frontier,
    JoinResult,
    LeaveOutcome,
    QueueClosed,
    QueueError,
    QueueUnavailable,
    Registration,
    SoldOut,
    StatusResult,
    UserAlreadyAdmitted,
    WaiterState,
)
from ticketgate.waitingroom.settings import QueueSettings

log = logging.getLogger("ticketgate.queuestore")
_LUA = "ticketgate.queuestore.lua"
# Each script and the shared Lua prepended to it (Lua has no include): "clock" (now_ms(),
# for every script that reads the time), "frontier" (the bucket, for the scripts that decide
# on it), "waiter" (forget(), for every script that removes a waiter), "counts" (admissions(),
# the ETA's admission counts), "version" (event_changed(), for every script that writes what
# status callers keep).
_PRELUDES: dict[str, tuple[str, ...]] = {
    "join": ("clock", "waiter", "version"),
    "status": ("clock", "waiter", "counts"),
    "enter": ("clock", "frontier", "waiter", "version"),
    "leave": ("waiter",),
    "sweep": ("clock", "frontier", "waiter", "version"),
    "claim_reservation": (),
    "settle_reservation": (),
    "stats": ("clock", "frontier", "counts"),
    "configure": ("clock", "version"),
}
_KEY_CACHE_LIMIT = 4096
# The event registry: a sorted set of event ids scored by their waiting count, outside every
# event's slot (so written by plain commands, never by a script), trimmed to the largest
# REGISTRY_CAP so ids made up by clients cannot grow it without bound.
REGISTRY_KEY = "tg:events"
REGISTRY_CAP = 10_000
_REGISTRY_CHUNK = 500


class _Admissions(NamedTuple):
    """An event's admission counts as status.lua last read them (lua/counts.lua), with what
    says whether they are still exact: the admissions granted then (`used`: a new admission
    changes it) and the span of ms in which they hold: from their reading until one of them
    drops out of its window."""

    used: int
    read_ms: int
    exact_until_ms: int
    last_1m: int
    last_5m: int
    last_15m: int
    oldest_ms: int  # 0: none kept


_NO_ADMISSIONS = _Admissions(-1, 0, 0, 0, 0, 0, 0)  # -1 never matches: status.lua counts
_WAITER_STATES = {state.value: state for state in WaiterState}  # cheaper than WaiterState(n)


class _EventCopy(NamedTuple):
    """This process's copy of what status.lua sends of an event only when it changed: the
    policy with the operator's overrides applied, the bucket as last written (`tokens` None
    while it never was: full) and the version that says the copy is current (version.lua).
    The same for every fan polling the event, so one copy serves them all."""

    version: bytes | str
    policy: AdmissionPolicy
    capacity: float
    tokens: float | None
    updated_ms: int
    lapsed: int
    event_state: EventState  # from the overrides' flags, worked out once per copy


def _event_copy(raw: list[Any], settings: QueueSettings) -> _EventCopy:
    """The event part of a status.lua reply (its overrides, bucket and version)."""
    overrides = EventOverrides.from_raw([_text(value) for value in raw[:6]])
    policy = AdmissionPolicy.of(settings, overrides)
    tokens = _text(raw[6])
    return _EventCopy(
        raw[9],
        policy,
        float(policy.capacity),
        float(tokens) if tokens else None,
        int(raw[7]),
        int(raw[8]),
        EventState.of(
            paused=overrides.paused, closed=overrides.closed, sold_out=overrides.sold_out
        ),
    )


def _unavailable(exc: Exception) -> QueueUnavailable | None:
    """A transient Redis failure (redisio/errors.py) as the 503 it becomes (QueueUnavailable,
    with a message that names the state, never the server); None for anything else, which
    is raised as it is."""
    reason = unavailable_reason(exc)
    if reason is None:
        return None
    note_unavailable(reason, exc)
    return QueueUnavailable(client_message(reason), retry_after_sec=1)


class _EventKeys:
    __slots__ = (
        "admissions",
        "admitted",
        "admitted_users",
        "bucket",
        "cfg",
        "copy",
        "join_head",
        "join_keys",
        "marks",
        "owners",
        "prefix",
        "seen",
        "seq",
        "status_head",
        "status_head_copy",
        "status_head_counts",
        "status_keys",
        "users",
        "wait",
    )

    def __init__(self, event_id: str) -> None:
        self.prefix = f"tg:{{{event_id}}}:"
        self.seq = self.prefix + "seq"
        self.wait = self.prefix + "wait"
        self.seen = self.prefix + "seen"
        self.users = self.prefix + "users"  # user -> 'seq:joined_ms' (signed-in waiters)
        self.owners = self.prefix + "owners"  # seq -> user, to clean `users` on any removal
        self.admitted_users = self.prefix + "admu"  # user -> seq: one admission per person
        self.admitted = self.prefix + "adm"
        # the bucket, the count of held earmarks and the epoch (join.lua): one HASH, one read
        self.bucket = self.prefix + "bucket"
        self.cfg = self.prefix + "cfg"  # operator overrides (model.OVERRIDE_FIELDS)
        self.marks = self.prefix + "marks"
        self.status_keys = (
            self.wait,
            self.seen,
            self.admitted,
            self.cfg,
            self.bucket,
            self.users,
            self.owners,
        )
        # A join without an idempotency key keeps its place in `users` (the slot, KEYS[5]).
        self.join_keys = (
            self.seq,
            self.wait,
            self.seen,
            self.users,
            self.users,
            self.bucket,
            self.cfg,
            self.marks,
            self.owners,
            self.admitted_users,
        )
        # The two calls every fan makes, their EVALSHA and keys packed once per event
        # (RedisQueueStore._event; Script.head); status's with the arguments of the copies
        # below, packed again when either is replaced (RedisQueueStore.status).
        self.join_head: PackedHead | None = None
        self.status_head: PackedHead | None = None
        self.status_head_counts: _Admissions | None = None
        self.status_head_copy: _EventCopy | None = None
        # This process's copy of the event's admission counts (the same for every fan who
        # polls the event): status.lua counts again only when it is no longer exact.
        self.admissions = _NO_ADMISSIONS
        # ... and of its overrides and bucket: status.lua sends them again when they changed.
        self.copy: _EventCopy | None = None

    def idempotency(self, user_id: str, key: str) -> str:
        digest = hashlib.sha256(f"{user_id}\x00{key}".encode()).hexdigest()[:32]
        return f"{self.prefix}idem:{digest}"

    def reservation(self, seq: int) -> str:
        return f"{self.prefix}rt:{seq}"

    def reservation_lease(self, seq: int) -> str:
        return f"{self.prefix}rt:{seq}:lease"


def queue_script(name: str, clock_lua: str | None = None, constants: str = "") -> Script:
    """lua/`name`.lua with its prelude; `clock_lua` (Lua source defining now_ms()) replaces
    lua/clock.lua's Redis TIME (see RedisQueueStore); `constants` (Lua source, e.g.
    status_constants) goes first."""
    prelude = _PRELUDES[name]
    head = f"{constants}\n" if constants else ""
    if clock_lua is None or "clock" not in prelude:
        if not head:
            return Script.load(_LUA, name, prelude)
        return Script(name, head + Script.load(_LUA, name, prelude).source)
    rest = tuple(part for part in prelude if part != "clock")
    return Script(name, f"{head}{clock_lua}\n{Script.load(_LUA, name, rest).source}")


def status_constants(settings: QueueSettings) -> str:
    """The process setting status.lua reads, as a Lua local put before its source: status is
    the call every waiting fan repeats, and an argument that never changes costs a little to
    pack in the gateway and to parse and convert in Redis on every call. (The policy is not
    there: the gateway applies the event's overrides to it, _event_copy.)"""
    return f"local HEARTBEAT_TTL_MS = {settings.heartbeat_ttl_ms}"


class RedisQueueStore:
    name = "redis"

    def __init__(
        self, executor: RedisExecutor, settings: QueueSettings, *, clock_lua: str | None = None
    ) -> None:
        """`clock_lua` is Lua source defining now_ms() in place of lua/clock.lua (Redis TIME):
        the contract tests drive this store and the memory store (its `clock`) on one clock
        they move. Expiries Redis enforces itself (PX) still follow Redis' own clock."""
        self._redis = executor
        self._settings = settings
        self._keys: dict[str, _EventKeys] = {}

        self._join = queue_script("join", clock_lua)
        self._status = queue_script("status", clock_lua, status_constants(settings))
        self._enter = queue_script("enter", clock_lua)
        self._leave = queue_script("leave", clock_lua)
        self._sweep = queue_script("sweep", clock_lua)
        self._claim = queue_script("claim_reservation", clock_lua)
        self._settle = queue_script("settle_reservation", clock_lua)
        self._stats = queue_script("stats", clock_lua)
        self._configure = queue_script("configure", clock_lua)
        policy = AdmissionPolicy.of(settings)
        self._enter_args = (
            settings.heartbeat_ttl_ms,
            settings.reservation_token_ttl_ms,
            *policy.script_args(),
        )
        self._sweep_args = (
            entry_grace_ms(settings.heartbeat_ttl_ms),
            HELD_OFFSET,
            *policy.script_args(),
        )
        # stats.lua takes the policy's capacity and refill per ms (not the min-wait pairs): the
        # same values enter.lua gets.
        self._stats_args = policy.script_args()[1:3]

    @property
    def scripts(self) -> tuple[Script, ...]:
        return (
            self._join,
            self._status,
            self._enter,
            self._leave,
            self._sweep,
            self._claim,
            self._settle,
            self._stats,
            self._configure,
        )

    async def start(self) -> None:
        """Load every script once at start, so the hot path is EVALSHA only. Redis down at
        start is a warning, not a failed start: the calls answer 503 until it is back, and
        a script Redis does not know yet is sent with its first call (Script.run)."""
        try:
            for script in self.scripts:
                await self._call(script.preload(self._redis))
        except QueueUnavailable as exc:
            log.warning("Redis not reachable at start (%s); serving 503 until it is", exc)

    def _event(self, event_id: str) -> _EventKeys:
        keys = self._keys.get(event_id)
        if keys is None:
            if len(self._keys) >= _KEY_CACHE_LIMIT:
                self._keys.clear()
            keys = self._keys[event_id] = _EventKeys(event_id)
            keys.join_head = self._join.head(keys.join_keys)
        return keys

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        """Await a Redis call; a transient failure (redisio/errors.py) becomes 503 with a
        message that names the state, never the server."""
        try:
            return await awaitable
        except Exception as exc:
            failure = _unavailable(exc)
            if failure is None:
                raise
            raise failure from exc

    async def join(self, event_id: str, user_id: str, idempotency_key: str) -> JoinResult:
        k = self._event(event_id)
        settings = self._settings
        keys, head = k.join_keys, k.join_head
        if idempotency_key:  # the join's place is kept under the key (its own slot)
            slot = k.idempotency(user_id, idempotency_key)
            keys, head = (*keys[:4], slot, *keys[5:]), None
        kind, seq, joined, position = await self._call(
            self._join.run(
                self._redis,
                keys,
                user_id,
                "1" if idempotency_key else "0",
                settings.idempotency_ttl_ms,
                settings.heartbeat_ttl_ms,
                "0" if settings.auto_create_events else "1",
                head=head,
            )
        )
        if kind >= 3:
            raise _join_refusal(kind)
        return JoinResult(int(seq), int(joined), int(position), duplicate=kind == 2)

    async def status(self, event_id: str, seq: int, joined_ms: int | None = None) -> StatusResult:
        k = self._event(event_id)
        known = k.admissions
        copy = k.copy
        head = k.status_head
        if head is None or k.status_head_counts is not known or k.status_head_copy is not copy:
            # what the copies send (status.lua's ARGV 1-4), packed once per change of either
            head = k.status_head = self._status.head(
                k.status_keys,
                known.used,
                known.read_ms,
                known.exact_until_ms,
                "" if copy is None else copy.version,
            )
            k.status_head_counts, k.status_head_copy = known, copy
        try:  # _call inline: one coroutine less on the call every waiting fan repeats
            reply = await self._status.run(
                self._redis,
                k.status_keys,
                seq,
                "" if joined_ms is None else joined_ms,
                head=head,
            )
        except Exception as exc:
            failure = _unavailable(exc)
            if failure is None:
                raise
            raise failure from exc
        state, position, now, held, used = reply[:5]
        size = len(reply)
        if size >= 15:  # the event changed since `copy` was read (or there was none)
            copy = _event_copy(reply[5:15], self._settings)
            k.copy = copy if copy.version else None
        if size == 10 or size == 20:
            c1, c5, c15, oldest, exact = reply[size - 5 :]
            known = k.admissions = _Admissions(used, now, exact, c1, c5, c15, oldest)
        assert copy is not None  # status.lua sends the event whenever the version differs
        policy = copy.policy
        tokens = copy.tokens
        oldest_ms = known.oldest_ms
        # positional (StatusResult's field order): made on every call
        return StatusResult(
            _WAITER_STATES[state],
            position,
            now,
            AdmissionCounts(
                known.last_1m, known.last_5m, known.last_15m, now - oldest_ms if oldest_ms else 0
            ),
            policy.window,
            policy.refill_per_sec,
            Frontier(
                copy.capacity
                if tokens is None
                else refilled(tokens, copy.updated_ms, now, copy.capacity, policy.refill_per_ms),
                used,
                held,
                copy.lapsed,
            ),
            policy.capacity,
            copy.event_state,
        )

    async def enter(self, event_id: str, seq: int, joined_ms: int, user_id: str) -> EnterResult:
        k = self._event(event_id)
        outcome, position, now, retry_ms = await self._call(
            self._enter.run(
                self._redis,
                (
                    k.wait,
                    k.seen,
                    k.users,
                    k.admitted,
                    k.bucket,
                    k.reservation(seq),
                    k.cfg,
                    k.owners,
                    k.admitted_users,
                ),
                seq,
                joined_ms,
                user_id,
                *self._enter_args,
            )
        )
        return EnterResult(EnterOutcome(outcome), int(position), int(now), int(retry_ms))

    async def leave(
        self, event_id: str, seq: int, user_id: str, joined_ms: int | None = None
    ) -> LeaveOutcome:
        k = self._event(event_id)
        outcome = await self._call(
            self._leave.run(
                self._redis,
                (k.wait, k.seen, k.users, k.bucket, k.owners),
                seq,
                "" if joined_ms is None else joined_ms,
            )
        )
        return LeaveOutcome(outcome)

    async def sweep(self, event_id: str, batch: int) -> int:
        k = self._event(event_id)
        removed = await self._call(
            self._sweep.run(
                self._redis,
                (k.wait, k.seen, k.users, k.owners, k.bucket, k.cfg),
                self._settings.heartbeat_ttl_ms,
                batch,
                *self._sweep_args,
            )
        )
        return int(removed)

    async def claim_reservation(
        self, event_id: str, seq: int, user_id: str, lease_id: str, lease_ms: int
    ) -> ClaimOutcome:
        k = self._event(event_id)
        keys = (k.reservation(seq), k.reservation_lease(seq))
        outcome = await self._call(self._claim.run(self._redis, keys, user_id, lease_id, lease_ms))
        return ClaimOutcome(int(outcome))

    async def settle_reservation(self, event_id: str, seq: int, lease_id: str, used: bool) -> None:
        k = self._event(event_id)
        keys = (k.reservation(seq), k.reservation_lease(seq))
        await self._call(self._settle.run(self._redis, keys, lease_id, "1" if used else "0"))

    async def waiting_count(self, event_id: str) -> int:
        return int(await self._call(self._redis.execute("ZCARD", self._event(event_id).wait)))

    async def event_stats(self, event_id: str) -> EventStats:
        k = self._event(event_id)
        reply = await self._call(
            self._stats.run(
                self._redis, (k.wait, k.admitted, k.cfg, k.marks, k.bucket), *self._stats_args
            )
        )
        waiting, now, c1, c5, c15, covered, head, used = (int(v) for v in reply[:8])
        return EventStats(
            waiting,
            now,
            AdmissionCounts(c1, c5, c15, covered),
            head,
            EventOverrides.from_raw([_text(v) for v in reply[9:15]]),
            Frontier(float(reply[8]), used, int(reply[16]), int(reply[17])),
            registered=bool(_text(reply[15])),
        )

    async def configure(
        self,
        event_id: str,
        changes: Mapping[str, str],
        registration: Registration = Registration.ANY,
    ) -> tuple[EventOverrides, EventOverrides]:
        k = self._event(event_id)
        flat: list[str] = [registration.value]
        for name, value in changes.items():
            flat += [name, value]
        reply = await self._call(self._configure.run(self._redis, (k.cfg, k.bucket), *flat))
        outcome = int(reply[0])
        if outcome == 2:
            raise EventNotFound(f"event {event_id} is not registered")
        if outcome == 3:
            raise EventExists(f"event {event_id} is registered already")
        values = [_text(v) for v in reply[1:]]
        return EventOverrides.from_raw(values[:6]), EventOverrides.from_raw(values[6:])

    async def register_events(self, waiting: Mapping[str, int]) -> None:
        items = list(waiting.items())
        for start in range(0, len(items), _REGISTRY_CHUNK):
            flat: list[object] = []
            for event_id, count in items[start : start + _REGISTRY_CHUNK]:
                flat += [count, event_id]
            await self._call(self._redis.execute("ZADD", REGISTRY_KEY, *flat))
        if items:
            await self._call(
                self._redis.execute("ZREMRANGEBYRANK", REGISTRY_KEY, 0, -(REGISTRY_CAP + 1))
            )

    async def list_events(self, limit: int) -> list[str]:
        members = await self._call(self._redis.execute("ZREVRANGE", REGISTRY_KEY, 0, limit - 1))
        return [_text(m) for m in members]

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.execute("PING"))
        except REDIS_FAILURES:
            return False

    async def close(self) -> None:
        await self._redis.close()


def _join_refusal(kind: int) -> QueueError:
    """join.lua's refusals (kinds 3-6), the same errors the memory store raises."""
    if kind == 3:
        return QueueClosed("this event's queue is closed to new waiters")
    if kind == 4:
        return SoldOut("this event is sold out")
    if kind == 5:
        return EventNotFound("no such event (it is not registered)")
    return UserAlreadyAdmitted("this user was admitted to this event already")


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
