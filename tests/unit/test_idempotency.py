"""Idempotency without sockets: settings, key rules, stored answers, the memory store's
lease/TTL/ownership rules on a controlled clock, and the interceptor's header policy."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ticketgate.edge.auth import Principal
from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Idempotency, Route
from ticketgate.envparse import ConfigError
from ticketgate.middleware.idempotency import (
    CACHED_HEADER,
    Claim,
    ClaimState,
    IdempotencyInterceptor,
    MemoryIdempotencyStore,
    decode_response,
    encode_response,
    idempotency_key_of,
    is_stored,
    scoped_idempotency_key,
)
from ticketgate.middleware.settings import IdempotencySettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_request(
    key: bytes | None = None,
    *,
    user: str = "",
    path: str = "/r",
    method: str = "POST",
    body: bytes = b"{}",
    query: bytes = b"",
) -> Request:
    headers = {} if key is None else {b"idempotency-key": key}
    request = Request(method, path, query, headers, "0" * 32)
    request.body = body
    if user:
        request.principal = Principal(user)
    return request


# --------------------------------------------------------------------------- settings


def test_settings_defaults_are_a_day_of_retention_and_a_thirty_second_lease() -> None:
    settings = IdempotencySettings.from_env({})
    assert settings.ttl_sec == 86_400
    assert settings.lease_sec == 30
    assert settings.ttl_ms == 86_400_000
    assert settings.lease_ms == 30_000


def test_settings_read_the_environment() -> None:
    settings = IdempotencySettings.from_env(
        {
            "IDEMPOTENCY_TTL_SEC": "3600",
            "IDEMPOTENCY_LEASE_SEC": "2.5",
            "IDEMPOTENCY_MEMORY_MAX_ENTRIES": "10",
        }
    )
    assert (settings.ttl_ms, settings.lease_ms, settings.memory_max_entries) == (
        3_600_000,
        2_500,
        10,
    )


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"IDEMPOTENCY_TTL_SEC": "a day"}, "IDEMPOTENCY_TTL_SEC"),
        ({"IDEMPOTENCY_LEASE_SEC": "0"}, "IDEMPOTENCY_LEASE_SEC"),
        ({"IDEMPOTENCY_TTL_SEC": "-1"}, "IDEMPOTENCY_TTL_SEC"),
        ({"IDEMPOTENCY_TTL_SEC": "10", "IDEMPOTENCY_LEASE_SEC": "20"}, "IDEMPOTENCY_LEASE_SEC"),
        ({"IDEMPOTENCY_MEMORY_MAX_ENTRIES": "1.5"}, "IDEMPOTENCY_MEMORY_MAX_ENTRIES"),
        ({"IDEMPOTENCY_MEMORY_MAX_ENTRIES": "0"}, "IDEMPOTENCY_MEMORY_MAX_ENTRIES"),
    ],
)
def test_settings_refuse_malformed_values_naming_the_variable(
    env: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        IdempotencySettings.from_env(env)


def test_settings_are_frozen() -> None:
    settings = IdempotencySettings()
    with pytest.raises(AttributeError):
        settings.ttl_sec = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- key rules


def test_key_helper_returns_the_key_or_empty() -> None:
    assert idempotency_key_of(make_request()) == ""
    assert idempotency_key_of(make_request(b"order-42_~!")) == "order-42_~!"
    assert idempotency_key_of(make_request(b"k" * 255)) == "k" * 255


@pytest.mark.parametrize(
    "raw", [b"", b"k" * 256, b"has space", b"tab\there", b"caf\xc3\xa9", b"nul\x00", b"\x7f"]
)
def test_key_helper_refuses_malformed_keys(raw: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        idempotency_key_of(make_request(raw))
    assert caught.value.code == "INVALID_IDEMPOTENCY_KEY"
    assert caught.value.status == 400


def test_scoped_key_separates_users_methods_paths_and_anonymous() -> None:
    key = b"same-key"
    scoped = {
        scoped_idempotency_key(make_request(key, user="alice")),
        scoped_idempotency_key(make_request(key, user="bob")),
        scoped_idempotency_key(make_request(key)),  # anonymous
        scoped_idempotency_key(make_request(key, user="anon")),  # a user literally named anon
        scoped_idempotency_key(make_request(key, user="alice", path="/other")),
        scoped_idempotency_key(make_request(key, user="alice", method="PUT")),
    }
    assert len(scoped) == 6
    assert all(len(value) == 32 for value in scoped)
    assert scoped_idempotency_key(make_request(key, user="alice")) == scoped_idempotency_key(
        make_request(key, user="alice", body=b"other body")
    )
    assert scoped_idempotency_key(make_request()) == ""


# --------------------------------------------------------------------------- stored answers


def test_stored_answer_round_trips_without_per_request_headers() -> None:
    original = Response(
        201,
        b'{"ok":true}',
        (
            (b"location", b"/r/1"),
            (b"Set-Cookie", b"s=1"),
            (b"x-request-id", b"abc"),
            (b"ratelimit", b"limit=1"),
        ),
    )
    replay = decode_response(encode_response(original))
    assert replay.status == 201
    assert replay.body == b'{"ok":true}'
    assert replay.content_type == original.content_type
    assert replay.headers == ((b"location", b"/r/1"), CACHED_HEADER)


@pytest.mark.parametrize(
    ("status", "stored"),
    [
        *((status, True) for status in (200, 201, 400, 404, 409, 410)),
        *((status, False) for status in (408, 429, 500, 503, 504)),
    ],
)
def test_final_answers_are_stored_and_transient_ones_are_not(status: int, stored: bool) -> None:
    assert is_stored(status) is stored


def test_an_answer_that_says_retry_later_is_not_stored() -> None:
    """enter's NOT_READY is a 409 with Retry-After: a retry with the same key must run."""
    assert is_stored(409, ((b"retry-after", b"2"),)) is False
    assert is_stored(409, ((b"allow", b"GET"),)) is True


