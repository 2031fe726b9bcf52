"""The operator admin API over real HTTP: authorisation, validation, effects, audit, and a
change made through one gateway in effect through another on the same Redis."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from tests.http_server import serve
from tests.integration.conftest import (
    DEV,
    ENTER,
    JOIN,
    STATUS,
    GatewayFactory,
    as_user,
    assert_envelope,
    dev_env,
    eventually,
    join,
)
from ticketgate.app import create_app
from ticketgate.config import load_settings

EVENTS = "/api/v1/admin/events"
ADMIN_ROUTES = [
    ("GET", EVENTS, None),
    ("GET", f"{EVENTS}/evt_admin", None),
    ("PATCH", f"{EVENTS}/evt_admin", {"paused": False}),
    ("POST", f"{EVENTS}/evt_admin/sweep", None),
]
OPEN_DOOR = {"QUEUE_ADMISSION_WINDOW": "5", "QUEUE_MIN_WAIT": "5:0"}


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_need_an_admin(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    anonymous = await _call(client, method, path, body, {})
    assert_envelope(anonymous, 401, "MISSING_AUTHORIZATION")
    user = await _call(client, method, path, body, as_user(1))
    assert_envelope(user, 403, "FORBIDDEN")
    admin = await _call(client, method, path, body, DEV)
    assert admin.status_code == 200, admin.text
    assert admin.headers["cache-control"] == "no-store"


async def test_an_event_shows_live_stats_and_the_listing_sorts_by_waiting(
    client: httpx.AsyncClient, event_id: str
) -> None:
    big, small = f"{event_id}-big", f"{event_id}-small"
    for user in range(3):
        await join(client, big, headers=as_user(user))
    await join(client, small)
    shown = (await client.get(f"{EVENTS}/{big}", headers=DEV)).json()
    assert shown["event_id"] == big
    assert shown["waiting"] == 3
    assert shown["admitted_last_minute"] == 0
    # A newcomer would stand at position 4, within the 500 places the full bucket released.
    assert shown["tail_eta_sec"] == 0
    assert shown["frontier"] == {"released": 500, "used": 0, "earmarked": 500}
    assert shown["eta_confidence"] == 0.0
    assert shown["oldest_wait_sec"] >= 0
    assert shown["settings"] == {
        "admission_window": 100,
        "bucket_capacity": 500,
        "bucket_refill_per_sec": 50.0,
        "paused": False,
        "closed": False,
        "sold_out": False,
    }
    assert (shown["state"], shown["registered"]) == ("open", False)
    assert shown["overridden"] == []

    async def listed() -> bool:  # the registry is written by the sweeper, once a second
        body = (await client.get(EVENTS, params={"limit": 1000}, headers=DEV)).json()
        ids = [e["event_id"] for e in body["events"]]
        return big in ids and small in ids and ids.index(big) < ids.index(small)

    await eventually(listed, within=5)
    body = (await client.get(EVENTS, params={"limit": 1}, headers=DEV)).json()
    assert body["limit"] == 1
    assert len(body["events"]) == 1


async def test_patch_changes_the_event_and_writes_one_audit_record(
    gateway: GatewayFactory, event_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway(**OPEN_DOOR) as client:
        token = await join(client, event_id, headers=as_user(1))
        caplog.set_level(logging.INFO, logger="ticketgate.audit")
        response = await client.patch(
            f"{EVENTS}/{event_id}",
            json={"paused": True, "bucket_refill_per_sec": 2.5, "admission_window": 3},
            headers={**DEV, "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"},
        )
        assert response.status_code == 200, response.text
        view = response.json()
        assert view["settings"]["paused"] is True
        assert view["settings"]["admission_window"] == 3
        assert view["settings"]["bucket_refill_per_sec"] == 2.5
        assert sorted(view["overridden"]) == [
            "admission_window",
            "bucket_refill_per_sec",
            "paused",
        ]
        records = [r for r in caplog.records if r.name == "ticketgate.audit"]
        assert len(records) == 1
        record: Any = records[0]
        assert record.actor == "dev-user-123"
        assert record.action == "event.update"
        assert record.event_id == event_id
        assert record.before["paused"] is False
        assert record.before["admission_window"] == 5
        assert record.after["paused"] is True
        assert record.after["admission_window"] == 3
        assert record.trace_id == "ab" * 16

        status = (await client.get(STATUS, params={"token": token})).json()
        assert status["ready_for_entry"] is False
        paused = await client.post(ENTER, json={"waiting_token": token}, headers=as_user(1))
        assert_envelope(paused, 503, "ADMISSIONS_PAUSED")
        assert int(paused.headers["retry-after"]) >= 1

        closed = await client.patch(
            f"{EVENTS}/{event_id}", json={"paused": False, "closed": True}, headers=DEV
        )
        assert closed.json()["settings"]["closed"] is True
        refused = await client.post(JOIN, json={"event_id": event_id}, headers=as_user(2))
        assert_envelope(refused, 409, "QUEUE_CLOSED")
        granted = await client.post(ENTER, json={"waiting_token": token}, headers=as_user(1))
        assert granted.status_code == 200, granted.text  # those inside still get in

        reset = await client.patch(
            f"{EVENTS}/{event_id}",
            json={"closed": False, "admission_window": None, "bucket_refill_per_sec": None},
            headers=DEV,
        )
        assert reset.json()["overridden"] == []
        assert reset.json()["settings"]["admission_window"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"admission_window": 0}, "admission_window"),
        ({"admission_window": 6}, "admission_window"),  # beyond the last min-wait rule (5)
        ({"admission_window": "7"}, "admission_window"),
        ({"bucket_capacity": 0}, "bucket_capacity"),
        ({"bucket_capacity": 10**7}, "bucket_capacity"),
        ({"bucket_refill_per_sec": 0}, "bucket_refill_per_sec"),
        ({"paused": "yes"}, "paused"),
        ({"closed": None}, "closed"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_patch_refuses_out_of_range_values_naming_the_field(
    gateway: GatewayFactory, event_id: str, body: dict[str, Any], field: str
) -> None:
    async with gateway(**OPEN_DOOR) as client:
        response = await client.patch(f"{EVENTS}/{event_id}", json=body, headers=DEV)
        error = assert_envelope(response, 400, "INVALID_REQUEST")["error"]
        assert field in error["message"]
        assert (await client.get(f"{EVENTS}/{event_id}", headers=DEV)).json()["overridden"] == []


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", EVENTS, {"limit": "0"}),
        ("GET", EVENTS, {"limit": "1001"}),
        ("GET", EVENTS, {"limit": "ten"}),
        ("GET", f"{EVENTS}/bad%20id", {}),
        ("POST", f"{EVENTS}/bad%20id/sweep", {}),
    ],
)
async def test_bad_limits_and_event_ids_are_400(
    client: httpx.AsyncClient, method: str, path: str, params: dict[str, str]
) -> None:
    response = await client.request(method, path, params=params, headers=DEV)
    assert_envelope(response, 400, "INVALID_REQUEST")


async def test_sweep_reports_how_many_and_is_audited(
    client: httpx.AsyncClient, event_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    await join(client, event_id)
    caplog.set_level(logging.INFO, logger="ticketgate.audit")
    response = await client.post(f"{EVENTS}/{event_id}/sweep", headers=DEV)
    assert response.json() == {"event_id": event_id, "removed": 0}
    (record,) = [r for r in caplog.records if r.name == "ticketgate.audit"]
    assert (record.action, record.event_id) == ("event.sweep", event_id)  # type: ignore[attr-defined]


async def test_a_change_through_one_gateway_is_in_effect_through_another_within_a_second(
    redis_address: str, event_id: str
) -> None:
    env = dev_env(REDIS_ADDRESS=redis_address)
    async with (
        serve(create_app(load_settings(env))) as first,
        serve(create_app(load_settings(env))) as second,
    ):
        await join(second, event_id, headers=as_user(1))
        response = await first.patch(f"{EVENTS}/{event_id}", json={"closed": True}, headers=DEV)
        assert response.status_code == 200

        async def refused() -> bool:
            answer = await second.post(JOIN, json={"event_id": event_id}, headers=as_user(2))
            return answer.status_code == 409 and answer.json()["error"]["code"] == "QUEUE_CLOSED"

        assert await eventually(refused, within=1.0, step=0.01) < 1.0
        view = (await second.get(f"{EVENTS}/{event_id}", headers=DEV)).json()
        assert view["settings"]["closed"] is True
        assert view["waiting"] == 1
