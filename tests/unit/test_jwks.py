"""The JWKS cache against a real key-set server over HTTP (a thread in the test process).

The server counts fetches and can be switched to fail, stall or answer garbage, so these tests
pin the fetch budget (single-flight, one fetch per cooldown) and the last-good behaviour.
Time is an injected clock where TTLs and cooldowns matter, so nothing here sleeps for them.

`JwksServer`, `sample_keys` and `jwk_of` are reused by tests/integration/test_jwt_auth.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec as ec_keys
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.redis_server import free_port
from ticketgate.middleware.jwks import HttpJwksSource, JwksCache, JwksFetchError, load_keys

# --- shared helpers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    rsa: rsa_keys.RSAPrivateKey
    rsa2: rsa_keys.RSAPrivateKey
    ec: ec_keys.EllipticCurvePrivateKey
    weak_rsa: rsa_keys.RSAPrivateKey


@functools.cache
def sample_keys() -> Keys:
    """Real keys, generated once per session (RSA generation costs ~0.1 s each)."""
    return Keys(
        rsa=rsa_keys.generate_private_key(public_exponent=65537, key_size=2048),
        rsa2=rsa_keys.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec_keys.generate_private_key(ec_keys.SECP256R1()),
        weak_rsa=rsa_keys.generate_private_key(public_exponent=65537, key_size=1024),
    )


def jwk_of(private: Any, kid: str | None = None, **extra: Any) -> dict[str, Any]:
    """The public JWK of `private`, with `kid` and any extra members (alg, use, key_ops)."""
    public = private.public_key()
    if isinstance(public, rsa_keys.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(extra)
    return jwk


class JwksServer:
    """A real HTTP key-set endpoint on a free port, served from a thread.

    `mode` switches the answer: "ok" (the document), "500", "garbage" (not JSON), "huge"
    (over the size limit). `delay` stalls every answer, so concurrent fetches would overlap.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        self.keys: list[dict[str, Any]] = []
        self.mode = "ok"
        self.delay = 0.0
        self._fetches = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server._fetches += 1
                if server.delay:
                    time.sleep(server.delay)
                status, body = server.answer()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self.running = True

    @property
    def fetches(self) -> int:
        with self._lock:
            return self._fetches

    def answer(self) -> tuple[int, bytes]:
        if self.mode == "500":
            return 500, b'{"error": "boom"}'
        if self.mode == "garbage":
            return 200, b"<html>not a key set</html>"
        if self.mode == "huge":
            return 200, b'{"keys": [], "pad": "' + b"x" * 600_000 + b'"}'
        return 200, json.dumps({"keys": self.keys}).encode()

    def stop(self) -> None:
        """Close the port: later fetches get 'connection refused'."""
        if self.running:
            self.running = False
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)


@contextlib.contextmanager
def running_jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    try:
        yield server
    finally:
        server.stop()


# --- fixtures -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with running_jwks_server() as jwks:
        keys = sample_keys()
        jwks.keys = [jwk_of(keys.rsa, "rsa-1", alg="RS256", use="sig"), jwk_of(keys.ec, "ec-1")]
        yield jwks


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_cache(
    server: JwksServer, clock: FakeClock, ttl: float = 600, cooldown: float = 30, **kw: Any
) -> JwksCache:
    return JwksCache(HttpJwksSource(server.url, timeout=1.0), ttl, cooldown, clock, **kw)


# --- key loading ----------------------------------------------------------------------------


def test_only_keys_fitting_the_allow_list_are_loaded() -> None:
    keys = sample_keys()
    document = {
        "keys": [
            jwk_of(keys.rsa, "rsa-ok", alg="RS256", use="sig"),
            jwk_of(keys.ec, "ec-ok"),
            {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "kid": "sym"},
            jwk_of(keys.rsa2, "rsa-enc", use="enc"),
            jwk_of(keys.rsa2, "rsa-ops", key_ops=["encrypt"]),
            jwk_of(keys.rsa2, "rsa-rs512", alg="RS512"),
            jwk_of(keys.rsa2, "rsa-mislabelled", alg="ES256"),
            jwk_of(keys.weak_rsa, "rsa-1024"),
            jwk_of(keys.rsa2),
            jwk_of(keys.ec, "ec-ok"),  # duplicate kid: the first one wins
            "not-a-key",
        ]
    }
    loaded, skipped = load_keys(json.dumps(document).encode(), ["RS256", "ES256"])

    assert set(loaded) == {"rsa-ok", "ec-ok"}
    assert set(loaded["rsa-ok"]) == {"RS256"}
    assert set(loaded["ec-ok"]) == {"ES256"}
    assert skipped == 9


