"""Attack probes of issue 10 on the HTTP edge: items 3, 6 and 13, the JWT attack set, forged
waiting tokens, oversized and slow bodies.

Each probe replays what an attacker sent against the old code and checks the answer the
gateway must give now, over real sockets, against a production-mode gateway (no bypass
tokens) on a real redis-server, with the rate limiter on behind a trusted proxy so each
probe can speak from its own client address. Every probe also asserts a control request
that must succeed, so a gateway refusing everything cannot pass.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.envs import app_env
from tests.http_server import serve
from tests.integration.conftest import ENTER, JOIN, LEAVE, STATUS, assert_envelope
from ticketgate.app import create_app
from ticketgate.config import load_settings

SECRET = "probe-edge-secret-probe-edge-secret!"
BURST = 6
AUTH_BURST = 4
_ips = iter(f"198.18.{a}.{b}" for a in range(256) for b in range(1, 255))


def fresh_ip() -> str:
    """A client address of its own (the gateway trusts 127.0.0.1 as its proxy)."""
    return next(_ips)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def production_env(redis_address: str) -> dict[str, str]:
    return app_env(
        SERVER_ENVIRONMENT="production",
        QUEUE_TOKEN_SECRET=SECRET,
        REDIS_ADDRESS=redis_address,
        BACKEND_EMBEDDED="true",
        QUEUE_AUTO_CREATE_EVENTS="true",
        AUTH_SIGNING_KEY=_pem(SIGNING_KEY),
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_RPS="0.1",
        RATE_LIMIT_BURST=str(BURST),
        RATE_LIMIT_AUTH_RPS="0.1",
        RATE_LIMIT_AUTH_BURST=str(AUTH_BURST),
        RATE_LIMIT_TRUSTED_PROXIES="127.0.0.1",
        SERVER_BODY_TIMEOUT_SEC="0.5",
        SERVER_MAX_BODY_BYTES="1024",
        QUEUE_SWEEP_INTERVAL_MS="600000",
    )


@pytest.fixture
async def gateway(production_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(load_settings(production_env))) as client:
        yield client


def ip(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


async def signed_in(client: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    """A real account's access token (from its own address) and its claims."""
    credentials = {"username": f"probe{uuid.uuid4().hex[:10]}", "password": "probe horse 4 edge"}
    who = ip(fresh_ip())
    created = await client.post("/api/v1/auth/register", json=credentials, headers=who)
    assert created.status_code == 201, created.text
    login = await client.post("/api/v1/auth/login", json=credentials, headers=who)
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token, jwt.decode(token, options={"verify_signature": False})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def kid_of(client: httpx.AsyncClient) -> str:
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert len(keys) == 1
    kid: str = keys[0]["kid"]
    return kid


# --------------------------------------------------------------------------- JWT attack set


async def test_the_jwt_attack_set_is_refused_and_a_real_token_accepted(
    gateway: httpx.AsyncClient,
) -> None:
    token, claims = await signed_in(gateway)
    kid = await kid_of(gateway)
    now = int(time.time())
    public_pem = SIGNING_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def rs256(body: dict[str, Any], key: rsa.RSAPrivateKey = SIGNING_KEY, k: str = kid) -> str:
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": k})

    header_none = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    head, _, signature = token.split(".")
    tampered_claims = {**claims, "sub": "usr_someone_else", "roles": ["admin", "user"]}
    # HS256 keyed with the public key: accepted by a verifier that lets the token pick its alg.
    confused_head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    confused_mac = hmac.new(
        public_pem, f"{confused_head}.{payload}".encode(), hashlib.sha256
    ).digest()
    attacks = {
        "alg none": f"{header_none}.{payload}.",
        "alg confusion HS256/RS256": f"{confused_head}.{payload}.{_b64(confused_mac)}",
        "expired": rs256({**claims, "exp": now - 3600, "iat": now - 7200}),
        "wrong issuer": rs256({**claims, "iss": "https://evil.example"}),
        "wrong audience": rs256({**claims, "aud": "someone-else"}),
        "unknown kid": rs256(claims, OTHER_KEY, "kid-nobody-published"),
        "right kid, wrong key": rs256(claims, OTHER_KEY),
        "tampered payload": f"{head}.{_b64(json.dumps(tampered_claims).encode())}.{signature}",
        "no exp": rs256({k: v for k, v in claims.items() if k != "exp"}),
        "garbage": "eyJ.not.a.jwt",
    }
    for name, forged in attacks.items():
        response = await gateway.post(
            ENTER,
            json={"waiting_token": "wt1.x.y"},
            headers=ip(fresh_ip(), Authorization=f"Bearer {forged}"),
        )
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"]["code"] in {"INVALID_TOKEN", "INVALID_TOKEN_FORMAT"}, name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        admin = await gateway.get(
            "/api/v1/admin/events", headers=ip(fresh_ip(), Authorization=f"Bearer {forged}")
        )
        assert admin.status_code == 401, (name, admin.text)
    # Control: the real token passes authentication (the forged waiting token is then 404).
    real = await gateway.post(
        ENTER,
        json={"waiting_token": "wt1.x.y"},
        headers=ip(fresh_ip(), Authorization=f"Bearer {token}"),
    )
    assert_envelope(real, 404, "TOKEN_NOT_FOUND")


