"""Accounts over real sockets: register, login, and tokens that verify with the served JWKS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.http_server import serve
from tests.unit.test_accounts_database import (
    BACKENDS,
    FAST_HASHING,
    DatabaseFactory,
    database_factory,
    shared_key_pem,
)
from ticketgate.accounts.keys import LocalJwksSource, TokenSigner
from ticketgate.accounts.service import AccountService
from ticketgate.http.accounts import AccountRoutes
from ticketgate.http.core import Gateway
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator

PASSWORD = "correct-horse-battery"


def build_gateway(
    factory: DatabaseFactory, *, generate_key: bool = True
) -> tuple[Gateway, AccountService]:
    """Wired the way app/ wires it: start-up creates tables and loads the key.

    `generate_key=False` configures a ready key instead, sparing tests that do not look at
    the key the 2048-bit generation.
    """
    database = factory.open()
    signer = TokenSigner(database, b"" if generate_key else shared_key_pem())
    service = AccountService(database, signer, FAST_HASHING)
    gateway = Gateway(
        AccountRoutes(service).routes(),
        DevBypassAuthenticator(False),
        max_body_bytes=16_384,
        on_startup=service.start,
        on_shutdown=database.dispose,
    )
    return gateway, service


@pytest.fixture(params=BACKENDS)
async def factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    async with database_factory(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
async def client(factory: DatabaseFactory) -> AsyncIterator[httpx.AsyncClient]:
    gateway, _ = build_gateway(factory, generate_key=False)
    async with serve(gateway) as http:
        yield http


@pytest.fixture
async def sqlite_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """For tests of request validation, which never reaches the database."""
    async with database_factory("sqlite", tmp_path) as opened:
        gateway, _ = build_gateway(opened, generate_key=False)
        async with serve(gateway) as http:
            yield http


def _error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "trace_id"}
    assert len(body["error"]["trace_id"]) == 32
    return body["error"]  # type: ignore[no-any-return]


async def _verify_with_served_jwks(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """What an external relying party does: fetch the JWKS over HTTP, pick the key by kid."""
    url = f"{http.base_url}/.well-known/jwks.json"
    jwks_client = jwt.PyJWKClient(url, cache_keys=False)
    # PyJWKClient is blocking (urllib); the server runs on this loop, so fetch from a thread.
    signing_key = await asyncio.to_thread(jwks_client.get_signing_key_from_jwt, token)
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience="ticketgate",
        issuer="ticketgate",
        options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud"]},
    )
    return claims


async def test_register_login_and_the_token_verifies_against_the_served_jwks(
    client: httpx.AsyncClient,
) -> None:
    registered = await client.post(
        "/api/v1/auth/register", json={"username": "alice", "password": PASSWORD}
    )
    assert registered.status_code == 201
    user = registered.json()
    assert set(user) == {"user_id", "username"}
    assert user["username"] == "alice"
    assert user["user_id"].startswith("usr_")

    login = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert login.status_code == 200
    assert login.headers["cache-control"] == "no-store"
    body = login.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600

    claims = await _verify_with_served_jwks(client, body["access_token"])
    assert claims["sub"] == user["user_id"]
    assert claims["roles"] == ["user"]


async def test_jwks_is_cacheable_public_and_matches_the_local_source(
    factory: DatabaseFactory,
) -> None:
    gateway, service = build_gateway(factory)
    async with serve(gateway) as http:
        response = await http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["content-type"] == "application/json"
    (key,) = response.json()["keys"]
    assert set(key) == {"kty", "use", "alg", "kid", "n", "e"}
    assert "d" not in key  # no private exponent
    assert response.content == await LocalJwksSource(service.signer).fetch()


async def test_duplicate_username_is_409_username_taken(client: httpx.AsyncClient) -> None:
    first = await client.post(
        "/api/v1/auth/register", json={"username": "bob", "password": PASSWORD}
    )
    assert first.status_code == 201
    again = await client.post(
        "/api/v1/auth/register", json={"username": "BOB", "password": "different-password"}
    )
    assert again.status_code == 409
    assert _error(again)["code"] == "USERNAME_TAKEN"


async def test_wrong_password_and_unknown_user_are_the_same_401(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/auth/register", json={"username": "carol", "password": PASSWORD})
    wrong = await client.post(
        "/api/v1/auth/login", json={"username": "carol", "password": "not-her-password"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"username": "mallory", "password": PASSWORD}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        error = _error(response)
        assert error["code"] == "INVALID_CREDENTIALS"
        assert error["message"] == "invalid username or password"
        assert "not-her-password" not in response.text


@pytest.mark.parametrize(
    ("path", "content", "field"),
    [
        ("register", b"", "JSON object"),
        ("register", b"{not json", "not valid JSON"),
        ("register", b'{"username": "dave"}', "password"),
        ("register", b'{"username": "dave", "password": 12345678}', "password"),
        ("register", b'{"username": "dave", "password": "secret-pw-1", "admin": true}', "admin"),
        ("register", b'{"username": "dave", "password": "short-1"}', "password"),
        ("register", b'{"username": "da ve", "password": "secret-pw-1"}', "username"),
        ("register", b'{"username": "dave\\n", "password": "secret-pw-1"}', "username"),
        ("register", b'["dave", "secret-pw-1"]', "object"),
        # NIST SP 800-63B (issue 10 item 15): each was accepted before.
        ("register", b'{"username": "dave", "password": "12345678"}', "too common"),
        ("register", b'{"username": "dave", "password": "password"}', "too common"),
        ("register", b'{"username": "dave", "password": "        "}', "repeated"),
        (
            "register",
            b'{"username": "dave", "password": "\\u0000\\u0000\\u0000\\u0000'
            b'\\u0000\\u0000\\u0000\\u0000"}',
            "control",
        ),
        ("login", b'{"username": "dave"}', "password"),
        ("login", b'{"username": "dave", "password": "secret-pw-1", "x": 1}', "x"),
        ("login", b'{"username": "", "password": "secret-pw-1"}', "username"),
    ],
)
async def test_bad_bodies_are_400_invalid_request_without_echoing_the_password(
    sqlite_client: httpx.AsyncClient, path: str, content: bytes, field: str
) -> None:
    response = await sqlite_client.post(
        f"/api/v1/auth/{path}", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "INVALID_REQUEST"
    assert field in error["message"]
    for secret in ("secret-pw-1", "short-1", "12345678"):
        assert secret not in response.text


async def test_a_token_from_one_gateway_is_accepted_by_another_on_the_same_database(
    factory: DatabaseFactory,
) -> None:
    """Two pods with a generated key: they converge on one key at start-up."""
    first, _ = build_gateway(factory)
    second, _ = build_gateway(factory)
    async with contextlib.AsyncExitStack() as stack:
        one = await stack.enter_async_context(serve(first))
        two = await stack.enter_async_context(serve(second))
        await one.post("/api/v1/auth/register", json={"username": "erin", "password": PASSWORD})
        login = await two.post(
            "/api/v1/auth/login", json={"username": "erin", "password": PASSWORD}
        )
        assert login.status_code == 200
        token = login.json()["access_token"]
        assert (await _verify_with_served_jwks(one, token))["sub"].startswith("usr_")
        assert (await one.get("/.well-known/jwks.json")).content == (
            await two.get("/.well-known/jwks.json")
        ).content


async def test_openapi_documents_the_account_schemas(factory: DatabaseFactory) -> None:
    from ticketgate.http.openapi import build_openapi

    gateway, _ = build_gateway(factory, generate_key=False)
    document = httpx.Response(200, content=build_openapi(gateway.routes)).json()
    register = document["paths"]["/api/v1/auth/register"]["post"]
    # 429: every rate-limited route may answer RATE_LIMITED from the interceptor in front.
    assert set(register["responses"]) == {"201", "400", "408", "409", "415", "429"}
    schema = document["components"]["schemas"]["RegisterRequest"]
    assert schema["properties"]["password"]["minLength"] == 8
    assert schema["properties"]["username"]["maxLength"] == 64
    assert "security" not in register