# --------------------------------------------------------------------------- memory store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> MemoryIdempotencyStore:
    return MemoryIdempotencyStore(IdempotencySettings(ttl_sec=60, lease_sec=5), clock)


async def test_first_claim_wins_and_duplicates_see_in_progress(
    memory: MemoryIdempotencyStore,
) -> None:
    assert (await memory.claim("s", "fp", "w1")).state is ClaimState.CLAIMED
    assert (await memory.claim("s", "fp", "w2")).state is ClaimState.IN_PROGRESS
    assert (await memory.claim("s", "other", "w3")).state is ClaimState.CONFLICT


async def test_completed_answer_is_replayed_until_retention_ends(
    memory: MemoryIdempotencyStore, clock: Clock
) -> None:
    await memory.claim("s", "fp", "w1")
    assert await memory.complete("s", "fp", "w1", b"answer")
    assert await memory.claim("s", "fp", "w2") == Claim(ClaimState.DONE, b"answer")
    assert (await memory.claim("s", "different", "w2")).state is ClaimState.CONFLICT
    clock.now += 59
    assert (await memory.claim("s", "fp", "w2")).state is ClaimState.DONE
    clock.now += 2
    assert (await memory.claim("s", "fp", "w3")).state is ClaimState.CLAIMED


async def test_lease_expiry_frees_a_crashed_claim_and_the_stale_owner_cannot_write(
    memory: MemoryIdempotencyStore, clock: Clock
) -> None:
    await memory.claim("s", "fp", "crashed")
    clock.now += 4.9
    assert (await memory.claim("s", "fp", "w2")).state is ClaimState.IN_PROGRESS
    clock.now += 0.2
    assert (await memory.claim("s", "fp", "w2")).state is ClaimState.CLAIMED
    assert not await memory.release("s", "crashed")
    assert not await memory.complete("s", "fp", "crashed", b"stale")
    assert await memory.complete("s", "fp", "w2", b"fresh")
    assert await memory.claim("s", "fp", "w3") == Claim(ClaimState.DONE, b"fresh")


async def test_release_lets_the_next_request_claim(memory: MemoryIdempotencyStore) -> None:
    await memory.claim("s", "fp", "w1")
    assert not await memory.release("s", "someone-else")
    assert await memory.release("s", "w1")
    assert (await memory.claim("s", "fp", "w2")).state is ClaimState.CLAIMED


async def test_answer_of_an_unclaimed_expired_lease_is_still_kept(
    memory: MemoryIdempotencyStore, clock: Clock
) -> None:
    await memory.claim("s", "fp", "slow")
    clock.now += 6
    assert await memory.complete("s", "fp", "slow", b"late")
    assert await memory.claim("s", "fp", "w2") == Claim(ClaimState.DONE, b"late")


