"""The limiter maths with an injected clock, the key choice, the settings and the interceptor.

No sockets and no Redis here: the sync's merge is checked against a pure-Python model of
its Lua script, and the Lua itself against a real Redis in tests/integration.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from ticketgate.edge.auth import Principal
from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import Check, Route
from ticketgate.envparse import ConfigError
from ticketgate.http.core import Gateway
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
from ticketgate.middleware.ratelimit import ClientKeys, RateLimit
from ticketgate.middleware.ratelimit_gcra import LocalLimiter, Push
from ticketgate.middleware.settings import DEFAULT_EXEMPT_PATHS, RateLimitSettings
from ticketgate.observability import prometheus


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def admitted_count(limiter: LocalLimiter, key: str, times: int) -> int:
    return sum(limiter.acquire(key)[0] for _ in range(times))


# -- GCRA maths ------------------------------------------------------------------------------


def test_fresh_key_gets_exactly_its_burst_at_one_instant() -> None:
    limiter = LocalLimiter(20, 40, clock=Clock())
    assert admitted_count(limiter, "k", 100) == 40


def test_refill_admits_one_request_per_period_and_not_earlier() -> None:
    clock = Clock()
    limiter = LocalLimiter(10, 5, clock=clock)
    assert admitted_count(limiter, "k", 5) == 5
    admitted, retry = limiter.acquire("k")
    assert not admitted
    assert retry == pytest.approx(0.1)
    clock.advance(0.099)
    assert not limiter.acquire("k")[0]
    clock.advance(0.001)
    assert limiter.acquire("k")[0]
    assert not limiter.acquire("k")[0]


def test_full_refill_after_burst_over_rate_seconds() -> None:
    clock = Clock()
    limiter = LocalLimiter(10, 5, clock=clock)
    admitted_count(limiter, "k", 5)
    clock.advance(0.5)
    assert admitted_count(limiter, "k", 10) == 5


def test_refill_never_exceeds_the_burst() -> None:
    clock = Clock()
    limiter = LocalLimiter(10, 5, clock=clock)
    limiter.acquire("k")
    clock.advance(3600)
    assert admitted_count(limiter, "k", 50) == 5


@pytest.mark.parametrize(
    ("rate", "burst", "overload"), [(20, 40, 2.0), (5, 1, 2.0), (100, 10, 3.0)]
)
def test_sustained_overload_gets_the_rate_not_zero(rate: int, burst: int, overload: float) -> None:
    """A client at `overload` x its rate for 10 s receives burst + rate x 10 (refusals free)."""
    clock = Clock()
    limiter = LocalLimiter(rate, burst, clock=clock)
    step = 1 / (rate * overload)
    admitted = 0
    admitted_last_second = 0
    for i in range(int(10 / step)):
        ok = limiter.acquire("k")[0]
        admitted += ok
        if i * step >= 9:
            admitted_last_second += ok
        clock.advance(step)
    assert admitted == pytest.approx(burst + rate * 10, abs=1)
    assert admitted_last_second == pytest.approx(rate, abs=1)


def test_refused_requests_do_not_push_the_next_admission_back() -> None:
    clock = Clock()
    limiter = LocalLimiter(10, 1, clock=clock)
    assert limiter.acquire("k")[0]
    for _ in range(1000):  # a flood of refused requests at the same instant
        assert not limiter.acquire("k")[0]
    clock.advance(0.1)
    assert limiter.acquire("k")[0]


def test_remaining_and_reset_report_the_bucket() -> None:
    clock = Clock()
    limiter = LocalLimiter(10, 5, clock=clock)
    admitted, debt = limiter.acquire("k")
    assert admitted
    assert limiter.remaining(debt) == 4
    assert debt == pytest.approx(0.1)
    for _ in range(4):
        admitted, debt = limiter.acquire("k")
    assert limiter.remaining(debt) == 0
    assert debt == pytest.approx(0.5)
    clock.advance(0.25)  # two and a half tokens back: two whole ones
    assert limiter.remaining(limiter.debt("k")) == 2


def test_keys_are_independent() -> None:
    limiter = LocalLimiter(1, 2, clock=Clock())
    assert admitted_count(limiter, "a", 5) == 2
    assert admitted_count(limiter, "b", 5) == 2


# -- memory bound ----------------------------------------------------------------------------


def test_a_flood_of_distinct_keys_stays_within_max_keys() -> None:
    limiter = LocalLimiter(20, 40, max_keys=500, clock=Clock(), track=False)
    for i in range(20_000):
        limiter.acquire(f"ip:10.0.{i // 256}.{i % 256}")
        assert len(limiter) <= 500
    assert len(limiter) == 500


def test_the_cap_evicts_the_least_recently_used_key() -> None:
    clock = Clock()
    limiter = LocalLimiter(20, 40, max_keys=3, clock=clock, track=False)
    for key in ("a", "b", "c"):
        limiter.acquire(key)
    limiter.acquire("a")  # a is now the most recent
    limiter.acquire("d")
    assert "b" not in limiter
    assert {"a", "c", "d"} == {key for key in ("a", "b", "c", "d") if key in limiter}


def test_idle_keys_are_evicted_after_idle_ttl_and_fresh_ones_kept() -> None:
    clock = Clock()
    limiter = LocalLimiter(20, 40, idle_ttl=10, clock=clock, track=False)
    for i in range(100):
        limiter.acquire(f"old{i}")
    clock.advance(9)
    limiter.acquire("fresh")
    limiter.acquire("old0")  # touched again: not idle
    clock.advance(1.5)
    limiter.evict_idle()
    assert len(limiter) == 2
    assert "fresh" in limiter
    assert "old0" in limiter


def test_evicting_an_idle_key_loses_nothing() -> None:
    clock = Clock()
    limiter = LocalLimiter(1, 3, idle_ttl=10, clock=clock, track=False)
    admitted_count(limiter, "k", 3)
    clock.advance(11)
    limiter.evict_idle()
    assert "k" not in limiter
    assert admitted_count(limiter, "k", 10) == 3  # the same as if it had been kept


# -- sync bookkeeping (the Lua merge, modelled) ------------------------------------------------


class SharedBucket:
    """Pure-Python model of ratelimit_sync.SYNC_SOURCE for one key (same clock as limiters)."""

    def __init__(self, clock: Clock, period: float) -> None:
        self.clock = clock
        self.period = period
        self.tat = 0.0

    def merge(self, push: Push) -> float:
        now = self.clock()
        if push.taken:
            self.tat = max(self.tat + push.taken * self.period, now + push.own_ahead)
        return max(0.0, self.tat - now)


def sync(limiter: LocalLimiter, bucket: SharedBucket, *, flush_all: bool = False) -> list[Push]:
    pushes = limiter.take_batch(100, flush_all=flush_all)
    for push in pushes:
        limiter.apply(push, bucket.merge(push))
    return pushes


def test_a_key_is_pushed_only_after_the_threshold_until_seen_shared() -> None:
    clock = Clock()
    limiter = LocalLimiter(10, 40, push_threshold=5, clock=clock)
    bucket = SharedBucket(clock, limiter.period)
    admitted_count(limiter, "k", 4)
    assert sync(limiter, bucket) == []
    admitted_count(limiter, "k", 1)
    (push,) = sync(limiter, bucket)
    assert push.taken == 5
    limiter.acquire("k")
    assert sync(limiter, bucket) == []  # one pending, not shared: waits for the threshold


def test_merge_of_a_single_process_is_exact() -> None:
    """Max-plus merge: the shared bucket equals the local one when nobody else uses the key."""
    clock = Clock()
    limiter = LocalLimiter(10, 20, push_threshold=1, clock=clock)
    bucket = SharedBucket(clock, limiter.period)
    for gap in (0.0, 0.01, 0.3, 0.0, 0.0, 1.5, 0.05, 0.05, 0.0):
        clock.advance(gap)
        limiter.acquire("k")
        if gap > 0.2:
            expected = limiter.debt("k")
            sync(limiter, bucket)
            assert limiter.debt("k") == pytest.approx(expected)
            assert bucket.tat - clock() == pytest.approx(expected)
    (push,) = sync(limiter, bucket)
    assert not push.state.shared


def test_two_processes_share_one_budget_through_the_shared_bucket() -> None:
    """Alternating one client over two limiters at 2x its rate yields ~ one rate, not two."""
    clock = Clock()
    rate, burst = 20, 10
    a = LocalLimiter(rate, burst, push_threshold=2, clock=clock)
    b = LocalLimiter(rate, burst, push_threshold=2, clock=clock)
    bucket = SharedBucket(clock, a.period)
    step, interval = 1 / (2 * rate), 0.1
    admitted, next_sync = 0, clock() + interval
    for i in range(int(10 / step)):
        admitted += (a if i % 2 else b).acquire("k")[0]
        clock.advance(step)
        if clock() >= next_sync:
            sync(a, bucket)
            sync(b, bucket)
            next_sync += interval
    assert admitted == pytest.approx(burst + rate * 10, rel=0.05)
    assert a.take_batch(10)[0].state.shared


def test_over_admission_is_paid_back() -> None:
    """Both processes spend a full burst before either syncs; the shared debt keeps both
    closed until the cluster as a whole is back under its rate."""
    clock = Clock()
    t0 = clock()
    a = LocalLimiter(1, 5, push_threshold=1, clock=clock)
    b = LocalLimiter(1, 5, push_threshold=1, clock=clock)
    bucket = SharedBucket(clock, a.period)
    assert admitted_count(a, "k", 5) == 5
    assert admitted_count(b, "k", 5) == 5
    sync(a, bucket)
    sync(b, bucket)
    assert b.debt("k") == pytest.approx(10)  # b learnt a's five
    clock.advance(5.5)  # alone, either would have refilled 5.5 tokens by now
    assert not b.acquire("k")[0]
    # a has not heard of b yet: it admits one more (the bounded lag) and then learns
    assert a.acquire("k")[0]
    sync(a, bucket)
    assert a.debt("k") == pytest.approx(5.5)
    assert not a.acquire("k")[0]
    (read,) = sync(b, bucket)  # b is shared and was asked: it reads at every sync
    assert read.taken == 0
    assert b.debt("k") == pytest.approx(5.5)
    clock.advance(t0 + 6.9 - clock())
    assert not a.acquire("k")[0]
    assert not b.acquire("k")[0]
    clock.advance(0.2)  # 11 admitted at 1/s with a burst of 5: open again at t0 + 7
    assert a.acquire("k")[0]


def test_another_process_s_consumption_marks_the_key_shared() -> None:
    clock = Clock()
    a = LocalLimiter(10, 40, push_threshold=3, clock=clock)
    b = LocalLimiter(10, 40, push_threshold=3, clock=clock)
    bucket = SharedBucket(clock, a.period)
    admitted_count(a, "k", 3)
    (push,) = sync(a, bucket)
    assert not push.state.shared
    admitted_count(b, "k", 3)
    (push,) = sync(b, bucket)
    assert push.state.shared
    b.acquire("k")
    assert [p.taken for p in sync(b, bucket)] == [1]  # shared: pushed at every sync


def test_requests_admitted_while_a_push_is_in_flight_are_kept() -> None:
    clock = Clock()
    limiter = LocalLimiter(10, 40, push_threshold=1, clock=clock)
    bucket = SharedBucket(clock, limiter.period)
    admitted_count(limiter, "k", 10)
    (push,) = limiter.take_batch(10)
    admitted_count(limiter, "k", 5)  # during the round trip
    limiter.apply(push, bucket.merge(push))
    assert limiter.debt("k") == pytest.approx(1.5)
    (push,) = limiter.take_batch(10)
    assert push.taken == 5


def test_batch_overflow_prefers_shared_and_busy_keys_and_keeps_the_rest() -> None:
    clock = Clock()
    limiter = LocalLimiter(100, 100, push_threshold=1, clock=clock)
    for i in range(10):
        admitted_count(limiter, f"k{i}", i + 1)
    first = limiter.take_batch(4)
    assert [p.key for p in first] == ["k9", "k8", "k7", "k6"]
    rest = limiter.take_batch(100)
    assert sorted(p.key for p in rest) == [f"k{i}" for i in range(6)]


def test_keys_leaving_memory_below_the_threshold_cost_redis_nothing() -> None:
    clock = Clock()
    limiter = LocalLimiter(10, 40, push_threshold=3, idle_ttl=10, clock=clock)
    limiter.acquire("a")
    assert limiter.take_batch(10) == []  # below the threshold
    clock.advance(11)
    assert limiter.take_batch(10) == []  # idle: dropped, not pushed
    assert "a" not in limiter


def test_a_due_key_pushed_out_by_the_cap_before_the_sync_is_still_pushed() -> None:
    limiter = LocalLimiter(10, 40, max_keys=2, push_threshold=2, clock=Clock())
    limiter.acquire("a")
    limiter.acquire("a")
    limiter.acquire("b")
    limiter.acquire("c")  # the cap pushes a out of memory
    assert "a" not in limiter
    assert [(p.key, p.taken) for p in limiter.take_batch(10)] == [("a", 2)]


def test_flush_all_pushes_everything_pending() -> None:
    limiter = LocalLimiter(10, 40, push_threshold=10, clock=Clock())
    limiter.acquire("a")
    limiter.acquire("b")
    assert sorted(p.key for p in limiter.take_batch(10, flush_all=True)) == ["a", "b"]


# -- key choice ------------------------------------------------------------------------------


def request(
    client: str = "203.0.113.7",
    forwarded_for: str | None = None,
    user: str | None = None,
    path: str = "/api/v1/queue/status",
) -> Request:
    headers = {} if forwarded_for is None else {b"x-forwarded-for": forwarded_for.encode()}
    req = Request("GET", path, b"", headers, "0" * 32, client)
    if user is not None:
        req.principal = Principal(user)
    return req


def keys(proxies: str = "") -> ClientKeys:
    env = {"RATE_LIMIT_TRUSTED_PROXIES": proxies} if proxies else {}
    return ClientKeys(RateLimitSettings.from_env(env).trusted_proxies)


def test_authenticated_requests_are_keyed_by_user_whatever_their_address() -> None:
    assert keys().key(request(user="u-42")) == ("user:u-42", True)
    assert keys().key(request(client="198.51.100.1", user="u-42")) == ("user:u-42", True)


def test_anonymous_requests_are_keyed_by_peer_address() -> None:
    assert keys().key(request()) == ("ip:203.0.113.7", False)


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    assert keys().key(request(forwarded_for="1.1.1.1")) == ("ip:203.0.113.7", False)


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    chooser = keys("10.0.0.0/8")
    req = request(client="203.0.113.7", forwarded_for="1.2.3.4, 10.0.0.1")
    assert chooser.key(req) == ("ip:203.0.113.7", False)


def test_trusted_proxy_yields_the_right_most_untrusted_address() -> None:
    chooser = keys("10.0.0.0/8,192.0.2.5")
    # the client spoofs 1.2.3.4; the real client is 198.51.100.9, then two trusted hops
    req = request(client="10.1.1.1", forwarded_for="1.2.3.4, 198.51.100.9, 192.0.2.5, 10.0.0.3")
    assert chooser.key(req) == ("ip:198.51.100.9", False)


def test_all_hops_trusted_yields_the_left_most() -> None:
    req = request(client="10.1.1.1", forwarded_for="10.0.0.9, 10.0.0.3")
    assert keys("10.0.0.0/8").key(req) == ("ip:10.0.0.9", False)


def test_garbage_in_forwarded_for_falls_back_to_the_nearest_trusted_hop() -> None:
    req = request(client="10.1.1.1", forwarded_for="198.51.100.9, not-an-ip, 10.0.0.3")
    assert keys("10.0.0.0/8").key(req) == ("ip:10.0.0.3", False)


def test_forwarded_addresses_with_ports_and_brackets() -> None:
    chooser = keys("10.0.0.0/8")
    assert chooser.client_ip("10.0.0.1", b"198.51.100.9:4711") == "198.51.100.9"
    assert chooser.client_ip("10.0.0.1", b"[2001:db8:1:2::7]:443") == "2001:db8:1:2::/64"


def test_ipv6_clients_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() -> None:
    chooser = keys()
    a = chooser.client_ip("2001:db8:1:2::1", None)
    b = chooser.client_ip("2001:db8:1:2:ffff::9", None)
    c = chooser.client_ip("2001:db8:1:3::1", None)
    assert a == b == "2001:db8:1:2::/64"
    assert c != a
    assert chooser.client_ip("::ffff:198.51.100.3", None) == "198.51.100.3"
    assert chooser.client_ip("", None) == "unknown"


def test_trusted_ipv6_proxy() -> None:
    chooser = keys("2001:db8:ffff::/48")
    assert chooser.client_ip("2001:db8:ffff::1", b"198.51.100.9") == "198.51.100.9"


# -- settings --------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = RateLimitSettings.from_env({})
    assert settings.enabled
    assert settings.rps == 20
    assert settings.burst == 40
    assert settings.exempt_paths == DEFAULT_EXEMPT_PATHS
    assert settings.trusted_proxies == ()
    assert settings.sync_interval_ms == 100
    assert settings.window_seconds == 2


def test_settings_parse() -> None:
    settings = RateLimitSettings.from_env(
        {
            "RATE_LIMIT_ENABLED": "false",
            "RATE_LIMIT_RPS": "2.5",
            "RATE_LIMIT_BURST": "7",
            "RATE_LIMIT_EXEMPT_PATHS": " /a, /b/* ,",
            "RATE_LIMIT_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1 ,2001:db8::/32",
            "RATE_LIMIT_SYNC_INTERVAL_MS": "250",
            "RATE_LIMIT_MAX_KEYS": "5000",
        }
    )
    assert not settings.enabled
    assert settings.rps == 2.5
    assert settings.burst == 7
    assert settings.exempt_paths == ("/a", "/b/*")
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.1/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert settings.sync_interval_ms == 250
    assert settings.max_keys == 5000
    assert settings.window_seconds == 3  # 7 / 2.5 = 2.8 s, rounded up
    assert settings.is_exempt("/a")
    assert settings.is_exempt("/b/c")
    assert not settings.is_exempt("/ab")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_ENABLED", "maybe"),
        ("RATE_LIMIT_RPS", "fast"),
        ("RATE_LIMIT_RPS", "0"),
        ("RATE_LIMIT_RPS", "-1"),
        ("RATE_LIMIT_RPS", "nan"),
        ("RATE_LIMIT_BURST", "0"),
        ("RATE_LIMIT_BURST", "1.5"),
        ("RATE_LIMIT_EXEMPT_PATHS", "healthz"),
        ("RATE_LIMIT_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"),
        ("RATE_LIMIT_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("RATE_LIMIT_SYNC_INTERVAL_MS", "5"),
        ("RATE_LIMIT_SYNC_INTERVAL_MS", "soon"),
        ("RATE_LIMIT_MAX_KEYS", "1"),
        ("RATE_LIMIT_HEADERS", "legacy"),
    ],
)
def test_invalid_settings_name_the_variable_in_one_line(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimitSettings.from_env({name: value})
    assert name in str(info.value)
    assert "\n" not in str(info.value)


# -- the guard -------------------------------------------------------------------------------

OK = Response(200, b"{}", ((b"x-handler", b"1"),))


async def ok_handler(request: Request) -> Response:
    return OK


def guard(clock: Clock, **env: str) -> RateLimit:
    return RateLimit(
        RateLimitSettings.from_env(env), observer=prometheus.GuardMetrics(), clock=clock
    )


def dropped_total(key_type: str) -> float:
    """ratelimit_dropped_total as recorded by the guard's metrics observer."""
    prometheus.flush()
    return REGISTRY.get_sample_value("ratelimit_dropped_total", {"key_type": key_type}) or 0.0