def test_key_without_alg_is_bound_to_each_allowed_algorithm_of_its_type() -> None:
    document = {"keys": [jwk_of(sample_keys().rsa, "rsa")]}
    loaded, _ = load_keys(json.dumps(document).encode(), ["RS256", "PS256", "ES256"])

    assert set(loaded["rsa"]) == {"RS256", "PS256"}
    assert loaded["rsa"]["PS256"].algorithm_name == "PS256"


@pytest.mark.parametrize("document", [b"[]", b'{"keys": {}}', b"{", b'{"nokeys": []}'])
def test_a_document_that_is_not_a_key_set_is_refused(document: bytes) -> None:
    with pytest.raises(JwksFetchError):
        load_keys(document, ["RS256"])


# --- the HTTP source ------------------------------------------------------------------------


async def test_http_source_returns_the_document(server: JwksServer) -> None:
    source = HttpJwksSource(server.url, timeout=1.0)
    try:
        document = json.loads(await source.fetch())
    finally:
        await source.aclose()
    assert [key["kid"] for key in document["keys"]] == ["rsa-1", "ec-1"]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("500", "HTTP 500"), ("garbage", "not JSON"), ("huge", "exceeds")],
)
async def test_http_source_refuses_bad_answers(server: JwksServer, mode: str, reason: str) -> None:
    server.mode = mode
    source = HttpJwksSource(server.url, timeout=1.0)
    try:
        with pytest.raises(JwksFetchError, match=reason):
            await source.fetch()
    finally:
        await source.aclose()


