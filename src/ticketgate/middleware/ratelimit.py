"""Rate limiting per user (authenticated) or per client IP, shared by every process and pod.

Why this shape (one Redis round trip per join/status is the hot path's budget, and one
rate-limit budget must hold across worker processes and pods): a Redis call per request
would add a round trip and double the hot path's Redis traffic, and folding a limiter into
each queue script would only cover the queue routes. So every decision is local, in memory,
and the processes agree in the background:

- Each process runs GCRA per key (`ratelimit_gcra.py`): one float per key; refused requests
  consume nothing, so a client at twice its rate gets exactly its rate, never zero.
- Every RATE_LIMIT_SYNC_INTERVAL_MS (100 ms) a background task pushes what this process
  admitted per key and reads back the cluster-wide state of those keys, in one pipelined
  round trip on the executor the queue scripts use (`ratelimit_sync.py`). Over-admission
  during that lag stays in the shared debt and is paid back by later refusals, so the
  long-run rate holds over any number of processes.
- Only keys that matter are pushed: keys another process uses (every round) and keys that
  reached `burst // 8` admissions here. A visitor who joins and polls a few times costs Redis
  about one key update per five requests, batched 256 keys to a script call.
- Memory is bounded: an LRU cap (RATE_LIMIT_MAX_KEYS) and eviction of keys idle for 10 s,
  lossless because an idle GCRA key holds no information. In Redis a key expires about a
  second after its bucket is full again.
- Redis down: pushes fail, each process keeps limiting on its own (the cluster then admits
  up to N times the rate) and no request waits for or fails on Redis. Without Redis
  (embedded mode) the limiter is local only.

Measured on the 2-core dev box: the guard adds ~1 µs per admitted request in process (it is a
plain call in the edge's request loop, not a wrapper around the handler), with or without
trusted proxies, plus what the server spends writing its five headers; a sync round
costs the gateway ~3.5 µs of CPU and Redis ~5.5 µs per key pushed. A client alternating over
two gateway processes at twice its limit received within 3 % of burst + rate x time.

The key is `user:<sub>` when a valid token identified the caller (auth runs first), else
`ip:<address>`, where X-Forwarded-For counts only when the peer is a trusted proxy (the
right-most address that is not itself a trusted proxy is the client) and an IPv6 client is
keyed by its /64, since one subscriber owns a whole /64 and could otherwise rotate through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import math
import socket
import time
from collections.abc import Callable
from typing import Any

from ticketgate.background import cancel_and_wait
from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request
from ticketgate.edge.routes import Check, Headers, Route
from ticketgate.middleware.observer import RateLimitObserver
from ticketgate.middleware.ratelimit_gcra import LocalLimiter
from ticketgate.middleware.ratelimit_sync import ClusterSync
from ticketgate.middleware.settings import IPNetwork, RateLimitSettings
from ticketgate.redisio.executor import RedisExecutor

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_FORWARDED_HOPS = 32
_HEADER_CACHE_LIMIT = 4096
_FORWARDED_CACHE_LIMIT = 8192
_PEER_CACHE_LIMIT = 1024
_UNKNOWN_CLIENT = "unknown"
_inet_pton = socket.inet_pton


@functools.lru_cache(maxsize=8192)
def _parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=8192)
def _client_id(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def _ipv4_int(text: str) -> int | None:
    """A strict dotted-quad IPv4 address as an integer, or None for anything else.

    inet_pton accepts only the canonical form (no leading zeros, ports or spaces), so the
    text itself is the address's canonical spelling and can serve as the key unchanged.
    """
    try:
        return int.from_bytes(_inet_pton(socket.AF_INET, text), "big")
    except OSError:
        return None


class ClientKeys:
    """Which bucket a request draws from."""

    def __init__(self, trusted_proxies: tuple[IPNetwork, ...]) -> None:
        self._proxies = trusted_proxies
        self._trusted = functools.lru_cache(maxsize=8192)(self._is_trusted)
        self._forwarded: dict[tuple[str, bytes], str] = {}
        self._peer_v4: dict[str, bool] = {}
        # The common chain (IPv4 proxy, IPv4 hops) is checked on integers: with many more
        # clients than the caches hold, ipaddress parsing cost ~6 µs a request (65,536
        # clients in the benchmark) against ~1 µs here.
        self._v4_ranges = tuple(
            (int(network.network_address), int(network.netmask))
            for network in trusted_proxies
            if isinstance(network, ipaddress.IPv4Network)
        )

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._proxies)

    def key(self, request: Request) -> tuple[str, bool]:
        """(`user:<id>` or `ip:<addr>`, whether it is a user key)."""
        principal = request.principal
        if principal is not None:
            return "user:" + principal.user_id, True
        return "ip:" + self.client_ip(
            request.client, request.headers.get(b"x-forwarded-for")
        ), False

    def client_ip(self, peer: str, forwarded_for: bytes | None) -> str:
        if not self._proxies or forwarded_for is None:
            if peer and ":" not in peer:
                return peer  # IPv4 straight from the server: already canonical
            address = _parse_address(peer)
            return _client_id(address) if address is not None else _UNKNOWN_CLIENT
        trusted = self._peer_v4.get(peer)
        if trusted is None:
            trusted = self._peer_is_trusted_v4(peer)
        if trusted and b"," not in forwarded_for:
            # One hop behind a trusted IPv4 proxy, the usual load balancer: a canonical IPv4
            # address there is the client, trusted or not (then the nearest trusted hop is the
            # client). No cache: with more clients than it holds (the benchmark's 65,536), its
            # misses and clears cost ~2.8 µs a request against ~0.4 µs for this.
            text = forwarded_for.decode("latin-1").strip()
            try:
                _inet_pton(socket.AF_INET, text)  # accepts only the canonical dotted quad
            except OSError:
                pass
            else:
                return text
        # A client sends the same chain on every request: remember the answer per chain.
        cache_key = (peer, forwarded_for)
        known = self._forwarded.get(cache_key)
        if known is None:
            known = self._resolve(peer, forwarded_for)
            if len(self._forwarded) >= _FORWARDED_CACHE_LIMIT:
                self._forwarded.clear()
            self._forwarded[cache_key] = known
        return known

    def _trusted_v4(self, address: int) -> bool:
        return any(address & mask == network for network, mask in self._v4_ranges)

    def _peer_is_trusted_v4(self, peer: str) -> bool:
        """Whether the connection comes from a trusted IPv4 proxy, remembered per peer: peers
        are the few load balancers in front of the gateway."""
        address = _ipv4_int(peer)
        known = address is not None and self._trusted_v4(address)
        if len(self._peer_v4) >= _PEER_CACHE_LIMIT:
            self._peer_v4.clear()
        self._peer_v4[peer] = known
        return known

    def _resolve_v4(self, peer: str, forwarded_for: bytes) -> str | None:
        """`_resolve` for an all-IPv4 chain; None hands anything else to the general path."""
        peer_address = _ipv4_int(peer)
        if peer_address is None:
            return None
        if not self._trusted_v4(peer_address):
            return peer
        client = peer
        for raw in reversed(forwarded_for.decode("latin-1").split(",")[-_MAX_FORWARDED_HOPS:]):
            text = raw.strip()
            address = _ipv4_int(text)
            if address is None:
                return None  # a port, IPv6 or garbage: the general path decides
            if not self._trusted_v4(address):
                return text
            client = text
        return client

    def _resolve(self, peer: str, forwarded_for: bytes) -> str:
        if self._v4_ranges:
            fast = self._resolve_v4(peer, forwarded_for)
            if fast is not None:
                return fast
        hop = _parse_address(peer)
        if hop is None:
            return _UNKNOWN_CLIENT
        if not self._trusted(hop):
            return _client_id(hop)  # a client cannot choose its key by sending the header
        hops = forwarded_for.decode("latin-1").split(",")
        for raw in reversed(hops[-_MAX_FORWARDED_HOPS:]):
            address = _parse_address(raw)
            if address is None:
                break  # garbage left of a trusted hop: the nearest trusted hop is the client
            if not self._trusted(address):
                return _client_id(address)
            hop = address
        return _client_id(hop)


class _Budget:
    """One rate and burst: the local limiter, its sync through Redis, and the headers that
    describe it (`"<name>";q=…;w=…`)."""

    def __init__(
        self,
        name: str,
        rps: float,
        burst: int,
        window: int,
        settings: RateLimitSettings,
        executor: RedisExecutor | None,
        *,
        clock: Callable[[], float],
        push_threshold: int | None,
        idle_ttl: float | None,
    ) -> None:
        self.limiter = LocalLimiter(
            rps,
            burst,
            max_keys=settings.max_keys,
            idle_ttl=idle_ttl,
            push_threshold=push_threshold,
            clock=clock,
            track=executor is not None,
        )
        self.sync: ClusterSync | None = None
        if executor is not None and settings.enabled:
            self.sync = ClusterSync(
                self.limiter, executor, interval=settings.sync_interval_ms / 1000.0
            )
        self._label = f'"{name}";r='.encode()
        self._policy = (b"ratelimit-policy", f'"{name}";q={burst};w={window}'.encode())
        self._limit = (b"x-ratelimit-limit", str(burst).encode())
        self._header_cache: dict[tuple[int, int, bool], Headers] = {}

    def headers(self, remaining: int, seconds: float, legacy: bool) -> Headers:
        """The IETF pair, plus the X-RateLimit-* trio when `legacy`. The pair alone says the
        same three numbers in two headers instead of five; uvicorn checks every header with
        two regexes and every client parses it. `bench.ab --preset edge` (edge on vs off,
        median of 5 rounds): join 89.6% with all five, 90.8% / 92.5% with the pair, 94.5%
        with none; status 91.7-92.7% with all five, 95.8% with the pair."""
        reset = math.ceil(seconds - 1e-9)
        cache_key = (remaining, reset, legacy)
        cached = self._header_cache.get(cache_key)
        if cached is None:
            if len(self._header_cache) >= _HEADER_CACHE_LIMIT:
                self._header_cache.clear()
            left, until = str(remaining).encode(), str(reset).encode()
            cached = (self._policy, (b"ratelimit", self._label + left + b";t=" + until))
            if legacy:
                cached += (
                    self._limit,
                    (b"x-ratelimit-remaining", left),
                    (b"x-ratelimit-reset", until),
                )
            self._header_cache[cache_key] = cached
        return cached

    def refusal(self, retry: float) -> ApiError:
        retry_after = max(1, math.ceil(retry - 1e-9))
        # Time until the bucket is full again: the wait for the next request plus a burst.
        full = retry + self.limiter.tau - self.limiter.period
        headers = (
            (b"retry-after", str(retry_after).encode()),
            *self.headers(0, full, True),
        )
        return ApiError(
            "RATE_LIMITED",
            f"too many requests; retry after {retry_after} s",
            headers=headers,
        )


class RateLimit:
    """The gateway's `Guard`: checks every rate-limited, non-exempt route.

    Two budgets: the default one (per user, per IP when anonymous) and the lower `auth`
    one of the routes marked `Route.rate_budget="auth"` (login, register; per IP). A failed
    authentication is charged too: the edge calls the route's check when auth fails, and
    with no principal the check draws from the client IP's budget, so guessing tokens is
    limited like any other traffic while a valid token costs nothing more than before.

    Owns the local limiters and, given a Redis executor, their background sync; the app
    calls `start()` at start-up and `stop()` before closing the executor.
    """

    def __init__(
        self,
        settings: RateLimitSettings,
        executor: RedisExecutor | None = None,
        *,
        observer: RateLimitObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        push_threshold: int | None = None,
        idle_ttl: float | None = None,
    ) -> None:
        self.settings = settings
        options: dict[str, Any] = {
            "clock": clock,
            "push_threshold": push_threshold,
            "idle_ttl": idle_ttl,
        }
        self.default = _Budget(
            "default",
            settings.rps,
            settings.burst,
            settings.window_seconds,
            settings,
            executor,
            **options,
        )
        self.auth = _Budget(
            "auth",
            settings.auth_rps,
            settings.auth_burst,
            settings.auth_window_seconds,
            settings,
            executor,
            **options,
        )
        self.limiter = self.default.limiter
        self.sync = self.default.sync
        self.keys = ClientKeys(settings.trusted_proxies)
        self._tasks: list[asyncio.Task[None]] = []
        self._observer = observer  # sees each refusal

    # -- the guard ------------------------------------------------------------------------

    def check(self, route: Route) -> Check | None:
        if (
            not self.settings.enabled
            or not route.rate_limited
            or self.settings.is_exempt(route.path)
        ):
            return None
        legacy = self.settings.headers == "all"
        if route.rate_budget == "auth":
            return self._auth_check(legacy)
        key_of = self.keys.key
        acquire = self.limiter.acquire
        remaining = self.limiter.remaining
        headers_for = self.default.headers
        refusal = self.default.refusal
        observer = self._observer

        def rate_limited(request: Request) -> Headers:
            key, is_user = key_of(request)
            admitted, seconds = acquire(key)
            if not admitted:
                if observer is not None:
                    observer.dropped("user" if is_user else "ip")
                raise refusal(seconds)
            return headers_for(remaining(seconds), seconds, legacy)

        return rate_limited

    def _auth_check(self, legacy: bool) -> Check:
        client_ip = self.keys.client_ip
        budget = self.auth
        acquire = budget.limiter.acquire
        remaining = budget.limiter.remaining
        observer = self._observer

        def auth_limited(request: Request) -> Headers:
            key = "ip:" + client_ip(request.client, request.headers.get(b"x-forwarded-for"))
            admitted, seconds = acquire(key)
            if not admitted:
                if observer is not None:
                    observer.dropped("ip")
                raise budget.refusal(seconds)
            return budget.headers(remaining(seconds), seconds, legacy)

        return auth_limited

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background syncs (or, without Redis, the idle-key eviction)."""
        if self._tasks or not self.settings.enabled:
            return
        loop = asyncio.get_running_loop()
        for budget in (self.default, self.auth):
            if budget.sync is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(budget.sync.preload(), budget.sync.interval * 5)
            self._tasks.append(loop.create_task(self._run(budget)))

    async def _run(self, budget: _Budget) -> None:
        if budget.sync is not None:
            await budget.sync.run()
            return
        interval = max(1.0, self.settings.sync_interval_ms / 1000.0)
        while True:
            budget.limiter.evict_idle()
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Stop the loops and push what is still pending, so a restart loses no consumption."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)
        for budget in (self.default, self.auth):
            if budget.sync is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(budget.sync.sync_once(flush_all=True), 1.0)

    def describe(self) -> dict[str, Any]:
        """Numbers for logs and tests: keys held, script calls and keys pushed so far."""
        return {
            "keys": len(self.limiter),
            "sync_rounds": self.sync.rounds if self.sync else 0,
            "keys_pushed": self.sync.keys_pushed if self.sync else 0,
        }