def checked(limit: RateLimit, path: str = "/q") -> Check:
    check = limit.check(Route("GET", path, ok_handler))
    assert check is not None
    return check


def test_exempt_unlimited_and_disabled_routes_are_not_checked() -> None:
    limit = guard(Clock(), RATE_LIMIT_EXEMPT_PATHS="/healthz,/docs/*")
    assert limit.check(Route("GET", "/healthz", ok_handler)) is None
    assert limit.check(Route("GET", "/docs/x", ok_handler)) is None
    assert limit.check(Route("GET", "/q", ok_handler, rate_limited=False)) is None
    assert limit.check(Route("GET", "/q", ok_handler)) is not None
    disabled = guard(Clock(), RATE_LIMIT_ENABLED="false")
    assert disabled.check(Route("GET", "/q", ok_handler)) is None


def test_default_exempt_paths_are_not_limited() -> None:
    limit = guard(Clock())
    for path in DEFAULT_EXEMPT_PATHS:
        assert limit.check(Route("GET", path, ok_handler)) is None


def test_admitted_requests_get_the_ietf_headers_by_default() -> None:
    limit = guard(Clock(), RATE_LIMIT_RPS="10", RATE_LIMIT_BURST="5")
    headers = dict(checked(limit)(request()))
    assert headers == {
        b"ratelimit-policy": b'"default";q=5;w=1',
        b"ratelimit": b'"default";r=4;t=1',
    }


