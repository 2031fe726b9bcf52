"""The queue endpoints over a real socket, on both stores (README, API table)."""

from __future__ import annotations

import httpx

from tests.integration.conftest import (
    DEV,
    ENTER,
    JOIN,
    LEAVE,
    STATUS,
    GatewayFactory,
    as_user,
    join,
)

STATUS_FIELDS = {
    "event_state",
    "status",
    "position",
    "eta_sec",
    "eta_confidence",
    "waiting_time",
    "ready_for_entry",
    "poll_after_ms",
    "frontier",
}


async def test_join_answers_202_with_token_position_hint_and_waiting(
    client: httpx.AsyncClient, event_id: str
) -> None:
    first = await client.post(JOIN, json={"event_id": event_id})
    second = await client.post(JOIN, json={"event_id": event_id}, headers=as_user(1))
    assert first.status_code == 202
    assert second.status_code == 202
    assert first.headers["cache-control"] == "no-store"
    assert first.json()["status"] == "waiting"
    assert first.json()["position_hint"] == 1
    assert second.json()["position_hint"] == 2
    assert first.json()["waiting_token"] != second.json()["waiting_token"]
    assert set(first.json()) == {"waiting_token", "position_hint", "status"}


async def test_join_accepts_user_id_equal_to_the_authenticated_user(
    client: httpx.AsyncClient, event_id: str
) -> None:
    response = await client.post(
        JOIN, json={"event_id": event_id, "user_id": "dev-user-123"}, headers=DEV
    )
    assert response.status_code == 202


async def test_status_reports_every_field_and_ready_at_the_front(
    client: httpx.AsyncClient, event_id: str
) -> None:
    token = await join(client, event_id)
    response = await client.get(STATUS, params={"token": token})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == STATUS_FIELDS
    # Position 1 needs no minimum wait (QUEUE_MIN_WAIT), so it may enter at once.
    assert body["status"] == "ready"
    assert body["ready_for_entry"] is True
    assert body["position"] == 1
    assert body["eta_sec"] == 0
    assert isinstance(body["eta_confidence"], float)
    assert 0.0 <= body["eta_confidence"] <= 1.0
    assert body["waiting_time"] >= 0
    assert body["poll_after_ms"] >= 1000
    assert body["frontier"]["earmarked"] >= body["position"], "ready: within the frontier"
    frontier = body["frontier"]
    assert frontier["released"] == frontier["used"] + frontier["earmarked"]


