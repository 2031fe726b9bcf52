"""Authentication failures and logins under the rate limiter (issue 10, item 6).

Auth used to run before the guard and a failure returned before the guard ever saw the
request: 300 bad tokens from one address, no 429. Now a failure is charged to the client
IP's budget, and login/register draw from their own, lower per-IP budget."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.http_server import serve
from tests.integration.conftest import DEV, ENTER, JOIN, assert_envelope, dev_env
from ticketgate.app import create_app
from ticketgate.config import load_settings

BAD = {"Authorization": "Bearer not-a-jwt"}
FORGED = {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}


@pytest.fixture
async def limited() -> AsyncIterator[httpx.AsyncClient]:
    env = dev_env(
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_RPS="0.1",
        RATE_LIMIT_BURST="5",
        RATE_LIMIT_AUTH_RPS="0.1",
        RATE_LIMIT_AUTH_BURST="3",
        RATE_LIMIT_TRUSTED_PROXIES="127.0.0.1",
    )
    async with serve(create_app(load_settings(env))) as client:
        yield client


def _from(ip: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **(headers or {})}


async def test_bad_tokens_from_one_ip_are_rate_limited(limited: httpx.AsyncClient) -> None:
    statuses = []
    for _ in range(12):
        response = await limited.post(
            ENTER, json={"waiting_token": "x"}, headers=_from("203.0.113.7", BAD)
        )
        statuses.append(response.status_code)
    assert statuses[:5] == [401] * 5, statuses
    assert set(statuses[5:]) == {429}, statuses
    refused = await limited.post(
        ENTER, json={"waiting_token": "x"}, headers=_from("203.0.113.7", FORGED)
    )
    assert_envelope(refused, 429, "RATE_LIMITED")
    assert int(refused.headers["retry-after"]) >= 1


async def test_a_401_carries_the_budget_it_drew_from(limited: httpx.AsyncClient) -> None:
    response = await limited.post(ENTER, json={}, headers=_from("203.0.113.8", BAD))
    assert_envelope(response, 401, "INVALID_TOKEN_FORMAT")
    assert response.headers["ratelimit"] == '"default";r=4;t=10'
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_missing_credentials_and_bad_tokens_on_optional_routes_count_too(
    limited: httpx.AsyncClient,
) -> None:
    ip = "203.0.113.9"
    answers = [
        (await limited.post(ENTER, json={}, headers=_from(ip))).status_code for _ in range(3)
    ]
    answers += [
        (await limited.post(JOIN, json={"event_id": "evt_rl"}, headers=_from(ip, BAD))).status_code
        for _ in range(3)
    ]
    assert answers == [401, 401, 401, 401, 401, 429], answers


async def test_another_ip_and_a_valid_token_are_not_punished(limited: httpx.AsyncClient) -> None:
    for _ in range(6):
        await limited.post(ENTER, json={}, headers=_from("203.0.113.10", BAD))
    other = await limited.post(ENTER, json={}, headers=_from("203.0.113.11", BAD))
    assert other.status_code == 401
    # A signed-in user behind the punished address draws from its own budget.
    joined = await limited.post(
        JOIN, json={"event_id": f"evt_{uuid.uuid4().hex[:8]}"}, headers=_from("203.0.113.10", DEV)
    )
    assert joined.status_code == 202, joined.text


async def test_login_and_register_have_their_own_lower_budget(
    limited: httpx.AsyncClient,
) -> None:
    ip = "198.51.100.4"
    credentials = {"username": f"rl{uuid.uuid4().hex[:10]}", "password": "correct horse 42 x"}
    first = await limited.post("/api/v1/auth/register", json=credentials, headers=_from(ip))
    assert first.status_code == 201, first.text
    assert first.headers["ratelimit-policy"] == '"auth";q=3;w=30'
    logins = [
        await limited.post("/api/v1/auth/login", json=credentials, headers=_from(ip))
        for _ in range(3)
    ]
    assert [r.status_code for r in logins] == [200, 200, 429]
    assert_envelope(logins[-1], 429, "RATE_LIMITED")
    assert logins[-1].headers["ratelimit-policy"] == '"auth";q=3;w=30'
    # The default budget of that address is untouched, and another address may log in.
    joined = await limited.post(JOIN, json={"event_id": "evt_rl_login"}, headers=_from(ip))
    assert joined.status_code == 202, joined.text
    other = await limited.post(
        "/api/v1/auth/login", json=credentials, headers=_from("198.51.100.5")
    )
    assert other.status_code == 200, other.text


def test_the_auth_budget_settings_are_validated() -> None:
    from ticketgate.envparse import ConfigError

    with pytest.raises(ConfigError, match="RATE_LIMIT_AUTH_RPS"):
        load_settings(dev_env(RATE_LIMIT_AUTH_RPS="0"))
    with pytest.raises(ConfigError, match="RATE_LIMIT_AUTH_BURST"):
        load_settings(dev_env(RATE_LIMIT_AUTH_BURST="x"))
    settings = load_settings(dev_env())
    assert (settings.rate_limit.auth_rps, settings.rate_limit.auth_burst) == (0.5, 10)