def test_rate_limit_headers_all_adds_the_legacy_trio_to_admitted_requests() -> None:
    limit = guard(Clock(), RATE_LIMIT_RPS="10", RATE_LIMIT_BURST="5", RATE_LIMIT_HEADERS="all")
    headers = dict(checked(limit)(request()))
    assert headers[b"x-ratelimit-limit"] == b"5"
    assert headers[b"x-ratelimit-remaining"] == b"4"
    assert headers[b"x-ratelimit-reset"] == b"1"
    assert headers[b"ratelimit-policy"] == b'"default";q=5;w=1'
    assert headers[b"ratelimit"] == b'"default";r=4;t=1'


def test_refusal_is_429_rate_limited_with_all_headers_and_counted() -> None:
    clock = Clock()
    limit = guard(clock, RATE_LIMIT_RPS="0.5", RATE_LIMIT_BURST="3")
    check = checked(limit)
    for _ in range(3):
        check(request(user="rl-user"))
    dropped = dropped_total("user")
    with pytest.raises(ApiError) as info:
        check(request(user="rl-user"))
    error = info.value
    assert (error.code, error.status) == ("RATE_LIMITED", 429)
    headers = dict(error.headers)
    assert headers[b"retry-after"] == b"2"  # one token every 2 s
    assert headers[b"x-ratelimit-limit"] == b"3"
    assert headers[b"x-ratelimit-remaining"] == b"0"
    assert headers[b"x-ratelimit-reset"] == b"6"  # three tokens to refill
    assert headers[b"ratelimit-policy"] == b'"default";q=3;w=6'
    assert headers[b"ratelimit"] == b'"default";r=0;t=6'
    assert dropped_total("user") == dropped + 1
    clock.advance(2)
    assert dict(check(request(user="rl-user")))[b"ratelimit"] == b'"default";r=0;t=6'