async def test_memory_store_is_bounded_and_drops_the_oldest_first(clock: Clock) -> None:
    store = MemoryIdempotencyStore(
        IdempotencySettings(ttl_sec=60, lease_sec=5, memory_max_entries=3), clock
    )
    for n in range(5):
        await store.claim(f"s{n}", "fp", "w")
        await store.complete(f"s{n}", "fp", "w", b"%d" % n)
    assert len(store) == 3
    assert (await store.claim("s0", "fp", "x")).state is ClaimState.CLAIMED
    assert await store.claim("s4", "fp", "x") == Claim(ClaimState.DONE, b"4")


async def test_memory_store_drops_expired_entries_as_it_writes(clock: Clock) -> None:
    store = MemoryIdempotencyStore(IdempotencySettings(ttl_sec=1, lease_sec=1), clock)
    for n in range(100):
        await store.claim(f"s{n}", "fp", "w")
    clock.now += 2
    await store.claim("fresh", "fp", "w")
    assert len(store) == 1


# --------------------------------------------------------------------------- interceptor policy


class ExplodingStore:
    """Fails the test if the interceptor touches storage when it must not."""

    async def start(self) -> None:
        return None

    async def claim(self, scope: str, fingerprint: str, owner: str) -> Claim:
        raise AssertionError("store touched")

    async def complete(self, scope: str, fingerprint: str, owner: str, record: bytes) -> bool:
        raise AssertionError("store touched")

    async def release(self, scope: str, owner: str) -> bool:
        raise AssertionError("store touched")

    async def close(self) -> None:
        return None


async def _ok(request: Request) -> Response:
    return Response.json(200, {"ok": True})


def _route(mode: Idempotency) -> Route:
    return Route("POST", "/r", _ok, AuthPolicy.OPTIONAL, idempotency=mode)


def test_routes_without_idempotency_are_left_unwrapped() -> None:
    interceptor = IdempotencyInterceptor(ExplodingStore())
    assert interceptor.wrap(_route(Idempotency.NONE), _ok) is _ok


async def test_optional_route_without_a_key_goes_straight_to_the_handler() -> None:
    wrapped = IdempotencyInterceptor(ExplodingStore()).wrap(_route(Idempotency.OPTIONAL), _ok)
    response = await wrapped(make_request())
    assert response.status == 200


async def test_required_route_without_a_key_is_refused() -> None:
    wrapped = IdempotencyInterceptor(ExplodingStore()).wrap(_route(Idempotency.REQUIRED), _ok)
    with pytest.raises(ApiError) as caught:
        await wrapped(make_request())
    assert (caught.value.code, caught.value.status) == ("IDEMPOTENCY_REQUIRED", 400)


@pytest.mark.parametrize("mode", [Idempotency.OPTIONAL, Idempotency.REQUIRED])
@pytest.mark.parametrize("raw", [b"", b"x" * 256, b"two words"])
async def test_malformed_key_is_refused_before_storage(mode: Idempotency, raw: bytes) -> None:
    wrapped = IdempotencyInterceptor(ExplodingStore()).wrap(_route(mode), _ok)
    with pytest.raises(ApiError) as caught:
        await wrapped(make_request(raw))
    assert (caught.value.code, caught.value.status) == ("INVALID_IDEMPOTENCY_KEY", 400)


async def test_handler_error_answer_is_stored_with_the_envelope() -> None:
    store = MemoryIdempotencyStore(IdempotencySettings())
    calls: list[int] = []

    async def refuse(request: Request) -> Response:
        calls.append(1)
        raise ApiError("NOT_READY", "not yet", extra={"hint": 3})

    wrapped = IdempotencyInterceptor(store).wrap(_route(Idempotency.REQUIRED), refuse)
    with pytest.raises(ApiError):
        await wrapped(make_request(b"k1"))
    replay = await wrapped(make_request(b"k1"))
    assert len(calls) == 1
    assert replay.status == 409
    assert CACHED_HEADER in replay.headers
    body: dict[str, Any] = msgspec.json.decode(replay.body)
    assert body["error"]["code"] == "NOT_READY"
    assert body["error"]["trace_id"] == "0" * 32
    assert body["hint"] == 3
