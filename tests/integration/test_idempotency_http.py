"""Idempotency-Key over real sockets, on both stores (memory and a real Redis).

A gateway with three test routes (REQUIRED, OPTIONAL, NONE) whose handler counts its runs,
sleeps a little and follows a per-test plan (succeed, fail, raise, block). Users are distinct
development bypass tokens, so scoping by user is exercised through real authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from tests.http_server import serve
from tests.redis_server import free_port
from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Idempotency, Route
from ticketgate.http.core import Gateway
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
from ticketgate.middleware.idempotency import (
    IdempotencyInterceptor,
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    idempotency_key_of,
)
from ticketgate.middleware.settings import IdempotencySettings
from ticketgate.observability import prometheus
from ticketgate.redisio.executor import build_executor
from ticketgate.redisio.settings import RedisSettings

PAY = "/t/pay"  # auth REQUIRED, idempotency REQUIRED
ENTER = "/t/enter"  # auth OPTIONAL, idempotency OPTIONAL
PLAIN = "/t/plain"  # idempotency NONE


def user(n: int | str) -> dict[str, str]:
    return {"Authorization": f"Bearer load-test-bypass-token-{n}"}


def keyed(key: str, n: int | str = 1) -> dict[str, str]:
    return {**user(n), "Idempotency-Key": key}


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def hits(kind: str) -> float:
    prometheus.flush()  # what the gateway's GuardMetrics buffered
    return REGISTRY.get_sample_value("idempotency_hits_total", {"type": kind}) or 0.0


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert len(error["trace_id"]) == 32


@dataclass
class Backend:
    """The handler side: counts runs, follows `plan` (one step per run, then "ok")."""

    delay: float = 0.02
    calls: int = 0
    plan: deque[str] = field(default_factory=deque)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    seen_keys: list[str] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.calls += 1
        self.started.set()
        run = self.calls
        step = self.plan.popleft() if self.plan else "ok"
        self.seen_keys.append(idempotency_key_of(request))
        await asyncio.sleep(self.delay)
        if step == "block":
            await self.gate.wait()
        elif step == "raise":
            raise RuntimeError("handler crashed")
        elif step == "503":
            return Response.json(503, {"error": {"code": "UPSTREAM_UNAVAILABLE"}})
        elif step == "timeout":
            raise ApiError("UPSTREAM_TIMEOUT", "backend too slow")
        elif step == "refuse":
            raise ApiError("NOT_READY", "not admitted yet", extra={"run": run})
        elif step == "throttle":
            raise ApiError("RATE_LIMITED", "slow down", headers=((b"retry-after", b"1"),))
        payload = {
            "run": run,
            "user": request.user_id,
            "body": request.body.decode(),
            "query": request.query.decode(),
        }
        return Response.json(
            201, payload, ((b"location", f"/t/{run}".encode()), (b"set-cookie", b"s=1"))
        )

    def routes(self) -> list[Route]:
        return [
            Route("POST", PAY, self.handle, AuthPolicy.REQUIRED, idempotency=Idempotency.REQUIRED),
            Route(
                "POST", ENTER, self.handle, AuthPolicy.OPTIONAL, idempotency=Idempotency.OPTIONAL
            ),
            Route("POST", PLAIN, self.handle, AuthPolicy.OPTIONAL),
        ]


StoreFactory = Callable[[IdempotencySettings], IdempotencyStore]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    if request.param == "memory":
        return MemoryIdempotencyStore
    address: str = request.getfixturevalue("redis_address")

    def redis_store(settings: IdempotencySettings) -> IdempotencyStore:
        executor = build_executor(RedisSettings(address=address))
        return RedisIdempotencyStore(executor, settings, owns_executor=True)

    return redis_store


@contextlib.asynccontextmanager
async def gateway(backend: Backend, store: IdempotencyStore) -> AsyncIterator[httpx.AsyncClient]:
    app = Gateway(
        backend.routes(),
        DevBypassAuthenticator(True),
        max_body_bytes=16_384,
        interceptors=(IdempotencyInterceptor(store, observer=prometheus.GuardMetrics()),),
        on_startup=store.start,
        on_shutdown=store.close,
    )
    async with serve(app) as client:
        yield client


@pytest.fixture
async def backend() -> Backend:
    return Backend()


@pytest.fixture
async def client(backend: Backend, make_store: StoreFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway(backend, make_store(IdempotencySettings())) as http:
        yield http


# --------------------------------------------------------------------------- the core promise


async def test_fifty_concurrent_duplicates_run_the_handler_once(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    backend.delay = 0.2
    key = new_key()
    in_progress_before = hits("in_progress")
    replay_before = hits("replay")

    responses = await asyncio.gather(
        *(client.post(PAY, json={"seat": "A1"}, headers=keyed(key)) for _ in range(50))
    )

    assert backend.calls == 1
    fresh = [
        r for r in responses if r.status_code == 201 and "x-idempotency-cached" not in r.headers
    ]
    assert len(fresh) == 1
    original = fresh[0]
    busy = [r for r in responses if r.status_code == 409]
    replays = [r for r in responses if r.headers.get("x-idempotency-cached") == "true"]
    assert len(busy) + len(replays) == 49
    assert busy, "with a 200 ms handler some duplicates must arrive while it runs"
    for response in busy:
        assert_error(response, 409, "IDEMPOTENCY_IN_PROGRESS")
        assert response.headers["retry-after"] == "1"
    for response in replays:
        assert (response.status_code, response.content) == (201, original.content)
    assert hits("in_progress") - in_progress_before == len(busy)
    assert hits("replay") - replay_before == len(replays)

    later = await client.post(PAY, json={"seat": "A1"}, headers=keyed(key))
    assert later.status_code == 201
    assert later.content == original.content
    assert later.headers["x-idempotency-cached"] == "true"
    assert later.headers["location"] == original.headers["location"] == "/t/1"
    assert "set-cookie" not in later.headers
    assert later.headers["x-request-id"] != original.headers["x-request-id"]
    assert backend.calls == 1


async def test_same_key_with_a_different_body_or_query_is_a_conflict(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    key = new_key()
    conflicts_before = hits("conflict")
    first = await client.post(PAY, json={"seat": "A1"}, headers=keyed(key))
    assert first.status_code == 201

    other_body = await client.post(PAY, json={"seat": "B2"}, headers=keyed(key))
    assert_error(other_body, 409, "IDEMPOTENCY_CONFLICT")
    other_query = await client.post(PAY, params={"x": "1"}, json={"seat": "A1"}, headers=keyed(key))
    assert_error(other_query, 409, "IDEMPOTENCY_CONFLICT")
    assert backend.calls == 1
    assert hits("conflict") - conflicts_before == 2


async def test_conflict_is_reported_even_while_the_first_request_runs(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    backend.plan.append("block")
    key = new_key()
    first = asyncio.ensure_future(client.post(PAY, json={"n": 1}, headers=keyed(key)))
    await asyncio.wait_for(backend.started.wait(), 5)
    assert_error(
        await client.post(PAY, json={"n": 2}, headers=keyed(key)), 409, "IDEMPOTENCY_CONFLICT"
    )
    backend.gate.set()
    assert (await first).status_code == 201


async def test_two_users_with_the_same_key_each_get_their_own_answer(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    key = new_key()
    alice, bob = await asyncio.gather(
        client.post(PAY, json={"seat": "A1"}, headers=keyed(key, "alice")),
        client.post(PAY, json={"seat": "A1"}, headers=keyed(key, "bob")),
    )
    assert (alice.status_code, bob.status_code) == (201, 201)
    assert backend.calls == 2
    assert alice.json()["user"] == "load-test-alice"
    assert bob.json()["user"] == "load-test-bob"

    alice_again = await client.post(PAY, json={"seat": "A1"}, headers=keyed(key, "alice"))
    bob_again = await client.post(PAY, json={"seat": "A1"}, headers=keyed(key, "bob"))
    assert alice_again.content == alice.content
    assert bob_again.content == bob.content
    assert backend.calls == 2


async def test_anonymous_callers_share_one_scope_apart_from_users(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    key = new_key()
    anonymous = await client.post(ENTER, json={}, headers={"Idempotency-Key": key})
    anonymous_again = await client.post(ENTER, json={}, headers={"Idempotency-Key": key})
    signed_in = await client.post(ENTER, json={}, headers=keyed(key, "carol"))
    assert anonymous.json()["user"] == ""
    assert anonymous_again.content == anonymous.content
    assert anonymous_again.headers["x-idempotency-cached"] == "true"
    assert signed_in.json()["user"] == "load-test-carol"
    assert "x-idempotency-cached" not in signed_in.headers
    assert backend.calls == 2


async def test_the_same_key_on_another_path_is_another_request(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    key = new_key()
    await client.post(PAY, json={}, headers=keyed(key))
    other = await client.post(ENTER, json={}, headers=keyed(key))
    assert other.status_code == 201
    assert "x-idempotency-cached" not in other.headers
    assert backend.calls == 2


# --------------------------------------------------------------------------- what is stored


@pytest.mark.parametrize("failure", ["503", "timeout", "raise", "throttle"])
async def test_failures_are_not_stored_and_a_retry_runs_again(
    client: httpx.AsyncClient, backend: Backend, failure: str
) -> None:
    backend.plan.append(failure)
    key = new_key()
    first = await client.post(PAY, json={"seat": "A1"}, headers=keyed(key))
    assert first.status_code in {429, 500, 503, 504}
    assert "x-idempotency-cached" not in first.headers
    if failure == "raise":
        assert_error(first, 500, "INTERNAL_ERROR")

    retry = await client.post(PAY, json={"seat": "A1"}, headers=keyed(key))
    assert retry.status_code == 201
    assert retry.json()["run"] == 2
    assert "x-idempotency-cached" not in retry.headers
    assert backend.calls == 2


async def test_a_client_error_is_the_answer_and_is_replayed(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    backend.plan.append("refuse")
    key = new_key()
    first = await client.post(PAY, json={"seat": "A1"}, headers=keyed(key))
    assert_error(first, 409, "NOT_READY")
    assert first.json()["run"] == 1

    again = await client.post(PAY, json={"seat": "A1"}, headers=keyed(key))
    assert again.status_code == 409
    assert again.content == first.content
    assert again.headers["x-idempotency-cached"] == "true"
    assert backend.calls == 1


async def test_the_key_reaches_the_handler_for_forwarding(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    key = new_key()
    await client.post(PAY, json={}, headers=keyed(key))
    await client.post(ENTER, json={})
    assert backend.seen_keys == [key, ""]


# --------------------------------------------------------------------------- leases and retention


async def test_lease_expiry_frees_a_stuck_claim_and_the_late_answer_does_not_overwrite(
    backend: Backend, make_store: StoreFactory
) -> None:
    backend.plan.append("block")
    key = new_key()
    store = make_store(IdempotencySettings(lease_sec=0.3, ttl_sec=60))
    async with gateway(backend, store) as client:
        stuck = asyncio.ensure_future(client.post(PAY, json={"n": 1}, headers=keyed(key)))
        await asyncio.wait_for(backend.started.wait(), 5)
        assert_error(
            await client.post(PAY, json={"n": 1}, headers=keyed(key)),
            409,
            "IDEMPOTENCY_IN_PROGRESS",
        )
        await asyncio.sleep(0.4)

        takeover = await client.post(PAY, json={"n": 1}, headers=keyed(key))
        assert takeover.status_code == 201
        assert takeover.json()["run"] == 2

        backend.gate.set()
        late = await stuck
        assert late.json()["run"] == 1

        replay = await client.post(PAY, json={"n": 1}, headers=keyed(key))
        assert replay.content == takeover.content
        assert replay.headers["x-idempotency-cached"] == "true"
        assert backend.calls == 2


async def test_answers_are_forgotten_after_the_retention(
    backend: Backend, make_store: StoreFactory
) -> None:
    key = new_key()
    store = make_store(IdempotencySettings(lease_sec=0.1, ttl_sec=0.3))
    async with gateway(backend, store) as client:
        await client.post(PAY, json={}, headers=keyed(key))
        replay = await client.post(PAY, json={}, headers=keyed(key))
        assert replay.headers["x-idempotency-cached"] == "true"
        await asyncio.sleep(0.4)
        fresh = await client.post(PAY, json={}, headers=keyed(key))
        assert "x-idempotency-cached" not in fresh.headers
        assert backend.calls == 2


# --------------------------------------------------------------------------- header policy


async def test_required_route_without_a_key_is_refused(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    assert_error(await client.post(PAY, json={}, headers=user(1)), 400, "IDEMPOTENCY_REQUIRED")
    assert backend.calls == 0


@pytest.mark.parametrize("path", [PAY, ENTER])
@pytest.mark.parametrize("raw", ["", "k" * 256, "two words", "caf\xe9"])
async def test_malformed_key_is_refused(
    client: httpx.AsyncClient, backend: Backend, path: str, raw: str
) -> None:
    headers = [
        (b"authorization", b"Bearer load-test-bypass-token-1"),
        (b"idempotency-key", raw.encode("latin-1")),
    ]
    response = await client.post(path, json={}, headers=headers)
    assert_error(response, 400, "INVALID_IDEMPOTENCY_KEY")
    assert backend.calls == 0


async def test_optional_and_plain_routes_run_every_time_without_a_key(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    for _ in range(2):
        assert (await client.post(ENTER, json={})).status_code == 201
    key = new_key()
    for _ in range(2):  # a key on a route without idempotency is ignored
        response = await client.post(PLAIN, json={}, headers={"Idempotency-Key": key})
        assert "x-idempotency-cached" not in response.headers
    assert backend.calls == 4


# --------------------------------------------------------------------------- Redis only


async def test_two_gateways_on_one_redis_run_the_handler_once(redis_address: str) -> None:
    """Two worker processes' worth of gateways, each with its own connection."""
    backend = Backend(delay=0.2)
    key = new_key()
    settings = IdempotencySettings()

    def store() -> RedisIdempotencyStore:
        executor = build_executor(RedisSettings(address=redis_address))
        return RedisIdempotencyStore(executor, settings, owns_executor=True)

    async with gateway(backend, store()) as one, gateway(backend, store()) as two:
        responses = await asyncio.gather(
            *(
                (one if n % 2 else two).post(PAY, json={"seat": "A1"}, headers=keyed(key))
                for n in range(20)
            )
        )
    assert backend.calls == 1
    fresh = [
        r for r in responses if "x-idempotency-cached" not in r.headers and r.status_code == 201
    ]
    assert len(fresh) == 1
    for response in responses:
        if response is not fresh[0]:
            assert response.status_code in {201, 409}
            if response.status_code == 201:
                assert response.content == fresh[0].content