async def test_http_source_gives_up_after_its_timeout(server: JwksServer) -> None:
    server.delay = 1.0
    source = HttpJwksSource(server.url, timeout=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(JwksFetchError, match="did not answer"):
            await source.fetch()
    finally:
        await source.aclose()
    assert time.monotonic() - started < 0.8


async def test_http_source_reports_a_closed_port(server: JwksServer) -> None:
    server.stop()
    source = HttpJwksSource(server.url, timeout=1.0)
    try:
        with pytest.raises(JwksFetchError, match="unreachable"):
            await source.fetch()
    finally:
        await source.aclose()


# --- the cache ------------------------------------------------------------------------------


async def test_known_kid_is_served_from_memory(server: JwksServer, clock: FakeClock) -> None:
    cache = make_cache(server, clock)
    try:
        first = await cache.get("rsa-1", "RS256")
        for _ in range(50):
            assert await cache.get("rsa-1", "RS256") is first
        assert await cache.get("ec-1", "ES256") is not None
    finally:
        await cache.aclose()
    assert first is not None
    assert server.fetches == 1


async def test_fresh_answers_without_await_only_while_get_would_not_fetch(
    server: JwksServer, clock: FakeClock
) -> None:
    cache = make_cache(server, clock, ttl=600)
    try:
        assert cache.fresh("rsa-1", "RS256") is None  # nothing loaded yet
        key = await cache.get("rsa-1", "RS256")
        assert key is not None
        assert cache.fresh("rsa-1", "RS256") is key
        assert cache.fresh("rsa-1", "ES256") is None  # bound to its own algorithm
        assert cache.fresh("no-such-kid", "RS256") is None
        clock.now += 600  # the TTL is up: a refresh is due, so only `get` may answer
        assert cache.fresh("rsa-1", "RS256") is None
    finally:
        await cache.aclose()
    assert server.fetches == 1


async def test_key_is_only_returned_for_its_own_algorithm(
    server: JwksServer, clock: FakeClock
) -> None:
    cache = make_cache(server, clock)
    try:
        assert await cache.get("rsa-1", "RS256") is not None
        assert await cache.get("rsa-1", "ES256") is None
        assert await cache.get("ec-1", "RS256") is None
    finally:
        await cache.aclose()


async def test_concurrent_first_requests_share_one_fetch(
    server: JwksServer, clock: FakeClock
) -> None:
    server.delay = 0.05
    cache = make_cache(server, clock)
    try:
        found = await asyncio.gather(*(cache.get("rsa-1", "RS256") for _ in range(100)))
    finally:
        await cache.aclose()
    assert all(key is not None for key in found)
    assert server.fetches == 1


async def test_unknown_kid_flood_fetches_at_most_once_per_cooldown(
    server: JwksServer, clock: FakeClock
) -> None:
    server.delay = 0.02
    cache = make_cache(server, clock, cooldown=30)

    async def flood() -> list[object]:
        return await asyncio.gather(*(cache.get(uuid.uuid4().hex, "RS256") for _ in range(200)))

    try:
        assert await cache.preload()
        assert server.fetches == 1

        assert await flood() == [None] * 200  # right after a fetch: inside the cooldown
        assert server.fetches == 1

        clock.now += 30
        assert await flood() == [None] * 200  # cooldown over: the flood buys one fetch
        assert server.fetches == 2

        clock.now += 29
        assert await flood() == [None] * 200
        assert server.fetches == 2
        assert await cache.get("rsa-1", "RS256") is not None
    finally:
        await cache.aclose()


async def test_rotated_key_is_picked_up_after_the_cooldown(
    server: JwksServer, clock: FakeClock
) -> None:
    cache = make_cache(server, clock, cooldown=30)
    try:
        await cache.preload()
        server.keys = [*server.keys, jwk_of(sample_keys().rsa2, "rsa-2", alg="RS256")]

        clock.now += 5
        assert await cache.get("rsa-2", "RS256") is None
        assert server.fetches == 1

        clock.now += 25
        assert await cache.get("rsa-2", "RS256") is not None
        assert server.fetches == 2
    finally:
        await cache.aclose()


async def test_stale_keys_are_refreshed_in_the_background_after_the_ttl(
    server: JwksServer, clock: FakeClock
) -> None:
    cache = make_cache(server, clock, ttl=600, cooldown=30)
    try:
        await cache.preload()
        server.keys = [jwk_of(sample_keys().rsa2, "rsa-2", alg="RS256")]  # rsa-1 retired

        clock.now += 599
        assert await cache.get("rsa-1", "RS256") is not None
        assert server.fetches == 1

        clock.now += 1
        assert await cache.get("rsa-1", "RS256") is not None  # served stale, not awaited
        assert cache.fetches == 2
        await cache.wait_idle()
        assert server.fetches == 2

        assert cache.kids == {"rsa-2"}
        assert await cache.get("rsa-1", "RS256") is None
    finally:
        await cache.aclose()


@pytest.mark.parametrize("failure", ["500", "garbage", "huge", "no-usable-keys", "closed"])
async def test_last_good_keys_survive_a_failing_endpoint(
    server: JwksServer, clock: FakeClock, failure: str
) -> None:
    cache = make_cache(server, clock, ttl=60, cooldown=30)
    try:
        await cache.preload()
        if failure == "closed":
            server.stop()
        elif failure == "no-usable-keys":
            server.keys = [jwk_of(sample_keys().weak_rsa, "weak")]
        else:
            server.mode = failure

        clock.now += 60
        assert await cache.get("rsa-1", "RS256") is not None
        await cache.wait_idle()
        assert cache.failures == 1
        assert await cache.get("rsa-1", "RS256") is not None
        assert await cache.get("ec-1", "ES256") is not None
        assert cache.fetches == 2  # the failed refresh is retried after the cooldown, not now

        clock.now += 30
        await cache.get("rsa-1", "RS256")
        await cache.wait_idle()
        assert cache.fetches == 3
        assert cache.failures == 2
    finally:
        await cache.aclose()


async def test_endpoint_that_never_answered_is_retried_once_per_cooldown(
    server: JwksServer, clock: FakeClock
) -> None:
    server.mode = "500"
    cache = make_cache(server, clock, cooldown=30)
    try:
        assert (
            await asyncio.gather(*(cache.get("rsa-1", "RS256") for _ in range(20))) == [None] * 20
        )
        assert server.fetches == 1
        assert not cache.loaded

        server.mode = "ok"
        clock.now += 10
        assert await cache.get("rsa-1", "RS256") is None
        assert server.fetches == 1

        clock.now += 20
        assert await cache.get("rsa-1", "RS256") is not None
        assert server.fetches == 2
    finally:
        await cache.aclose()


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    server: JwksServer, clock: FakeClock
) -> None:
    server.delay = 0.1
    cache = make_cache(server, clock)
    try:
        impatient = asyncio.get_running_loop().create_task(cache.get("rsa-1", "RS256"))
        await asyncio.sleep(0.02)
        impatient.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await impatient
        assert await cache.get("rsa-1", "RS256") is not None
    finally:
        await cache.aclose()
    assert server.fetches == 1