# --------------------------------------------------------------------------- forged tokens


async def test_forged_waiting_tokens_never_reach_a_waiter(gateway: httpx.AsyncClient) -> None:
    event = f"evt_probe_{uuid.uuid4().hex[:6]}"
    joined = await gateway.post(JOIN, json={"event_id": event}, headers=ip(fresh_ip()))
    assert joined.status_code == 202, joined.text
    real = joined.json()["waiting_token"]
    prefix, body, mac = real.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    forged = [
        "wt1.AAAA.BBBB",
        f"{prefix}.{flipped}.{mac}",  # another sequence number under the same MAC
        f"{prefix}.{body}.{mac[:-2]}xx",  # a MAC one character off
        f"{prefix}.{body}",
        real + ".extra",
        "x" * 600,
    ]
    for token in forged:
        status = await gateway.get(STATUS, params={"token": token}, headers=ip(fresh_ip()))
        assert status.status_code in {400, 404}, (token, status.text)
        left = await gateway.delete(LEAVE, params={"token": token}, headers=ip(fresh_ip()))
        assert left.status_code in {400, 404}, (token, left.text)
    # Control: the real waiter is still there, at the front.
    mine = await gateway.get(STATUS, params={"token": real}, headers=ip(fresh_ip()))
    assert mine.status_code == 200
    assert mine.json()["position"] == 1


# --------------------------------------------------------------------------- item 3


async def test_an_anonymous_idempotency_key_does_not_leak_another_clients_token(
    gateway: httpx.AsyncClient,
) -> None:
    event = f"evt_probe_{uuid.uuid4().hex[:6]}"
    key = "guessable-key-1"
    victim = await gateway.post(
        JOIN, json={"event_id": event}, headers=ip(fresh_ip(), **{"Idempotency-Key": key})
    )
    attacker = await gateway.post(
        JOIN, json={"event_id": event}, headers=ip(fresh_ip(), **{"Idempotency-Key": key})
    )
    assert (victim.status_code, attacker.status_code) == (202, 202)
    assert attacker.json()["waiting_token"] != victim.json()["waiting_token"]
    assert "x-idempotency-cached" not in attacker.headers
    conflict = await gateway.post(
        JOIN,
        json={"event_id": event + "_other"},
        headers=ip("198.19.0.1", **{"Idempotency-Key": "k2"}),
    )
    assert conflict.status_code == 202
    again = await gateway.post(
        JOIN,
        json={"event_id": event},
        headers=ip("198.19.0.1", **{"Idempotency-Key": "k2"}),
    )
    assert_envelope(again, 409, "IDEMPOTENCY_CONFLICT")


# --------------------------------------------------------------------------- item 6