def test_ip_refusals_are_counted_under_key_type_ip() -> None:
    check = checked(guard(Clock(), RATE_LIMIT_RPS="1", RATE_LIMIT_BURST="1"))
    before = dropped_total("ip")
    check(request(client="192.0.2.99"))
    with pytest.raises(ApiError):
        check(request(client="192.0.2.99"))
    assert dropped_total("ip") == before + 1


def test_user_and_ip_budgets_are_separate() -> None:
    check = checked(guard(Clock(), RATE_LIMIT_RPS="1", RATE_LIMIT_BURST="1"))
    check(request(client="192.0.2.50"))
    check(request(client="192.0.2.50", user="u1"))
    with pytest.raises(ApiError):
        check(request(client="192.0.2.50"))


async def test_gateway_renders_the_refusal_as_the_envelope() -> None:
    limit = guard(Clock(), RATE_LIMIT_RPS="1", RATE_LIMIT_BURST="1")
    gateway = Gateway(
        [Route("GET", "/q", ok_handler)],
        DevBypassAuthenticator(False),
        max_body_bytes=1024,
        guard=limit,
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/q",
        "query_string": b"",
        "headers": [],
        "client": ("192.0.2.77", 5000),
    }
    await gateway(scope, receive, send)
    await gateway(scope, receive, send)
    assert sent[0]["status"] == 200
    assert sent[2]["status"] == 429
    assert b'"code":"RATE_LIMITED"' in sent[3]["body"]
    assert (b"retry-after", b"1") in sent[2]["headers"]


