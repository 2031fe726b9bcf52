"""The background sweeper over HTTP: a waiter who stops polling stops holding anyone back."""

from __future__ import annotations

import httpx

from tests.integration.conftest import STATUS, GatewayFactory, as_user, eventually, join

FAST_SWEEP = {"QUEUE_HEARTBEAT_TTL_SEC": "0.5", "QUEUE_SWEEP_INTERVAL_MS": "100"}


async def position(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get(STATUS, params={"token": token})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] in {"ready", "waiting"}, body  # polling keeps this waiter alive
    value: int = body["position"]
    return value


async def test_a_waiter_who_stops_polling_is_swept_and_the_next_moves_up(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(**FAST_SWEEP) as client:
        ghost = await join(client, event_id, headers=as_user(1))
        polite = await join(client, event_id, headers=as_user(2))
        last = await join(client, event_id, headers=as_user(3))
        assert await position(client, polite) == 2

        async def moved_up() -> bool:
            # Only the two attentive waiters poll; nobody asks about the ghost, so only the
            # background sweeper can remove it.
            behind = await position(client, last)
            return await position(client, polite) == 1 and behind == 2

        took = await eventually(moved_up, within=5.0, step=0.1)
        assert took >= 0.4  # not before the heartbeat TTL ran out

        gone = await client.get(STATUS, params={"token": ghost})
        assert gone.json()["status"] == "expired"
        # Its user may join again and goes to the back.
        again = await client.post(
            "/api/v1/queue/join", json={"event_id": event_id}, headers=as_user(1)
        )
        assert again.status_code == 202
        assert again.json()["position_hint"] == 3


async def test_attentive_waiters_are_never_swept(gateway: GatewayFactory, event_id: str) -> None:
    async with gateway(**FAST_SWEEP) as client:
        tokens = [await join(client, event_id) for _ in range(3)]
        polls = 0

        async def polled_long_enough() -> bool:
            nonlocal polls
            positions = [await position(client, token) for token in tokens]
            assert positions == [1, 2, 3]
            polls += 1
            return polls >= 12  # ~1.2 s: more than two heartbeat TTLs

        await eventually(polled_long_enough, within=5.0, step=0.1)
