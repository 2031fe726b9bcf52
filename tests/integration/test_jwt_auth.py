"""JWT validation end to end: real keys, a real JWKS server over HTTP, a real gateway socket.

Every attack the issue lists (alg none, HS256 signed with the RSA public key, expired,
not-yet-valid, wrong issuer/audience, unknown-kid floods, a failing key endpoint) is a token
built here with real keys and sent through the real authenticator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import TEST_SECRET
from tests.http_server import serve
from tests.unit.test_jwks import JwksServer, jwk_of, running_jwks_server, sample_keys
from ticketgate.edge.auth import AuthError, Principal
from ticketgate.envparse import ConfigError
from ticketgate.http.core import Gateway
from ticketgate.http.queue import QueueRoutes
from ticketgate.middleware.dev_bypass import DEV_SUPER_TOKEN, DEV_SUPER_USER, DevBypassAuthenticator
from ticketgate.middleware.jwks import HttpJwksSource, JwksCache
from ticketgate.middleware.jwt_auth import JwtAuthenticator
from ticketgate.middleware.settings import JwtSettings
from ticketgate.queuestore.memory_store import MemoryQueueStore
from ticketgate.waitingroom.service import WaitingRoom
from ticketgate.waitingroom.settings import QueueSettings

ISSUER = "https://id.example.test/"
AUDIENCE = "ticketgate"
HMAC_SECRET = "hmac-secret-hmac-secret-hmac-secret!!"


def settings(**overrides: Any) -> JwtSettings:
    base: dict[str, Any] = {
        "issuer": (ISSUER,),
        "audience": (AUDIENCE,),
        "leeway_sec": 30.0,
        "kid_cooldown_sec": 30.0,
    }
    base.update(overrides)
    return JwtSettings(**base)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "roles": ["user"],
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def rs256(payload: dict[str, Any], kid: str = "rsa-1", key: Any = None) -> str:
    return jwt.encode(payload, key or sample_keys().rsa, "RS256", headers={"kid": kid})


def es256(payload: dict[str, Any], kid: str = "ec-1") -> str:
    return jwt.encode(payload, sample_keys().ec, "ES256", headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token built by hand (PyJWT refuses to HMAC with a PEM key, attackers do not)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    """An alg-none token: header and claims, empty signature."""
    header = {"alg": alg, "typ": "JWT", "kid": "rsa-1"}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}."


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with running_jwks_server() as server:
        keys = sample_keys()
        server.keys = [jwk_of(keys.rsa, "rsa-1", alg="RS256", use="sig"), jwk_of(keys.ec, "ec-1")]
        yield server


def authenticator_for(
    jwks: JwksServer,
    jwt_settings: JwtSettings | None = None,
    *,
    dev: bool = False,
    clock: Callable[[], float] = time.time,
) -> JwtAuthenticator:
    jwt_settings = jwt_settings or settings()
    cache = jwt_settings.jwks_cache(HttpJwksSource(jwks.url, timeout=1.0))
    return JwtAuthenticator(jwt_settings, cache, DevBypassAuthenticator(dev), clock=clock)


@pytest.fixture
async def auth(jwks: JwksServer) -> AsyncIterator[JwtAuthenticator]:
    authenticator = authenticator_for(jwks)
    yield authenticator
    await authenticator.aclose()


async def refused(auth: JwtAuthenticator, token: str, code: str = "INVALID_TOKEN") -> str:
    with pytest.raises(AuthError) as caught:
        await auth.authenticate(bearer(token), "")
    assert caught.value.code == code
    return caught.value.message


# --- accepted -------------------------------------------------------------------------------


async def test_valid_rs256_token_identifies_the_user(auth: JwtAuthenticator) -> None:
    principal = await auth.authenticate(bearer(rs256(claims(roles=["user", "admin"]))), "")
    assert principal == Principal("user-42", frozenset({"user", "admin"}))


async def test_valid_es256_token_identifies_the_user(auth: JwtAuthenticator) -> None:
    principal = await auth.authenticate(bearer(es256(claims(roles=None, role="admin"))), "")
    assert principal == Principal("user-42", frozenset({"admin"}))


async def test_token_just_past_exp_is_accepted_within_the_leeway(auth: JwtAuthenticator) -> None:
    principal = await auth.authenticate(bearer(rs256(claims(exp=int(time.time()) - 10))), "")
    assert principal.user_id == "user-42"


async def test_hs256_token_is_accepted_when_a_secret_is_configured(jwks: JwksServer) -> None:
    jwt_settings = settings(algorithms=("RS256", "HS256"), secret=HMAC_SECRET.encode())
    auth = authenticator_for(jwks, jwt_settings)
    try:
        token = jwt.encode(claims(), HMAC_SECRET, "HS256")
        assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
        assert (await auth.authenticate(bearer(rs256(claims())), "")).user_id == "user-42"
    finally:
        await auth.aclose()


# --- refused --------------------------------------------------------------------------------


async def test_alg_none_is_refused(auth: JwtAuthenticator) -> None:
    for alg in ("none", "None", "NONE"):
        assert "alg none" in await refused(auth, unsigned(claims(), alg))


def rsa_public_pem() -> bytes:
    return (
        sample_keys()
        .rsa.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


async def test_hs256_signed_with_the_rsa_public_key_is_refused(auth: JwtAuthenticator) -> None:
    token = hand_signed({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), rsa_public_pem())
    assert await refused(auth, token) == "token algorithm is not allowed"


async def test_hs256_signed_with_the_rsa_public_key_is_refused_even_with_hs256_enabled(
    jwks: JwksServer,
) -> None:
    jwt_settings = settings(algorithms=("RS256", "HS256"), secret=HMAC_SECRET.encode())
    auth = authenticator_for(jwks, jwt_settings)
    try:
        for pem in (rsa_public_pem(), json.dumps(jwks.keys[0]).encode()):
            token = hand_signed({"alg": "HS256", "kid": "rsa-1"}, claims(), pem)
            assert await refused(auth, token) == "token signature is invalid"
    finally:
        await auth.aclose()


async def test_rs256_token_naming_an_ec_key_is_refused(auth: JwtAuthenticator) -> None:
    assert await refused(auth, rs256(claims(), kid="ec-1")) == "token signing key is not known"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": -120}, "token has expired"),
        ({"nbf": +120}, "token is not valid yet"),
        ({"iat": +120}, "token is not valid yet"),
        ({"iss": "https://evil.example.test/"}, "token issuer is not accepted"),
        ({"iss": None}, "token lacks the required iss claim"),
        ({"aud": "someone-else"}, "token audience is not accepted"),
        ({"aud": None}, "token lacks the required aud claim"),
        ({"exp": None}, "token lacks the required exp claim"),
        ({"sub": None}, "token lacks the required sub claim"),
        ({"sub": ""}, "token sub must be a user id of 1-128 chars"),
        ({"sub": 42}, "token sub must be a user id of 1-128 chars"),
        ({"sub": "x" * 129}, "token sub must be a user id of 1-128 chars"),
        ({"exp": "tomorrow"}, "token exp claim must be a number"),
        ({"exp": True}, "token exp claim must be a number"),
        ({"aud": ["a", 7]}, "token audience is not accepted"),
        ({"aud": [AUDIENCE, "other"]}, None),
    ],
)
async def test_claims_that_do_not_hold_are_refused(
    auth: JwtAuthenticator, overrides: dict[str, Any], message: str | None
) -> None:
    now = int(time.time())
    values = {
        name: now + value if name in {"exp", "nbf", "iat"} and type(value) is int else value
        for name, value in overrides.items()
    }
    payload = claims(**values)
    for token in (rs256(payload), es256(payload)):
        if message is None:
            assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
        else:
            assert await refused(auth, token) == message


async def test_bad_signature_is_refused(auth: JwtAuthenticator) -> None:
    forged = rs256(claims(), kid="rsa-1", key=sample_keys().rsa2)  # right kid, wrong key
    assert await refused(auth, forged) == "token signature is invalid"
    header, _, signature = rs256(claims()).split(".")
    tampered = b64(json.dumps(claims(sub="admin")).encode())
    assert await refused(auth, f"{header}.{tampered}.{signature}") == "token signature is invalid"


async def test_unknown_kid_is_refused_without_echoing_it(auth: JwtAuthenticator) -> None:
    kid = "kid-" + uuid.uuid4().hex
    message = await refused(auth, rs256(claims(sub="secret-user"), kid=kid))
    assert message == "token signing key is not known"
    assert kid not in message


async def test_token_with_critical_header_extensions_is_refused(auth: JwtAuthenticator) -> None:
    token = jwt.encode(
        claims(), sample_keys().rsa, "RS256", headers={"kid": "rsa-1", "crit": ["x-policy"]}
    )
    assert await refused(auth, token) == "token uses unsupported header extensions"


async def test_token_without_kid_is_refused(auth: JwtAuthenticator) -> None:
    token = jwt.encode(claims(), sample_keys().rsa, "RS256")
    assert await refused(auth, token) == "token header has no key id (kid)"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("Basic dXNlcjpwYXNz", "INVALID_TOKEN_FORMAT"),
        ("Bearer", "INVALID_TOKEN_FORMAT"),
        ("Bearer not-a-jwt", "INVALID_TOKEN_FORMAT"),
        ("Bearer a.b", "INVALID_TOKEN_FORMAT"),
        ("Bearer a.b.c.d", "INVALID_TOKEN_FORMAT"),
        ("Bearer a+b.c/d.e", "INVALID_TOKEN_FORMAT"),
        ("Bearer " + "a" * 9000 + ".b.c", "INVALID_TOKEN_FORMAT"),
        ("Bearer !!!!.b.c", "INVALID_TOKEN_FORMAT"),
        ("Bearer abc.def.ghi", "INVALID_TOKEN"),  # right shape, header is not JSON
    ],
)
async def test_malformed_authorization_is_refused(
    auth: JwtAuthenticator, authorization: str, code: str
) -> None:
    with pytest.raises(AuthError) as caught:
        await auth.authenticate(authorization, "")
    assert caught.value.code == code


# --- the development bypass -----------------------------------------------------------------


async def test_bypass_tokens_work_in_development(jwks: JwksServer) -> None:
    auth = authenticator_for(jwks, dev=True)
    try:
        dev = await auth.authenticate(bearer(DEV_SUPER_TOKEN), "")
        load = await auth.authenticate(bearer("load-test-bypass-token-vu17"), "")
        by_header = await auth.authenticate(bearer("load-test-bypass-token"), "vu18")
        real = await auth.authenticate(bearer(rs256(claims())), "")
    finally:
        await auth.aclose()
    assert dev.user_id == DEV_SUPER_USER
    assert (load.user_id, by_header.user_id) == ("load-test-vu17", "load-test-vu18")
    assert real.user_id == "user-42"


@pytest.mark.parametrize(
    "token", [DEV_SUPER_TOKEN, "load-test-bypass-token", "load-test-bypass-token-vu17"]
)
async def test_bypass_tokens_are_invalid_outside_development(
    auth: JwtAuthenticator, token: str
) -> None:
    await refused(auth, token, "INVALID_TOKEN")


# --- the key set over HTTP ------------------------------------------------------------------


async def test_concurrent_first_requests_cause_one_fetch(jwks: JwksServer) -> None:
    jwks.delay = 0.05
    auth = authenticator_for(jwks)
    tokens = [rs256(claims(sub=f"user-{n}")) for n in range(25)]
    tokens += [es256(claims(sub=f"user-{n}")) for n in range(25, 50)]
    try:
        principals = await asyncio.gather(*(auth.authenticate(bearer(t), "") for t in tokens))
    finally:
        await auth.aclose()
    assert [p.user_id for p in principals] == [f"user-{n}" for n in range(50)]
    assert jwks.fetches == 1


async def test_unknown_kid_flood_costs_one_fetch_per_cooldown(jwks: JwksServer) -> None:
    jwks.delay = 0.02
    auth = authenticator_for(jwks, settings(kid_cooldown_sec=0.5))
    waves = [[bearer(rs256(claims(), kid=uuid.uuid4().hex)) for _ in range(200)] for _ in range(4)]

    async def flood(wave: list[str]) -> None:
        outcomes = await asyncio.gather(
            *(auth.authenticate(header, "") for header in wave), return_exceptions=True
        )
        assert all(isinstance(o, AuthError) and o.code == "INVALID_TOKEN" for o in outcomes)

    try:
        await flood(waves[0])
        assert jwks.fetches == 1  # the first fetch doubled as the unknown-kid refetch
        await flood(waves[1])
        assert jwks.fetches == 1
        await asyncio.sleep(0.55)
        await flood(waves[2])
        await flood(waves[3])
        assert jwks.fetches == 2
        assert (await auth.authenticate(bearer(rs256(claims())), "")).user_id == "user-42"
    finally:
        await auth.aclose()


async def test_rotated_key_is_accepted_after_the_cooldown(jwks: JwksServer) -> None:
    auth = authenticator_for(jwks, settings(kid_cooldown_sec=0.2))
    try:
        assert await auth.authenticate(bearer(rs256(claims())), "")
        jwks.keys = [*jwks.keys, jwk_of(sample_keys().rsa2, "rsa-2", alg="RS256")]
        rotated = rs256(claims(sub="after-rotation"), kid="rsa-2", key=sample_keys().rsa2)

        await refused(auth, rotated)
        await asyncio.sleep(0.25)
        assert (await auth.authenticate(bearer(rotated), "")).user_id == "after-rotation"
        assert jwks.fetches == 2
    finally:
        await auth.aclose()


@pytest.mark.parametrize("outage", ["500", "closed"])
async def test_keys_keep_validating_while_the_endpoint_is_down(
    jwks: JwksServer, outage: str
) -> None:
    jwt_settings = settings(cache_ttl_sec=0.1, kid_cooldown_sec=0.1)
    auth = authenticator_for(jwks, jwt_settings)
    assert auth.cache is not None
    try:
        assert await auth.authenticate(bearer(rs256(claims())), "")
        if outage == "closed":
            jwks.stop()
        else:
            jwks.mode = "500"
        for _ in range(3):
            await asyncio.sleep(0.12)  # past TTL and cooldown: a refresh is attempted
            assert (await auth.authenticate(bearer(rs256(claims())), "")).user_id == "user-42"
            assert (await auth.authenticate(bearer(es256(claims())), "")).user_id == "user-42"
            await auth.cache.wait_idle()
        assert auth.cache.failures == 3
    finally:
        await auth.aclose()


async def test_endpoint_down_from_the_start_refuses_with_a_clear_reason(jwks: JwksServer) -> None:
    jwks.stop()
    auth = authenticator_for(jwks)
    try:
        assert await refused(auth, rs256(claims())) == "signing keys are not available yet"
    finally:
        await auth.aclose()


async def test_without_a_key_set_asymmetric_tokens_are_refused() -> None:
    auth = JwtAuthenticator(settings(), None, DevBypassAuthenticator(False))
    assert await refused(auth, rs256(claims())) == "no key set is configured for this algorithm"


async def test_cache_from_settings_uses_the_configured_algorithms(jwks: JwksServer) -> None:
    cache = settings(algorithms=("ES256", "HS256"), secret=HMAC_SECRET.encode()).jwks_cache(
        HttpJwksSource(jwks.url)
    )
    assert isinstance(cache, JwksCache)
    assert cache.algorithms == {"ES256"}
    await cache.aclose()


# --- the cache of verified tokens -----------------------------------------------------------


async def test_a_repeated_token_is_verified_once(auth: JwtAuthenticator) -> None:
    rs_token, es_token = rs256(claims()), es256(claims(sub="user-43"))
    first = await auth.authenticate(bearer(rs_token), "")
    assert await auth.authenticate(bearer(rs_token), "") == first
    assert auth.signature_checks == 1
    assert (await auth.authenticate(bearer(rs256(claims(sub="user-44"))), "")).user_id == "user-44"
    assert auth.signature_checks == 2
    for _ in range(3):
        assert (await auth.authenticate(bearer(es_token), "")).user_id == "user-43"
    assert auth.signature_checks == 3


async def test_refused_tokens_are_not_cached(auth: JwtAuthenticator) -> None:
    token = rs256(claims(aud="someone-else"))
    for _ in range(2):
        assert await refused(auth, token) == "token audience is not accepted"
    assert auth.signature_checks == 2


async def test_a_cached_token_expires_on_time(jwks: JwksServer) -> None:
    now = time.time()
    clock = [now]
    auth = authenticator_for(jwks, clock=lambda: clock[0])
    token = rs256(claims(exp=int(now) + 300))
    try:
        assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
        clock[0] = int(now) + 300 + 30 - 1  # past exp, within the 30 s leeway
        assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
        assert auth.signature_checks == 1
        clock[0] = int(now) + 300 + 30 + 1
        assert await refused(auth, token) == "token has expired"
        clock[0] = now  # the entry was dropped: back in time, the token is verified again
        assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
        assert auth.signature_checks == 2
    finally:
        await auth.aclose()


async def test_a_cached_token_is_refused_once_its_key_leaves_the_jwks(jwks: JwksServer) -> None:
    auth = authenticator_for(jwks)
    assert auth.cache is not None
    token = rs256(claims())
    try:
        assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
        jwks.keys = [key for key in jwks.keys if key["kid"] != "rsa-1"]
        assert await auth.cache.preload()
        assert await refused(auth, token) == "token signing key is not known"
        assert auth.signature_checks == 1
    finally:
        await auth.aclose()


async def test_a_cached_token_is_verified_again_after_a_key_refresh(jwks: JwksServer) -> None:
    auth = authenticator_for(jwks)
    assert auth.cache is not None
    token = rs256(claims())
    try:
        assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
        assert await auth.cache.preload()  # same keys, new key objects
        for _ in range(2):
            assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
        assert auth.signature_checks == 2
        # The kid now names another key: the token signed with the old one no longer holds.
        jwks.keys = [jwk_of(sample_keys().rsa2, "rsa-1", alg="RS256"), *jwks.keys[1:]]
        assert await auth.cache.preload()
        assert await refused(auth, token) == "token signature is invalid"
        assert auth.signature_checks == 3
    finally:
        await auth.aclose()


async def test_a_tampered_payload_with_a_cached_signature_is_refused(
    auth: JwtAuthenticator,
) -> None:
    token = rs256(claims())
    assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
    header, _, signature = token.split(".")
    tampered = b64(json.dumps(claims(sub="admin", roles=["admin"])).encode())
    assert await refused(auth, f"{header}.{tampered}.{signature}") == "token signature is invalid"
    assert auth.signature_checks == 2


async def test_hs256_tokens_are_cached_and_the_oldest_is_evicted(jwks: JwksServer) -> None:
    jwt_settings = settings(
        algorithms=("RS256", "HS256"), secret=HMAC_SECRET.encode(), verified_cache_size=1
    )
    auth = authenticator_for(jwks, jwt_settings)
    first = jwt.encode(claims(sub="first"), HMAC_SECRET, "HS256")
    second = jwt.encode(claims(sub="second"), HMAC_SECRET, "HS256")
    try:
        for _ in range(2):
            assert (await auth.authenticate(bearer(first), "")).user_id == "first"
        assert auth.signature_checks == 1
        assert (await auth.authenticate(bearer(second), "")).user_id == "second"
        assert (await auth.authenticate(bearer(first), "")).user_id == "first"
        assert auth.signature_checks == 3
    finally:
        await auth.aclose()


async def test_a_cache_size_of_zero_verifies_every_time(jwks: JwksServer) -> None:
    auth = authenticator_for(jwks, settings(verified_cache_size=0))
    token = rs256(claims())
    try:
        for _ in range(3):
            assert (await auth.authenticate(bearer(token), "")).user_id == "user-42"
        assert auth.signature_checks == 3
    finally:
        await auth.aclose()


# --- configuration --------------------------------------------------------------------------


def test_settings_defaults() -> None:
    jwt_settings = JwtSettings.from_env({})
    assert jwt_settings == JwtSettings()
    assert jwt_settings.algorithms == ("RS256", "ES256")
    assert (jwt_settings.cache_ttl_sec, jwt_settings.leeway_sec) == (600.0, 30.0)
    assert jwt_settings.kid_cooldown_sec == 30.0
    assert jwt_settings.verified_cache_size == 65_536
    assert settings().jwks_cache() is None


@pytest.mark.parametrize(
    ("raw", "seconds"), [("600", 600), ("600s", 600), ("10m", 600), ("1h30m", 5400), ("90.5", 90.5)]
)
def test_cache_ttl_accepts_seconds_and_durations(raw: str, seconds: float) -> None:
    assert JwtSettings.from_env({"JWT_CACHE_TTL": raw}).cache_ttl_sec == seconds


def test_settings_from_env_reads_every_variable() -> None:
    jwt_settings = JwtSettings.from_env(
        {
            "SERVER_ENVIRONMENT": "production",
            "JWT_JWKS_ENDPOINT": "https://id.example.test/.well-known/jwks.json",
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": "ticketgate, ticketgate-admin",
            "JWT_CACHE_TTL": "5m",
            "JWT_ALGORITHMS": "rs256, ES256, HS256",
            "JWT_SECRET": HMAC_SECRET,
            "JWT_LEEWAY_SEC": "10",
            "JWT_KID_COOLDOWN_SEC": "60",
            "JWT_VERIFIED_CACHE_SIZE": "1000",
        }
    )
    assert jwt_settings.audience == ("ticketgate", "ticketgate-admin")
    assert jwt_settings.algorithms == ("RS256", "ES256", "HS256")
    assert (jwt_settings.cache_ttl_sec, jwt_settings.leeway_sec) == (300.0, 10.0)
    assert jwt_settings.kid_cooldown_sec == 60.0
    assert jwt_settings.verified_cache_size == 1000
    assert JwtSettings.from_env({"JWT_VERIFIED_CACHE_SIZE": "0"}).verified_cache_size == 0
    assert HMAC_SECRET not in repr(jwt_settings)
    assert isinstance(jwt_settings.jwks_cache(), JwksCache)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"JWT_ALGORITHMS": "RS256,none"}, "must not contain 'none'"),
        ({"JWT_ALGORITHMS": "HS256"}, "HS256, which needs JWT_SECRET"),
        ({"JWT_ALGORITHMS": "RS1024"}, "unknown algorithm"),
        ({"JWT_ALGORITHMS": "HS512", "JWT_SECRET": HMAC_SECRET}, "at least 64 bytes for HS512"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET must be at least 32"),
        ({"JWT_CACHE_TTL": "ten minutes"}, "JWT_CACHE_TTL must be seconds or a duration"),
        ({"JWT_CACHE_TTL": "0"}, "JWT_CACHE_TTL must be between"),
        ({"JWT_LEEWAY_SEC": "-1"}, "JWT_LEEWAY_SEC must be between"),
        ({"JWT_KID_COOLDOWN_SEC": "x"}, "JWT_KID_COOLDOWN_SEC must be a number"),
        ({"JWT_JWKS_ENDPOINT": "ftp://keys"}, "JWT_JWKS_ENDPOINT must be an http"),
        ({"JWT_VERIFIED_CACHE_SIZE": "lots"}, "JWT_VERIFIED_CACHE_SIZE must be an integer"),
        ({"JWT_VERIFIED_CACHE_SIZE": "-1"}, "JWT_VERIFIED_CACHE_SIZE must be between 0 and"),
        ({"JWT_VERIFIED_CACHE_SIZE": "1000001"}, "JWT_VERIFIED_CACHE_SIZE must be between"),
        ({"JWT_JWKS_ENDPOINT": "https://id.example.test/jwks"}, "JWT_ISSUER and JWT_AUDIENCE"),
    ],
)
def test_invalid_settings_fail_with_a_one_line_reason(env: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        JwtSettings.from_env(env)
    assert "\n" not in str(caught.value)


def test_endpoint_without_issuer_and_audience_is_allowed_in_development() -> None:
    env = {"SERVER_ENVIRONMENT": "development", "JWT_JWKS_ENDPOINT": "http://127.0.0.1:1/jwks"}
    assert JwtSettings.from_env(env).jwks_endpoint == "http://127.0.0.1:1/jwks"


# --- end to end through the gateway ---------------------------------------------------------


@pytest.fixture
async def gateway(jwks: JwksServer) -> AsyncIterator[Gateway]:
    queue_settings = QueueSettings(token_secret=TEST_SECRET)
    store = MemoryQueueStore(queue_settings)
    auth = authenticator_for(jwks)
    yield Gateway(
        QueueRoutes(WaitingRoom(store, queue_settings)).routes(), auth, max_body_bytes=16_384
    )
    await auth.aclose()
    await store.close()


async def test_enter_with_a_valid_jwt_gets_past_auth(gateway: Gateway) -> None:
    headers = {"authorization": bearer(rs256(claims()))}
    async with serve(gateway) as client:
        joined = await client.post(
            "/api/v1/queue/join", json={"event_id": "evt_jwt"}, headers=headers
        )
        assert joined.status_code == 202
        token = joined.json()["waiting_token"]
        entered = await client.post(
            "/api/v1/queue/enter", json={"waiting_token": token}, headers=headers
        )
    assert entered.status_code == 200, entered.text
    assert entered.json()["admission"] == "granted"


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 401, "MISSING_AUTHORIZATION"),
        ("Bearer not-a-jwt", 401, "INVALID_TOKEN_FORMAT"),
        ("expired", 401, "INVALID_TOKEN"),
        ("alg-none", 401, "INVALID_TOKEN"),
        ("wrong-audience", 401, "INVALID_TOKEN"),
        (f"Bearer {DEV_SUPER_TOKEN}", 401, "INVALID_TOKEN"),
    ],
)
async def test_enter_without_a_valid_jwt_gets_401_with_a_challenge(
    gateway: Gateway, authorization: str | None, status: int, code: str
) -> None:
    tokens = {
        "expired": rs256(claims(exp=int(time.time()) - 3600)),
        "alg-none": unsigned(claims()),
        "wrong-audience": es256(claims(aud="other-app")),
    }
    if authorization in tokens:
        authorization = bearer(tokens[authorization])
    headers = {"authorization": authorization} if authorization else {}
    async with serve(gateway) as client:
        response = await client.post(
            "/api/v1/queue/enter", json={"waiting_token": "whatever"}, headers=headers
        )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["trace_id"]
    assert response.headers["www-authenticate"].startswith('Bearer realm="ticketgate"')
    if authorization and code == "INVALID_TOKEN":
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert authorization.split()[-1][:20] not in response.text