async def test_gateway_adds_the_headers_to_answers_and_to_the_handler_s_errors() -> None:
    async def missing(request: Request) -> Response:
        raise ApiError("RESERVATION_NOT_FOUND", "no such reservation")

    gateway = Gateway(
        [Route("GET", "/q", ok_handler), Route("GET", "/missing", missing)],
        DevBypassAuthenticator(False),
        max_body_bytes=1024,
        guard=guard(Clock(), RATE_LIMIT_RPS="10", RATE_LIMIT_BURST="5"),
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for path in ("/q", "/missing"):
        scope: dict[str, Any] = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": b"",
            "headers": [],
            "client": ("192.0.2.78", 5000),
        }
        await gateway(scope, receive, send)
    ok, missing_start = dict(sent[0]["headers"]), dict(sent[2]["headers"])
    assert sent[0]["status"] == 200
    assert ok[b"x-handler"] == b"1"  # the handler's own headers stay
    assert ok[b"ratelimit"] == b'"default";r=4;t=1'
    assert sent[2]["status"] == 404
    assert missing_start[b"ratelimit"] == b'"default";r=3;t=1'


def test_the_same_chain_from_an_untrusted_peer_is_not_answered_from_the_cache() -> None:
    chooser = keys("10.0.0.0/8")
    chain = b"198.51.100.9"
    assert chooser.client_ip("10.0.0.1", chain) == "198.51.100.9"
    assert chooser.client_ip("203.0.113.5", chain) == "203.0.113.5"
    assert chooser.client_ip("10.0.0.1", chain) == "198.51.100.9"


_HOP = st.one_of(
    st.builds(
        lambda a, b, c, d: f"{a}.{b}.{c}.{d}",
        st.sampled_from([10, 192, 198, 203]),
        st.sampled_from([0, 51, 168]),
        st.integers(0, 3),
        st.integers(0, 255),
    ),
    st.sampled_from(["not-an-ip", "01.2.3.4", "198.51.100.9:80", "[2001:db8::1]:443", "::1", ""]),
)


@given(
    peer=st.sampled_from(["10.0.0.1", "192.168.1.1", "203.0.113.5", "2001:db8::1", ""]),
    hops=st.lists(_HOP, max_size=6),
    spaced=st.booleans(),
)
def test_the_ipv4_fast_path_agrees_with_the_general_path(
    peer: str, hops: list[str], spaced: bool
) -> None:
    proxies = "10.0.0.0/8,192.168.1.0/24,2001:db8::/32"
    fast = keys(proxies)
    general = keys(proxies)
    general._v4_ranges = ()  # forces the ipaddress-based resolution
    chain = (", " if spaced else ",").join(hops).encode()
    assert fast.client_ip(peer, chain) == general.client_ip(peer, chain)
