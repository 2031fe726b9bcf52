"""Attack probes of issue 10 on the waiting room: one admission per person (item 2), the
users HASH of swept signed-in waiters (item 8), the join's Idempotency-Key lifetime (item 9),
a raised bucket capacity (item 10), unregistered events (item 16) and the event's state in
status (item 18, with issue 14's sold out).

Each probe replays what an attacker or an operator's slip did against the old code, over real
sockets: production-mode gateways (two replicas sharing a real redis-server, or the embedded
store) behind uvicorn, with signed JWTs as an identity provider would issue them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
import redis

from tests.envs import app_env
from tests.http_server import serve
from tests.integration.conftest import ENTER, JOIN, STATUS
from ticketgate.app import create_app
from ticketgate.config import load_settings

SECRET = "probe-queue-secret-probe-queue-secret"
JWT_KEY = "probe-jwt-hmac-key-probe-jwt-hmac-key!!"
EVENTS = "/api/v1/admin/events"


def bearer(subject: str, *roles: str) -> dict[str, str]:
    """A JWT as the identity provider would sign it (HS256 with JWT_SECRET)."""
    now = int(time.time())
    claims = {
        "iss": "ticketgate",
        "aud": "ticketgate",
        "sub": subject,
        "iat": now,
        "exp": now + 300,
        "roles": list(roles or ("user",)),
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, JWT_KEY, 'HS256')}"}


def admin() -> dict[str, str]:
    """Minted when used: a module-level token would expire before a long suite reaches it."""
    return bearer("ops", "admin", "user")


def production(redis_address: str = "", **overrides: str) -> dict[str, str]:
    env = app_env(
        SERVER_ENVIRONMENT="production",
        QUEUE_TOKEN_SECRET=SECRET,
        JWT_SECRET=JWT_KEY,
        JWT_ALGORITHMS="HS256",
        QUEUE_SWEEP_INTERVAL_MS="600000",  # sweeps happen when a probe asks for them
        **overrides,
    )
    if redis_address:
        env["REDIS_ADDRESS"] = redis_address
    return env


@contextlib.asynccontextmanager
async def replicas(
    store: str, redis_address: str, **overrides: str
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two production replicas sharing one Redis, or one gateway on the embedded store."""
    if store == "memory":
        async with serve(create_app(load_settings(production(**overrides)))) as only:
            yield [only]
        return
    env = production(redis_address, **overrides)
    async with (
        serve(create_app(load_settings(env))) as first,
        serve(create_app(load_settings(env))) as second,
    ):
        yield [first, second]


def event() -> str:
    return f"evt_probe_{uuid.uuid4().hex[:10]}"


async def register(client: httpx.AsyncClient, event_id: str, **settings: object) -> None:
    created = await client.post(EVENTS, json={"event_id": event_id, **settings}, headers=admin())
    assert created.status_code == 201, created.text


OPEN_DOOR = {"QUEUE_ADMISSION_WINDOW": "10", "QUEUE_MIN_WAIT": "10:0"}


# --------------------------------------------------------------------------- item 2


@pytest.mark.parametrize("store", ["redis", "memory"])
async def test_one_account_gets_one_admission_however_many_anonymous_places_it_holds(
    store: str, redis_address: str
) -> None:
    """Mallory joined anonymously four times (across replicas), then entered every token with
    her JWT at once: 4 admissions on the old code. Now one, and 409 ALREADY_ADMITTED."""
    event_id = event()
    async with replicas(store, redis_address, **OPEN_DOOR) as gateways:
        await register(gateways[0], event_id)
        tokens = []
        for n in range(4):
            joined = await gateways[n % len(gateways)].post(JOIN, json={"event_id": event_id})
            assert joined.status_code == 202, joined.text
            tokens.append(joined.json()["waiting_token"])
        mallory = bearer("mallory")
        answers = await asyncio.gather(
            *(
                gateways[n % len(gateways)].post(
                    ENTER, json={"waiting_token": token}, headers=mallory
                )
                for n, token in enumerate(tokens)
            )
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 409, 409, 409], [a.text for a in answers]
        codes = {a.json()["error"]["code"] for a in answers if a.status_code == 409}
        assert codes == {"ALREADY_ADMITTED"}

        # signed in this time: refused at the door of the queue, not after a whole wait
        again = await gateways[-1].post(JOIN, json={"event_id": event_id}, headers=mallory)
        assert (again.status_code, again.json()["error"]["code"]) == (409, "ALREADY_ADMITTED")
        # a place she could not use still admits someone else
        spare = next(t for t, a in zip(tokens, answers, strict=True) if a.status_code == 409)
        trent = await gateways[0].post(
            ENTER, json={"waiting_token": spare}, headers=bearer("trent")
        )
        assert trent.status_code == 200, trent.text


# --------------------------------------------------------------------------- item 8


