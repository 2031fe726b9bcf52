"""The fully wired production app: accounts → JWT (own JWKS) → queue, with rate limiting and
idempotency in front, on a real Redis and a real SQLite file, over real sockets."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.envs import app_env
from tests.http_server import serve
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Route
from ticketgate.http.core import Gateway
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator

SECRET = "app-test-secret-app-test-secret-0123456789"
JOIN, STATUS, ENTER = "/api/v1/queue/join", "/api/v1/queue/status", "/api/v1/queue/enter"


def production_env(redis_address: str, database: Path, **overrides: str) -> dict[str, str]:
    return app_env(
        SERVER_ENVIRONMENT="production",
        QUEUE_TOKEN_SECRET=SECRET,
        REDIS_ADDRESS=redis_address,
        DATABASE_PATH=str(database),
        **{"QUEUE_AUTO_CREATE_EVENTS": "true", **overrides},  # these tests join made-up events
    )


@pytest.fixture
async def app_client(redis_address: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(production_env(redis_address, tmp_path / "app.db"))
    async with serve(create_app(settings)) as client:
        yield client


async def sign_up(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    registered = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": "correct horse 42"}
    )
    assert registered.status_code == 201, registered.text
    login = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": "correct horse 42"}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_a_registered_user_joins_and_enters_with_its_own_jwt(
    app_client: httpx.AsyncClient, event_id: str
) -> None:
    alice = await sign_up(app_client, "alice")
    joined = await app_client.post(JOIN, json={"event_id": event_id}, headers=alice)
    assert joined.status_code == 202, joined.text
    token = joined.json()["waiting_token"]

    again = await app_client.post(JOIN, json={"event_id": event_id}, headers=alice)
    assert again.status_code == 409
    assert again.json()["waiting_token"] == token

    status = await app_client.get(STATUS, params={"token": token})
    assert status.json()["status"] == "ready"

    anonymous = await app_client.post(ENTER, json={"waiting_token": token})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "MISSING_AUTHORIZATION"
    bypass = await app_client.post(
        ENTER,
        json={"waiting_token": token},
        headers={"Authorization": "Bearer dev-super-key-local-testing"},
    )
    assert bypass.status_code == 401
    assert bypass.json()["error"]["code"] == "INVALID_TOKEN"

    bob = await sign_up(app_client, "bob")
    stolen = await app_client.post(ENTER, json={"waiting_token": token}, headers=bob)
    assert stolen.status_code == 403

    entered = await app_client.post(ENTER, json={"waiting_token": token}, headers=alice)
    assert entered.status_code == 200, entered.text
    assert entered.json()["admission"] == "granted"


async def test_the_gateways_tokens_verify_against_its_published_jwks(
    app_client: httpx.AsyncClient,
) -> None:
    headers = await sign_up(app_client, "carol")
    token = headers["Authorization"].removeprefix("Bearer ")
    jwks = (await app_client.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="ticketgate")
    assert claims["iss"] == "ticketgate"
    assert claims["sub"].startswith("usr_")


async def test_a_retried_enter_with_the_same_key_is_replayed_not_rerun(
    app_client: httpx.AsyncClient, event_id: str
) -> None:
    dave = await sign_up(app_client, "dave")
    token = (await app_client.post(JOIN, json={"event_id": event_id}, headers=dave)).json()[
        "waiting_token"
    ]
    keyed = {**dave, "Idempotency-Key": "enter-attempt-1"}
    first = await app_client.post(ENTER, json={"waiting_token": token}, headers=keyed)
    assert first.status_code == 200, first.text
    replay = await app_client.post(ENTER, json={"waiting_token": token}, headers=keyed)
    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert replay.headers["x-idempotency-cached"] == "true"
    fresh = await app_client.post(ENTER, json={"waiting_token": token}, headers=dave)
    assert fresh.status_code == 409
    assert fresh.json()["error"]["code"] == "DUPLICATE_REQUEST"


async def test_the_wired_app_limits_each_client_and_spares_health_checks(
    redis_address: str, tmp_path: Path, event_id: str
) -> None:
    env = production_env(
        redis_address,
        tmp_path / "rl.db",
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_RPS="1",
        RATE_LIMIT_BURST="3",
    )
    async with serve(create_app(load_settings(env))) as client:
        joined = await client.post(JOIN, json={"event_id": event_id})
        assert joined.headers["ratelimit"] == '"default";r=2;t=1'
        token = joined.json()["waiting_token"]
        answers = [await client.get(STATUS, params={"token": token}) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[-1].headers["ratelimit-policy"] == '"default";q=3;w=3'
        assert answers[-1].headers["ratelimit"].startswith('"default";r=0;')
        limited = await client.get(STATUS, params={"token": token})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
        assert int(limited.headers["retry-after"]) >= 1
        assert "ratelimit-policy" in limited.headers
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_admin_routes_need_the_admin_role() -> None:
    async def secret(request: Request) -> Response:
        return Response.json(200, {"user": request.user_id})

    gateway = Gateway(
        [Route("GET", "/admin-only", secret, AuthPolicy.ADMIN)],
        DevBypassAuthenticator(True),
        max_body_bytes=1024,
    )
    async with serve(gateway) as client:
        anonymous = await client.get("/admin-only")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "MISSING_AUTHORIZATION"
        plain = await client.get(
            "/admin-only", headers={"Authorization": "Bearer load-test-bypass-token-7"}
        )
        assert plain.status_code == 403
        assert plain.json()["error"]["code"] == "FORBIDDEN"
        admin = await client.get(
            "/admin-only", headers={"Authorization": "Bearer dev-super-key-local-testing"}
        )
        assert admin.status_code == 200


async def test_the_cli_creates_an_admin_whose_token_carries_the_role(
    redis_address: str, tmp_path: Path
) -> None:
    env = production_env(redis_address, tmp_path / "cli.db")
    created = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "ticketgate.cli",
            "admin",
            "create-user",
            "--username",
            "ops",
            "--role",
            "admin",
            "--role",
            "user",
            "--password-stdin",
            "--create-database",  # a fresh file: the gateway below opens it afterwards
        ],
        input="an operator passphrase\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    async with serve(create_app(load_settings(env))) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"username": "ops", "password": "an operator passphrase"}
        )
        assert login.status_code == 200, login.text
        claims = jwt.decode(login.json()["access_token"], options={"verify_signature": False})
        assert set(claims["roles"]) == {"admin", "user"}