async def test_redis_down_is_a_fast_503_and_keyless_optional_requests_still_run() -> None:
    backend = Backend()
    dead = RedisSettings(address=f"127.0.0.1:{free_port()}", connect_timeout_ms=200)
    store = RedisIdempotencyStore(build_executor(dead), IdempotencySettings(), owns_executor=True)
    app = Gateway(
        backend.routes(),
        DevBypassAuthenticator(True),
        max_body_bytes=16_384,
        interceptors=(IdempotencyInterceptor(store),),
        on_shutdown=store.close,
    )
    async with serve(app) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        refused = await client.post(PAY, json={}, headers=keyed(new_key()))
        assert loop.time() - started < 1.0
        assert_error(refused, 503, "UPSTREAM_UNAVAILABLE")
        assert refused.headers["retry-after"] == "1"
        assert backend.calls == 0
        keyless = await client.post(ENTER, json={})
        assert keyless.status_code == 201
        assert backend.calls == 1


async def test_redis_keys_are_hash_tagged_and_expire(
    redis_address: str, redis_sync: redis.Redis
) -> None:
    backend = Backend()
    store = RedisIdempotencyStore(
        build_executor(RedisSettings(address=redis_address)),
        IdempotencySettings(ttl_sec=120, lease_sec=5),
        owns_executor=True,
    )
    before = set(redis_sync.scan_iter(match="idem:*"))
    async with gateway(backend, store) as client:
        await client.post(PAY, json={}, headers=keyed(new_key()))
    created = set(redis_sync.scan_iter(match="idem:*")) - before
    assert len(created) == 1
    (name,) = created
    assert name.startswith(b"idem:{")
    assert name.endswith(b"}")
    assert 0 < redis_sync.pttl(name) <= 120_000
    assert redis_sync.hget(name, "owner") is None
