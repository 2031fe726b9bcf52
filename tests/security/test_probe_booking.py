"""Attack probes of issue 10 on Redis addressing (item 1) and the reservation token (item 5).

Each probe replays what an operator's slip or an attacker did against the old code and checks
the answer the gateway must give now, over real sockets: a real redis-server (on a Unix
socket when the probe is about one) and the real app behind uvicorn.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import redis

from tests.backends.booking_gateway import (
    BookingGateway,
    admitted,
    backend_settings,
    booking_gateway,
    reserve,
)
from tests.backends.fake_servers import FakeBackends, Fault, fake_backends
from tests.http_server import serve
from tests.integration.conftest import JOIN, assert_envelope, dev_env, eventually
from tests.redis_server import RedisServer, running_redis
from tests.required import backend_unavailable
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.envparse import ConfigError
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.services.inventory import DEMO_EVENT_ID


@pytest.fixture
def unix_redis() -> Iterator[RedisServer]:
    """A redis-server listening on a Unix socket only: no TCP port to fall back to."""
    if shutil.which("redis-server") is None:
        backend_unavailable("redis-server is not installed")
    with running_redis(unix_only=True) as server:
        yield server


# --------------------------------------------------------------------------- item 1


async def test_unix_socket_address_reaches_the_redis_on_that_socket(
    unix_redis: RedisServer,
) -> None:
    """`REDIS_ADDRESS=unix:///path` used to be parsed as "no host" and connect to
    127.0.0.1:6379; the queue must land in the Redis listening on the socket."""
    env = dev_env(REDIS_ADDRESS=unix_redis.address, QUEUE_SWEEP_INTERVAL_MS="600000")
    async with serve(create_app(load_settings(env))) as client:
        response = await client.post(JOIN, json={"event_id": "evt_unix_probe"})
        assert response.status_code == 202, response.text
        ready = await client.get("/readyz")
        assert ready.json()["dependencies"]["redis"] == "connected", ready.text
    inspector = redis.Redis(unix_socket_path=unix_redis.socket_path)
    try:
        assert inspector.zcard("tg:{evt_unix_probe}:wait") == 1
    finally:
        inspector.close()


async def test_unix_socket_database_number_is_honoured(unix_redis: RedisServer) -> None:
    env = dev_env(REDIS_ADDRESS=f"{unix_redis.address}?db=3", QUEUE_SWEEP_INTERVAL_MS="600000")
    async with serve(create_app(load_settings(env))) as client:
        response = await client.post(JOIN, json={"event_id": "evt_unix_db"})
        assert response.status_code == 202, response.text
    inspector = redis.Redis(unix_socket_path=unix_redis.socket_path, db=3)
    try:
        assert inspector.zcard("tg:{evt_unix_db}:wait") == 1
    finally:
        inspector.close()


@pytest.mark.parametrize(
    ("address", "extra", "fragment"),
    [
        ("redis://", {}, "must name a host"),
        ("redis:///0", {}, "must name a host"),
        ("rediss://:secret@/0", {}, "must name a host"),
        ("redis://:6379", {}, "must name a host"),
        ("unix://", {}, "absolute socket path"),
        ("unix://relative.sock", {}, "absolute socket path"),
        ("unix:///run/redis.sock", {"REDIS_CLUSTER_MODE": "true"}, "REDIS_CLUSTER_MODE"),
        ("unix:///run/redis.sock", {"REDIS_TLS_ENABLED": "true"}, "REDIS_TLS_ENABLED"),
    ],
)
def test_addresses_that_would_fall_back_to_localhost_are_refused(
    address: str, extra: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(dev_env(REDIS_ADDRESS=address, **extra))
    message = str(refused.value)
    assert fragment in message
    assert "\n" not in message


# --------------------------------------------------------------------------- item 5
#
# A failed reservation used to burn the single-use reservation token (consumed before the
# backend call): a 409 SEAT_UNAVAILABLE, a 503 or a 504 sent the fan back to the end of the
# queue, and a retry with the same Idempotency-Key after a 504 got 410 for a day.


@pytest.fixture(params=["memory", "redis"])
def queue_redis(request: pytest.FixtureRequest) -> str:
    """ "" for the memory store, else the address of the session's real Redis."""
    if request.param == "memory":
        return ""
    return str(request.getfixturevalue("redis_address"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeBackends]:
    async with fake_backends() as backends:
        yield backends


@pytest.fixture
async def gw(fake: FakeBackends, queue_redis: str) -> AsyncIterator[BookingGateway]:
    settings = backend_settings(fake.address, reservation_timeout_ms=300)
    async with booking_gateway(settings, redis_address=queue_redis) as gateway:
        yield gateway


def new_event() -> str:
    return f"evt_{uuid.uuid4().hex[:10]}"


def new_key() -> str:
    return uuid.uuid4().hex


async def test_a_taken_seat_leaves_the_token_usable(gw: BookingGateway, fake: FakeBackends) -> None:
    event = new_event()
    token = await admitted(gw.http, event, 1)
    taken = common_pb2.Error(code=common_pb2.ERROR_CODE_INVENTORY_CONFLICT, message="A-12 taken")
    fake.fail("CreateReservation", Fault(error=taken))
    refused = await reserve(gw.http, event, 1, token, new_key(), seat_ids=["A-12"])
    assert_envelope(refused, 409, "SEAT_UNAVAILABLE")
    fake.heal()
    other = await reserve(gw.http, event, 1, token, new_key(), seat_ids=["A-13"])
    assert other.status_code == 201, other.text
    # Exactly one successful hold per token.
    again = await reserve(gw.http, event, 1, token, new_key(), seat_ids=["A-14"])
    assert_envelope(again, 410, "RESERVATION_EXPIRED")
    assert len(fake.recorder.of("CreateReservation")) == 2


async def test_a_backend_outage_leaves_the_token_usable(
    gw: BookingGateway, fake: FakeBackends
) -> None:
    event = new_event()
    token = await admitted(gw.http, event, 1)
    fake.fail("CreateReservation", Fault(status=grpc.StatusCode.UNAVAILABLE))
    down = await reserve(gw.http, event, 1, token, new_key())
    assert_envelope(down, 503, "UPSTREAM_UNAVAILABLE")
    fake.heal()
    retried = await reserve(gw.http, event, 1, token, new_key())
    assert retried.status_code == 201, retried.text


async def test_a_retry_with_the_same_key_after_a_504_holds(
    gw: BookingGateway, fake: FakeBackends
) -> None:
    event = new_event()
    token = await admitted(gw.http, event, 1)
    fake.fail("CreateReservation", Fault(delay_sec=1.0))
    slow = await reserve(gw.http, event, 1, token, "rsv-after-504")
    assert_envelope(slow, 504, "UPSTREAM_TIMEOUT")
    fake.heal()
    retried = await reserve(gw.http, event, 1, token, "rsv-after-504")
    assert retried.status_code == 201, retried.text
    assert "x-idempotency-cached" not in retried.headers
    replay = await reserve(gw.http, event, 1, token, "rsv-after-504")
    assert replay.status_code == 201
    assert replay.json() == retried.json()


async def test_concurrent_attempts_with_one_token_hold_once(
    gw: BookingGateway, fake: FakeBackends
) -> None:
    event = new_event()
    token = await admitted(gw.http, event, 1)
    fake.fail("CreateReservation", Fault(delay_sec=0.15))  # keep the first attempt in flight
    answers = await asyncio.gather(
        *(reserve(gw.http, event, 1, token, new_key()) for _ in range(8))
    )
    created = [answer for answer in answers if answer.status_code == 201]
    assert len(created) == 1, [answer.text for answer in answers]
    for answer in answers:
        if answer.status_code == 201:
            continue
        code = answer.json()["error"]["code"]
        assert (answer.status_code, code) in {
            (409, "RESERVATION_IN_PROGRESS"),
            (410, "RESERVATION_EXPIRED"),
        }, answer.text
        if code == "RESERVATION_IN_PROGRESS":
            assert answer.headers["retry-after"] == "1"
    assert any(a.status_code == 409 for a in answers), "no attempt overlapped the first"
    assert len(fake.recorder.of("CreateReservation")) == 1


async def test_an_in_progress_refusal_is_not_replayed_for_its_key(
    gw: BookingGateway, fake: FakeBackends
) -> None:
    """The 409 RESERVATION_IN_PROGRESS says "later": the same key then gets a real answer."""
    event = new_event()
    token = await admitted(gw.http, event, 1)
    fake.fail("CreateReservation", Fault(delay_sec=0.2))  # within the 300 ms deadline
    first = asyncio.ensure_future(reserve(gw.http, event, 1, token, "first"))

    async def first_is_running() -> bool:  # its call reached the backend: it holds the token
        return bool(fake.recorder.of("CreateReservation"))

    await eventually(first_is_running, within=5.0, step=0.005)
    busy = await reserve(gw.http, event, 1, token, "second")
    assert_envelope(busy, 409, "RESERVATION_IN_PROGRESS")
    assert (await first).status_code == 201
    after = await reserve(gw.http, event, 1, token, "second")
    assert_envelope(after, 410, "RESERVATION_EXPIRED")
    assert "x-idempotency-cached" not in after.headers


async def test_a_taken_seat_on_the_reference_services_leaves_the_token_usable() -> None:
    """The same over the real in-process inventory: another fan holds A-1; this fan's 409
    keeps their token, and A-2 is theirs with it."""
    env = dev_env(QUEUE_SWEEP_INTERVAL_MS="600000")
    async with serve(create_app(load_settings(env))) as client:
        first = await admitted(client, DEMO_EVENT_ID, "probe-a")
        held = await reserve(client, DEMO_EVENT_ID, "probe-a", first, new_key(), seat_ids=["J-1"])
        assert held.status_code == 201, held.text
        second = await admitted(client, DEMO_EVENT_ID, "probe-b")
        taken = await reserve(client, DEMO_EVENT_ID, "probe-b", second, new_key(), seat_ids=["J-1"])
        assert_envelope(taken, 409, "SEAT_UNAVAILABLE")
        other = await reserve(client, DEMO_EVENT_ID, "probe-b", second, new_key(), seat_ids=["J-2"])
        assert other.status_code == 201, other.text