async def test_swept_signed_in_waiters_leave_nothing_in_the_users_hash(
    redis_address: str, redis_sync: redis.Redis
) -> None:
    """200 signed-in waiters went silent and were swept; their entries stayed in
    tg:{event}:users forever (the memory store dropped them)."""
    event_id = event()
    async with replicas("redis", redis_address, QUEUE_HEARTBEAT_TTL_SEC="1") as (first, _):
        await register(first, event_id)
        for n in range(20):
            joined = await first.post(JOIN, json={"event_id": event_id}, headers=bearer(f"u{n}"))
            assert joined.status_code == 202, joined.text
        assert redis_sync.hlen(f"tg:{{{event_id}}}:users") == 20
        await asyncio.sleep(1.2)
        swept = await first.post(f"{EVENTS}/{event_id}/sweep", headers=admin())
        assert swept.json()["removed"] == 20
    assert redis_sync.hlen(f"tg:{{{event_id}}}:users") == 0
    assert redis_sync.hlen(f"tg:{{{event_id}}}:owners") == 0


# --------------------------------------------------------------------------- item 9


async def test_the_joins_idempotency_key_lives_idempotency_ttl_sec(
    redis_address: str, redis_sync: redis.Redis
) -> None:
    event_id = event()
    async with replicas("redis", redis_address, IDEMPOTENCY_TTL_SEC="120") as (first, _):
        await register(first, event_id)
        joined = await first.post(
            JOIN, json={"event_id": event_id}, headers={"Idempotency-Key": "probe-join-1"}
        )
        assert joined.status_code == 202, joined.text
    (key,) = redis_sync.keys(f"tg:{{{event_id}}}:idem:*")
    assert 0 < redis_sync.pttl(key) <= 120_000, "not the hard-coded 24 h"


# --------------------------------------------------------------------------- item 10


@pytest.mark.parametrize("store", ["redis", "memory"])
async def test_a_raised_capacity_grants_the_same_on_both_stores(
    store: str, redis_address: str
) -> None:
    """QUEUE_BUCKET_CAPACITY=2, the operator raises a new event to 5: the embedded store
    granted 2, Redis 5."""
    event_id = event()
    settings = {
        **OPEN_DOOR,
        "QUEUE_BUCKET_CAPACITY": "2",
        "QUEUE_BUCKET_REFILL_PER_SEC": "0.001",
    }
    async with replicas(store, redis_address, **settings) as gateways:
        await register(gateways[0], event_id, bucket_capacity=5)
        tokens = [
            (await gateways[0].post(JOIN, json={"event_id": event_id})).json()["waiting_token"]
            for _ in range(8)
        ]
        answers = [
            await gateways[0].post(ENTER, json={"waiting_token": t}, headers=bearer(f"f{n}"))
            for n, t in enumerate(tokens)
        ]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3


# --------------------------------------------------------------------------- item 16


@pytest.mark.parametrize("store", ["redis", "memory"])
async def test_a_typo_in_an_event_id_pauses_nothing_and_opens_no_queue(
    store: str, redis_address: str
) -> None:
    """`PATCH evt_2025_10001 {paused: true}` paused a typo while the real event kept
    admitting, and any event id opened a queue on its first join."""
    real = event()
    typo = real + "1"
    async with replicas(store, redis_address) as gateways:
        await register(gateways[0], real)
        paused = await gateways[-1].patch(
            f"{EVENTS}/{typo}", json={"paused": True}, headers=admin()
        )
        assert (paused.status_code, paused.json()["error"]["code"]) == (404, "EVENT_NOT_FOUND")
        joined = await gateways[-1].post(JOIN, json={"event_id": typo})
        assert (joined.status_code, joined.json()["error"]["code"]) == (404, "EVENT_NOT_FOUND")
        assert (await gateways[-1].post(JOIN, json={"event_id": real})).status_code == 202
        listed = (await gateways[0].get(EVENTS, headers=admin())).json()["events"]
        assert typo not in [e["event_id"] for e in listed]


# --------------------------------------------------------------------------- item 18


@pytest.mark.parametrize("store", ["redis", "memory"])
async def test_status_tells_a_paused_or_sold_out_event_and_promises_nothing(
    store: str, redis_address: str
) -> None:
    """While admissions were paused status said `waiting` with an ETA of 194 s."""
    event_id = event()
    async with replicas(store, redis_address, QUEUE_ADMISSION_WINDOW="1") as gateways:
        await register(gateways[0], event_id)
        tokens = [
            (await gateways[0].post(JOIN, json={"event_id": event_id})).json()["waiting_token"]
            for _ in range(3)
        ]
        for flag, state in (("paused", "paused"), ("sold_out", "sold_out")):
            changed = await gateways[0].patch(
                f"{EVENTS}/{event_id}", json={flag: True}, headers=admin()
            )
            assert changed.status_code == 200, changed.text
            for token in tokens:
                status = (await gateways[-1].get(STATUS, params={"token": token})).json()
                assert status["event_state"] == state
                assert (status["ready_for_entry"], status["eta_sec"]) == (False, None)
        refused = await gateways[-1].post(JOIN, json={"event_id": event_id})
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "SOLD_OUT")
