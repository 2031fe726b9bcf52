"""Join's Idempotency-Key (issue 10, item 3), on both stores.

Anonymous joins shared one key scope: a second anonymous client sending the same key got the
first one's waiting token (and could leave or enter with it). Keys are now scoped per client
(the IP, after trusted proxies) or per user; a replay says so with X-Idempotency-Cached; the
same key with another body is 409 IDEMPOTENCY_CONFLICT, as the README promises."""

from __future__ import annotations

import httpx

from tests.integration.conftest import JOIN, LEAVE, GatewayFactory, as_user, assert_envelope

PROXIED = {"RATE_LIMIT_TRUSTED_PROXIES": "127.0.0.1"}


def _client(ip: str, key: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip, "Idempotency-Key": key}


async def test_two_anonymous_clients_with_one_key_get_their_own_tokens(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(**PROXIED) as client:
        alice = await client.post(
            JOIN, json={"event_id": event_id}, headers=_client("203.0.113.1", "same")
        )
        mallory = await client.post(
            JOIN, json={"event_id": event_id}, headers=_client("203.0.113.2", "same")
        )
        assert (alice.status_code, mallory.status_code) == (202, 202), mallory.text
        assert mallory.json()["waiting_token"] != alice.json()["waiting_token"]
        assert mallory.json()["position_hint"] == 2
        assert "x-idempotency-cached" not in mallory.headers
        # Mallory cannot remove Alice from the queue: she never learnt her token.
        left = await client.delete(LEAVE, params={"token": mallory.json()["waiting_token"]})
        assert left.status_code == 200
        replay = await client.post(
            JOIN, json={"event_id": event_id}, headers=_client("203.0.113.1", "same")
        )
        assert replay.json()["waiting_token"] == alice.json()["waiting_token"]


async def test_a_replayed_join_says_it_is_cached(client: httpx.AsyncClient, event_id: str) -> None:
    key = {"Idempotency-Key": "join-replay-1"}
    first = await client.post(JOIN, json={"event_id": event_id}, headers=key)
    replay = await client.post(JOIN, json={"event_id": event_id}, headers=key)
    assert (first.status_code, replay.status_code) == (202, 202)
    assert "x-idempotency-cached" not in first.headers
    assert replay.headers["x-idempotency-cached"] == "true"
    assert replay.json() == first.json()


async def test_the_same_key_with_another_body_is_a_conflict(
    client: httpx.AsyncClient, event_id: str
) -> None:
    key = {"Idempotency-Key": "join-conflict-1"}
    first = await client.post(JOIN, json={"event_id": event_id}, headers=key)
    assert first.status_code == 202
    other = await client.post(JOIN, json={"event_id": f"{event_id}_b"}, headers=key)
    assert_envelope(other, 409, "IDEMPOTENCY_CONFLICT")


async def test_signed_in_users_have_their_own_scope(
    client: httpx.AsyncClient, event_id: str
) -> None:
    key = {"Idempotency-Key": "shared-by-two-users"}
    one = await client.post(JOIN, json={"event_id": event_id}, headers={**as_user(1), **key})
    two = await client.post(JOIN, json={"event_id": event_id}, headers={**as_user(2), **key})
    assert (one.status_code, two.status_code) == (202, 202), two.text
    assert one.json()["waiting_token"] != two.json()["waiting_token"]
    anonymous = await client.post(JOIN, json={"event_id": event_id}, headers=key)
    assert anonymous.status_code == 202
    assert anonymous.json()["waiting_token"] not in {
        one.json()["waiting_token"],
        two.json()["waiting_token"],
    }