async def test_status_is_waiting_outside_the_admission_window(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(QUEUE_ADMISSION_WINDOW="1") as client:
        await join(client, event_id)
        token = await join(client, event_id)
        body = (await client.get(STATUS, params={"token": token})).json()
    assert body["status"] == "waiting"
    assert body["ready_for_entry"] is False
    assert body["position"] == 2
    # No admissions yet: the ETA falls back to the nominal refill rate, with no confidence:
    # one place to the frontier at 50/s is 20 ms, so the next poll is at the 100-ms floor.
    assert body["eta_sec"] == 1
    assert body["eta_confidence"] == 0.0
    assert body["poll_after_ms"] == 100


async def test_status_is_waiting_until_the_minimum_wait_has_passed(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(QUEUE_MIN_WAIT="10:60") as client:
        token = await join(client, event_id)
        body = (await client.get(STATUS, params={"token": token})).json()
    assert (body["status"], body["position"], body["ready_for_entry"]) == ("waiting", 1, False)


async def test_enter_grants_a_reservation_token_for_30_seconds(
    client: httpx.AsyncClient, event_id: str
) -> None:
    token = await join(client, event_id, headers=DEV)
    response = await client.post(ENTER, json={"waiting_token": token}, headers=DEV)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["admission"] == "granted"
    assert body["ttl_sec"] == 30
    assert body["reservation_token"].startswith("rt1.")
    assert response.headers["cache-control"] == "no-store"
    status = (await client.get(STATUS, params={"token": token})).json()
    assert status["status"] == "admitted"
    assert status["ready_for_entry"] is False


async def test_enter_with_an_anonymous_token_admits_the_caller(
    client: httpx.AsyncClient, event_id: str
) -> None:
    token = await join(client, event_id)
    response = await client.post(ENTER, json={"waiting_token": token}, headers=as_user(7))
    assert response.status_code == 200, response.text


async def test_entering_moves_everyone_behind_up(client: httpx.AsyncClient, event_id: str) -> None:
    tokens = [await join(client, event_id, headers=as_user(n)) for n in range(3)]
    entered = await client.post(ENTER, json={"waiting_token": tokens[0]}, headers=as_user(0))
    assert entered.status_code == 200
    positions = [
        (await client.get(STATUS, params={"token": t})).json()["position"] for t in tokens[1:]
    ]
    assert positions == [1, 2]


async def test_delete_leave_with_query_token_moves_everyone_behind_up(
    client: httpx.AsyncClient, event_id: str
) -> None:
    tokens = [await join(client, event_id) for _ in range(3)]
    response = await client.delete(LEAVE, params={"token": tokens[0]})
    assert response.status_code == 200
    assert response.json() == {"status": "left", "message": "left the queue"}
    gone = (await client.get(STATUS, params={"token": tokens[0]})).json()
    assert gone["status"] == "expired"
    assert gone["position"] == 0
    positions = [
        (await client.get(STATUS, params={"token": t})).json()["position"] for t in tokens[1:]
    ]
    assert positions == [1, 2]


async def test_leave_twice_is_idempotent(client: httpx.AsyncClient, event_id: str) -> None:
    token = await join(client, event_id)
    assert (await client.delete(LEAVE, params={"token": token})).status_code == 200
    again = await client.delete(LEAVE, params={"token": token})
    assert again.status_code == 200
    assert again.json()["status"] == "left"
    assert "not in the queue" in again.json()["message"]


async def test_post_leave_takes_the_query_token(client: httpx.AsyncClient, event_id: str) -> None:
    token = await join(client, event_id)
    response = await client.post(LEAVE, params={"token": token})
    assert response.status_code == 200
    assert response.json()["message"] == "left the queue"


async def test_post_leave_takes_a_send_beacon_body(
    client: httpx.AsyncClient, event_id: str
) -> None:
    """navigator.sendBeacon posts a text/plain body and cannot set a query token reliably."""
    first = await join(client, event_id)
    second = await join(client, event_id)
    behind = await join(client, event_id)
    by_waiting_token = await client.post(
        LEAVE,
        content=f'{{"waiting_token": "{first}"}}'.encode(),
        headers={"content-type": "text/plain;charset=UTF-8"},
    )
    by_token = await client.post(LEAVE, json={"token": second})
    assert by_waiting_token.status_code == 200, by_waiting_token.text
    assert by_token.status_code == 200, by_token.text
    assert by_waiting_token.json()["message"] == "left the queue"
    assert by_token.json()["message"] == "left the queue"
    assert (await client.get(STATUS, params={"token": behind})).json()["position"] == 1


async def test_rejoining_after_leaving_goes_to_the_back(
    client: httpx.AsyncClient, event_id: str
) -> None:
    mine = await join(client, event_id, headers=as_user(1))
    await join(client, event_id, headers=as_user(2))
    assert (await client.delete(LEAVE, params={"token": mine})).status_code == 200
    again = await client.post(JOIN, json={"event_id": event_id}, headers=as_user(1))
    assert again.status_code == 202
    assert again.json()["position_hint"] == 2
    assert again.json()["waiting_token"] != mine


async def test_join_with_the_same_idempotency_key_returns_the_same_token(
    client: httpx.AsyncClient, event_id: str
) -> None:
    key = {"Idempotency-Key": "join-attempt-1"}
    first = await client.post(JOIN, json={"event_id": event_id}, headers=key)
    replay = await client.post(JOIN, json={"event_id": event_id}, headers=key)
    other = await client.post(JOIN, json={"event_id": event_id}, headers={"Idempotency-Key": "2"})
    assert (first.status_code, replay.status_code, other.status_code) == (202, 202, 202)
    assert replay.json()["waiting_token"] == first.json()["waiting_token"]
    assert replay.json()["position_hint"] == first.json()["position_hint"] == 1
    assert other.json()["waiting_token"] != first.json()["waiting_token"]
    assert other.json()["position_hint"] == 2


async def test_authenticated_join_with_the_same_idempotency_key_replays_the_202(
    client: httpx.AsyncClient, event_id: str
) -> None:
    headers = {**DEV, "Idempotency-Key": "a" * 255}
    first = await client.post(JOIN, json={"event_id": event_id}, headers=headers)
    replay = await client.post(JOIN, json={"event_id": event_id}, headers=headers)
    assert (first.status_code, replay.status_code) == (202, 202)
    assert replay.json() == first.json()


async def test_the_same_key_from_two_users_makes_two_places(
    client: httpx.AsyncClient, event_id: str
) -> None:
    """Idempotency keys are scoped to the caller: one user's key never replays another's."""
    key = {"Idempotency-Key": "shared-key"}
    mine = await client.post(JOIN, json={"event_id": event_id}, headers={**as_user(1), **key})
    theirs = await client.post(JOIN, json={"event_id": event_id}, headers={**as_user(2), **key})
    assert mine.json()["waiting_token"] != theirs.json()["waiting_token"]
    assert theirs.json()["position_hint"] == 2


async def test_events_are_separate_queues(client: httpx.AsyncClient, event_id: str) -> None:
    await join(client, event_id, headers=DEV)
    other = await client.post(JOIN, json={"event_id": f"{event_id}.b"}, headers=DEV)
    assert other.status_code == 202
    assert other.json()["position_hint"] == 1


async def test_eta_keeps_the_configured_rate_until_enough_admissions_are_observed(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(QUEUE_ADMISSION_WINDOW="1") as client:
        tokens = [await join(client, event_id) for _ in range(4)]
        before = (await client.get(STATUS, params={"token": tokens[3]})).json()
        assert before["eta_confidence"] == 0.0  # nothing observed yet: the nominal rate
        for n, token in enumerate(tokens[:2]):  # each is first in line when it enters
            who = as_user(f"eta-{n}")  # one admission per person: two people
            entered = await client.post(ENTER, json={"waiting_token": token}, headers=who)
            assert entered.status_code == 200, entered.text
        after = (await client.get(STATUS, params={"token": tokens[3]})).json()
    assert (after["status"], after["position"]) == ("waiting", 2)
    assert after["eta_confidence"] == 0.0, "two admissions are not a measurement (MIN_SAMPLES)"
    assert after["eta_sec"] >= 1
    assert after["frontier"]["used"] == 2
