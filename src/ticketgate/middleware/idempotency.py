"""Idempotency-Key: a retried POST gets the first attempt's answer instead of a second effect.

Why an interceptor and not the handlers: every mutating route needs the same claim, replay and
release dance, and the reference gateway got it wrong in three ways this module exists to
avoid — keys were shared between users (it ran before auth), concurrent retries both ran (no
in-flight marker), and failures were cached forever. Here:

- the key is scoped by caller (the user, or for an anonymous request the client key: its
  IP as the rate limiter resolves it, after trusted proxies), method, path and key, so two
  callers never share an answer: two anonymous fans sending the same key used to get the
  same waiting token;
- the first request claims the key atomically with an in-flight marker carrying a lease, so a
  concurrent duplicate gets 409 IDEMPOTENCY_IN_PROGRESS and a crashed worker's claim expires;
- the fingerprint (query string and body) is kept with the claim, so reusing a key for a
  different request is a 409 IDEMPOTENCY_CONFLICT rather than a wrong replay;
- a finished answer is kept for IDEMPOTENCY_TTL_SEC and replayed with `X-Idempotency-Cached`;
  5xx answers and handler exceptions release the key, because they are not the answer.
  408 and 429 are released too: they say "try again later", and replaying them for a day
  would turn a transient refusal into a permanent one. Every other 4xx is stored.

Storage sits behind `IdempotencyStore`: Redis (one Lua script to claim-or-fetch, one to
complete or release; shared by every worker and pod) or an in-process, bounded memory store
for the embedded single-worker mode. When the store cannot answer, the request is refused
with a fast 503 UPSTREAM_UNAVAILABLE (Retry-After: 1) rather than run unprotected.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec

from ticketgate.edge.errors import ApiError, error_body
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import Handler, Idempotency, Route
from ticketgate.middleware.observer import IdempotencyObserver
from ticketgate.middleware.settings import IdempotencySettings
from ticketgate.redisio.errors import REDIS_FAILURES, note_unavailable, unavailable_reason
from ticketgate.redisio.executor import RedisExecutor
from ticketgate.redisio.scripts import Script
from ticketgate.waitingroom.model import QueueError

log = logging.getLogger("ticketgate.idempotency")

HEADER = b"idempotency-key"
# A valid Idempotency-Key: 1-255 printable ASCII characters (the OpenAPI document states it).
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
CACHED_HEADER = (b"x-idempotency-cached", b"true")
_RETRY_NOW = ((b"retry-after", b"1"),)
# Statuses that mean "not now" rather than "no": released like 5xx, never replayed.
_TRANSIENT_4XX = frozenset({408, 429})
# Per-request or per-connection headers a replay must not repeat; the gateway adds
# content-type, content-length and x-request-id itself.
_UNSTORED_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"x-request-id",
        b"set-cookie",
        b"date",
        b"server",
        b"connection",
        b"ratelimit",
        b"ratelimit-policy",
        b"x-ratelimit-limit",
        b"x-ratelimit-remaining",
        b"x-ratelimit-reset",
        b"x-idempotency-cached",
    }
)


# --------------------------------------------------------------------------- key helpers


def _validated(raw: bytes) -> str:
    key = raw.decode("latin-1")
    if IDEMPOTENCY_KEY.fullmatch(key) is None:
        raise ApiError(
            "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-255 printable ASCII characters"
        )
    return key


def idempotency_key_of(request: Request) -> str:
    """The request's validated Idempotency-Key, or "" when none was sent.

    For handlers that forward the key to a backend. Raises 400 INVALID_IDEMPOTENCY_KEY when
    the header is present but malformed (the interceptor has normally refused it already).
    """
    raw = request.headers.get(HEADER)
    return "" if raw is None else _validated(raw)


def _scope(user_id: str, method: str, path: str, key: str, client: str = "") -> str:
    who = f"u:{user_id}" if user_id else f"ip:{client}"
    text = f"{who}\x00{method}\x00{path}\x00{key}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def scoped_idempotency_key(request: Request) -> str:
    """A key safe to hand to a backend that dedupes on the key alone: unique per user, method,
    path and client key (a hex digest), or "" when no key was sent."""
    key = idempotency_key_of(request)
    return _scope(request.user_id, request.method, request.path, key) if key else ""


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256(request.query)
    digest.update(b"\x00")
    digest.update(request.body)
    return digest.hexdigest()[:32]


# --------------------------------------------------------------------------- stored answers


class _Record(msgspec.Struct, array_like=True):
    version: int
    status: int
    content_type: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


_encode_record = msgspec.msgpack.Encoder().encode
_decode_record = msgspec.msgpack.Decoder(_Record).decode
_RECORD_VERSION = 1


def encode_response(response: Response) -> bytes:
    headers = tuple(pair for pair in response.headers if pair[0].lower() not in _UNSTORED_HEADERS)
    return _encode_record(
        _Record(_RECORD_VERSION, response.status, response.content_type, headers, response.body)
    )


def decode_response(record: bytes) -> Response:
    stored = _decode_record(record)
    return Response(
        stored.status, stored.body, (*stored.headers, CACHED_HEADER), stored.content_type
    )


def is_stored(status: int, headers: tuple[tuple[bytes, bytes], ...] = ()) -> bool:
    """Which answers are final: everything below 500 except 408, 429 and any answer that
    carries Retry-After (e.g. enter's NOT_READY): "try later" must not be replayed for a day."""
    if status >= 500 or status in _TRANSIENT_4XX:
        return False
    return not any(name == b"retry-after" for name, _ in headers)


# --------------------------------------------------------------------------- stores


class ClaimState(enum.Enum):
    CLAIMED = 1  # the caller owns the key and must complete or release it
    IN_PROGRESS = 2  # another request with this key and fingerprint is running
    CONFLICT = 3  # the key was used for a different request
    DONE = 4  # a stored answer exists (Claim.record)


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    record: bytes = b""


class IdempotencyUnavailable(Exception):
    """The store cannot answer now; the request is refused with 503 rather than run."""


class IdempotencyStore(Protocol):
    """Atomic claim-or-fetch plus complete/release, guarded by an owner token so a worker
    whose lease ran out can never overwrite or delete the claim of the request after it."""

    async def start(self) -> None:
        """Get ready to serve before the first request. An unreachable store does not fail
        the start: its requests are refused with 503 until the store answers."""

    async def claim(self, scope: str, fingerprint: str, owner: str) -> Claim: ...

    async def complete(self, scope: str, fingerprint: str, owner: str, record: bytes) -> bool:
        """Store the answer; False when another request took the key over meanwhile."""

    async def release(self, scope: str, owner: str) -> bool:
        """Drop the claim if still ours, so a retry runs the handler again."""

    async def close(self) -> None: ...


class _Entry:
    __slots__ = ("expires_at", "fingerprint", "owner", "record")

    def __init__(self, fingerprint: str, owner: str, expires_at: float) -> None:
        self.fingerprint = fingerprint
        self.owner = owner  # "" once completed
        self.record = b""
        self.expires_at = expires_at


class MemoryIdempotencyStore:
    """In-process store for the embedded (single-worker) mode: same semantics as Redis,
    expiring, and bounded — when full, the least recently written entries go first (an
    evicted in-flight claim would let a duplicate run, so size the bound well above the
    answers retained within IDEMPOTENCY_TTL_SEC)."""

    name = "memory"

    def __init__(
        self, settings: IdempotencySettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = settings.ttl_sec
        self._lease = settings.lease_sec
        self._max = settings.memory_max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, scope: str, now: float) -> _Entry | None:
        entry = self._entries.get(scope)
        if entry is not None and entry.expires_at <= now:
            del self._entries[scope]
            return None
        return entry

    def _put(self, scope: str, entry: _Entry, now: float) -> None:
        entries = self._entries
        entries[scope] = entry
        entries.move_to_end(scope)
        while entries:  # expired entries at the old end cost nothing to drop
            first = next(iter(entries.values()))
            if first.expires_at > now:
                break
            entries.popitem(last=False)
        while len(entries) > self._max:
            entries.popitem(last=False)

    async def claim(self, scope: str, fingerprint: str, owner: str) -> Claim:
        now = self._clock()
        entry = self._live(scope, now)
        if entry is None:
            self._put(scope, _Entry(fingerprint, owner, now + self._lease), now)
            return Claim(ClaimState.CLAIMED)
        if entry.fingerprint != fingerprint:
            return Claim(ClaimState.CONFLICT)
        if entry.owner:
            return Claim(ClaimState.IN_PROGRESS)
        return Claim(ClaimState.DONE, entry.record)

    async def complete(self, scope: str, fingerprint: str, owner: str, record: bytes) -> bool:
        now = self._clock()
        entry = self._live(scope, now)
        if entry is not None and entry.owner != owner:
            return False
        done = _Entry(fingerprint, "", now + self._ttl)
        done.record = record
        self._put(scope, done, now)
        return True

    async def release(self, scope: str, owner: str) -> bool:
        entry = self._live(scope, self._clock())
        if entry is None or entry.owner != owner:
            return False
        del self._entries[scope]
        return True

    async def start(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        self._entries.clear()


# One hash per key: fp (fingerprint), owner (set while in flight), resp (the stored answer).
# The key expires after the lease while in flight and after the TTL once answered.
_CLAIM_LUA = """
-- KEYS: 1 idem:{scope}; ARGV: 1 fingerprint, 2 owner token, 3 lease ms
-- Returns {1} claimed, {2} in progress, {3} conflict, {4, record} done.
local held = redis.call('HMGET', KEYS[1], 'fp', 'owner', 'resp')
if not held[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1}
end
if held[1] ~= ARGV[1] then
  return {3}
end
if held[3] then
  return {4, held[3]}
end
return {2}
"""

_COMPLETE_LUA = """
-- KEYS: 1 idem:{scope}; ARGV: 1 owner token, 2 'store' or 'release',
-- 3 fingerprint, 4 record, 5 retention ms.
-- Only the owner of the claim may store or release it; an answer whose claim already
-- expired unclaimed is still stored (the work was done), one taken over is not.
local owner = redis.call('HGET', KEYS[1], 'owner')
if ARGV[2] == 'release' then
  if owner == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
  end
  return 0
end
if owner ~= ARGV[1] and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[3], 'resp', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisIdempotencyStore:
    """Shared by every worker and pod. Keys are `idem:{<scope-hash>}`: the hash tag puts each
    key in its own slot, so both scripts are single-key and Redis Cluster safe."""

    name = "redis"

    def __init__(
        self,
        executor: RedisExecutor,
        settings: IdempotencySettings,
        *,
        owns_executor: bool = False,
    ) -> None:
        self._redis = executor
        self._owns_executor = owns_executor  # False when shared with the queue store
        self._lease_ms = settings.lease_ms
        self._ttl_ms = settings.ttl_ms
        self._claim = Script("idempotency_claim", _CLAIM_LUA)
        self._complete = Script("idempotency_complete", _COMPLETE_LUA)

    @staticmethod
    def key(scope: str) -> str:
        return f"idem:{{{scope}}}"

    async def start(self) -> None:
        """Load both scripts at start so the first requests need no EVAL fallback; with Redis
        down they are sent with their first call instead (the queue store warns about it)."""
        with contextlib.suppress(*REDIS_FAILURES):
            await self._claim.preload(self._redis)
            await self._complete.preload(self._redis)

    async def claim(self, scope: str, fingerprint: str, owner: str) -> Claim:
        try:
            reply = await self._claim.run(
                self._redis, (self.key(scope),), fingerprint, owner, self._lease_ms
            )
        except REDIS_FAILURES as exc:
            raise IdempotencyUnavailable(str(exc)) from exc
        state = ClaimState(int(reply[0]))
        return Claim(state, bytes(reply[1])) if state is ClaimState.DONE else Claim(state)

    async def _finish(self, scope: str, *args: object) -> bool:
        try:
            reply = await self._complete.run(self._redis, (self.key(scope),), *args)
        except REDIS_FAILURES as exc:
            raise IdempotencyUnavailable(str(exc)) from exc
        return int(reply) == 1

    async def complete(self, scope: str, fingerprint: str, owner: str, record: bytes) -> bool:
        return await self._finish(scope, owner, "store", fingerprint, record, self._ttl_ms)

    async def release(self, scope: str, owner: str) -> bool:
        return await self._finish(scope, owner, "release")

    async def close(self) -> None:
        if self._owns_executor:
            await self._redis.close()


# --------------------------------------------------------------------------- interceptor


class IdempotencyInterceptor:
    """The `Interceptor` for Route.idempotency; runs after auth (needs request.principal).

    NONE routes are returned unwrapped; OPTIONAL routes without the header cost one dict
    lookup; REQUIRED routes without it get 400 IDEMPOTENCY_REQUIRED.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        client_ip: Callable[[str, bytes | None], str] | None = None,
        observer: IdempotencyObserver | None = None,
    ) -> None:
        self.store = store
        self._observer = observer  # sees each answer given instead of the handler
        # (peer, X-Forwarded-For) -> the client's address, trusted proxies applied: the scope
        # of an anonymous caller's keys (the rate limiter's ClientKeys.client_ip).
        self._client_ip = client_ip or (lambda peer, forwarded: peer)

    def wrap(self, route: Route, handler: Handler) -> Handler:
        if route.idempotency is Idempotency.NONE:
            return handler
        required = route.idempotency is Idempotency.REQUIRED
        run = self._run

        # A plain function handing back the awaitable, not a coroutine around it: a request
        # without a key (most joins) then costs no layer of awaiting here.
        def idempotent(request: Request) -> Awaitable[Response]:
            raw = request.headers.get(HEADER)
            if raw is None:
                if required:
                    raise ApiError(
                        "IDEMPOTENCY_REQUIRED", "this endpoint needs an 'Idempotency-Key' header"
                    )
                return handler(request)
            return run(request, handler, _validated(raw))

        return idempotent

    async def _run(self, request: Request, handler: Handler, key: str) -> Response:
        store = self.store
        user_id = request.user_id
        client = (
            ""
            if user_id
            else self._client_ip(request.client, request.headers.get(b"x-forwarded-for"))
        )
        scope = _scope(user_id, request.method, request.path, key, client)
        request.idempotency_scope = scope
        fingerprint = _fingerprint(request)
        owner = os.urandom(12).hex()
        try:
            claim = await store.claim(scope, fingerprint, owner)
        except IdempotencyUnavailable as exc:
            # One line per state every few seconds, not one per refused request.
            cause = exc.__cause__ or exc
            note_unavailable(unavailable_reason(cause) or "unreachable", cause)
            raise ApiError(
                "UPSTREAM_UNAVAILABLE",
                "idempotency store unavailable; retry shortly",
                status=503,
                headers=_RETRY_NOW,
            ) from None
        if claim.state is not ClaimState.CLAIMED:
            return self._answer_from_claim(claim)

        try:
            response = await handler(request)
        except (ApiError, QueueError) as exc:
            error = exc if isinstance(exc, ApiError) else ApiError.from_refusal(exc)
            rendered = Response(
                error.status,
                error_body(error.code, error.message, request.trace_id, error.extra),
                error.headers,
            )
            await self._finish(scope, fingerprint, owner, rendered)
            raise
        except BaseException:
            await self._release(scope, owner)
            raise
        await self._finish(scope, fingerprint, owner, response)
        return response

    def _answer_from_claim(self, claim: Claim) -> Response:
        observer = self._observer
        if claim.state is ClaimState.DONE:
            if observer is not None:
                observer.hit("replay")
            return decode_response(claim.record)
        if claim.state is ClaimState.IN_PROGRESS:
            if observer is not None:
                observer.hit("in_progress")
            raise ApiError(
                "IDEMPOTENCY_IN_PROGRESS",
                "a request with this Idempotency-Key is still being processed; retry shortly",
                headers=_RETRY_NOW,
            )
        if observer is not None:
            observer.hit("conflict")
        raise ApiError(
            "IDEMPOTENCY_CONFLICT",
            "this Idempotency-Key was already used for a different request",
        )

    async def _finish(self, scope: str, fingerprint: str, owner: str, response: Response) -> None:
        """Keep a final answer, release a transient one. A store failure here must not cost
        the caller the answer it is owed: it is returned anyway and the lease lapses."""
        if not is_stored(response.status, response.headers):
            await self._release(scope, owner)
            return
        try:
            if not await self.store.complete(scope, fingerprint, owner, encode_response(response)):
                log.warning("idempotency claim was taken over before the answer was stored")
        except IdempotencyUnavailable as exc:
            log.warning("idempotency answer not stored (%s); the lease will lapse", exc)

    async def _release(self, scope: str, owner: str) -> None:
        try:
            await self.store.release(scope, owner)
        except IdempotencyUnavailable as exc:
            log.warning("idempotency claim not released (%s); the lease will lapse", exc)


def build_idempotency(
    settings: IdempotencySettings,
    executor: RedisExecutor | None,
    client_ip: Callable[[str, bytes | None], str] | None = None,
    observer: IdempotencyObserver | None = None,
) -> IdempotencyInterceptor:
    """Redis when the gateway has an executor (shared by all workers), memory otherwise."""
    store: IdempotencyStore
    if executor is not None:
        store = RedisIdempotencyStore(executor, settings)
    else:
        store = MemoryIdempotencyStore(settings)
    return IdempotencyInterceptor(store, client_ip, observer)