async def test_guessing_tokens_from_one_address_ends_in_429(gateway: httpx.AsyncClient) -> None:
    attacker = fresh_ip()
    statuses = [
        (
            await gateway.post(
                ENTER,
                json={"waiting_token": "wt1.x.y"},
                headers=ip(attacker, Authorization=f"Bearer forged.{n}.token"),
            )
        ).status_code
        for n in range(BURST + 10)
    ]
    assert statuses[:BURST] == [401] * BURST, statuses
    assert set(statuses[BURST:]) == {429}, statuses
    # Another address is not punished for it.
    other = await gateway.post(
        ENTER, json={"waiting_token": "wt1.x.y"}, headers=ip(fresh_ip(), Authorization="Bearer x")
    )
    assert other.status_code == 401


async def test_login_attempts_have_a_lower_budget_per_address(
    gateway: httpx.AsyncClient,
) -> None:
    attacker = fresh_ip()
    guesses = [
        (
            await gateway.post(
                "/api/v1/auth/login",
                json={"username": "admin", "password": f"guess-{n}-password"},
                headers=ip(attacker),
            )
        ).status_code
        for n in range(AUTH_BURST + 3)
    ]
    assert guesses[:AUTH_BURST] == [401] * AUTH_BURST, guesses
    assert set(guesses[AUTH_BURST:]) == {429}, guesses
    # The address's ordinary budget is untouched: it may still join.
    joined = await gateway.post(JOIN, json={"event_id": "evt_probe_login"}, headers=ip(attacker))
    assert joined.status_code == 202, joined.text


# --------------------------------------------------------------------------- item 13


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"event_id": "evt_probe_ct"}'),
        ("application/x-www-form-urlencoded", b"event_id=evt_probe_ct"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="event_id"\r\n\r\nevt\r\n--b--',
        ),
    ],
)
async def test_a_cross_site_form_cannot_join(
    gateway: httpx.AsyncClient, content_type: str, body: bytes
) -> None:
    """The three content types a page may POST cross-site without a preflight."""
    response = await gateway.post(
        JOIN, content=body, headers=ip(fresh_ip(), **{"Content-Type": content_type})
    )
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_head_and_strict_numbers(gateway: httpx.AsyncClient) -> None:
    head = await gateway.head("/healthz")
    assert head.status_code == 200
    assert head.content == b""
    for limit in ("²", "٣", "1_0", "0x10"):
        response = await gateway.get(
            "/api/v1/admin/events", params={"limit": limit}, headers=ip(fresh_ip())
        )
        assert response.status_code == 401  # no admin token in production: never a 500
    # Content-Length in Arabic-Indic digits: int() would take it; the edge must not.
    port = httpx.URL(str(gateway.base_url)).port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        "POST /api/v1/queue/join HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"
        "Content-Length: \u0661\u0667\r\n\r\n".encode()
        + b'{"event_id": "e"}'
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    assert answer.split(b" ")[1] in {b"400", b"413"}, answer  # httptools may refuse it first


# --------------------------------------------------------------------------- bodies


async def test_an_oversized_body_is_413_declared_or_streamed(gateway: httpx.AsyncClient) -> None:
    big = json.dumps({"event_id": "e", "user_id": "u" * 2000}).encode()
    declared = await gateway.post(
        JOIN, content=big, headers=ip(fresh_ip(), **{"Content-Type": "application/json"})
    )
    assert_envelope(declared, 413, "PAYLOAD_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"event_id": "e", "user_id": "'
        for _ in range(20):
            yield b"u" * 100
        yield b'"}'

    streamed = await gateway.post(
        JOIN, content=chunks(), headers=ip(fresh_ip(), **{"Content-Type": "application/json"})
    )
    assert_envelope(streamed, 413, "PAYLOAD_TOO_LARGE")


async def test_a_slow_body_is_cut_off_with_408(gateway: httpx.AsyncClient) -> None:
    port = httpx.URL(str(gateway.base_url)).port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(
        b"POST /api/v1/queue/join HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"
        b'Content-Length: 200\r\nX-Forwarded-For: 198.19.9.9\r\n\r\n{"event_id"'
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < 3
    # A thousand such connections would be cut off the same way; the gateway still serves.
    control = await gateway.post(JOIN, json={"event_id": "evt_probe_slow"}, headers=ip(fresh_ip()))
    assert control.status_code == 202
