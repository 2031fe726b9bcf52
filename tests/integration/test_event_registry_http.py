"""Registered events, sold out and the event's state over real HTTP (issue 10 items 16
and 18, issue 14 item 6): a typo'd event id is 404 instead of a new queue or a paused
nobody; an operator's sold-out reaches joins, enters and every waiter's status; status
stops promising while the door is shut. The CLI's `event create` and `--sold-out` too."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.envs import app_env
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
    join,
    threaded_gateway,
)
from ticketgate.app import create_app
from ticketgate.cli import cli
from ticketgate.config import load_settings

EVENTS = "/api/v1/admin/events"
STRICT = {"QUEUE_AUTO_CREATE_EVENTS": "false"}
OPEN_DOOR = {"QUEUE_ADMISSION_WINDOW": "5", "QUEUE_MIN_WAIT": "5:0"}


async def test_unregistered_events_are_404_until_an_operator_registers_them(
    gateway: GatewayFactory, event_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway(**STRICT) as client:
        for response in (
            await client.post(JOIN, json={"event_id": event_id}),
            await client.post(JOIN, json={"event_id": event_id}, headers=as_user(1)),
            await client.patch(f"{EVENTS}/{event_id}", json={"paused": True}, headers=DEV),
            await client.get(f"{EVENTS}/{event_id}", headers=DEV),
            await client.post(f"{EVENTS}/{event_id}/sweep", headers=DEV),
        ):
            assert_envelope(response, 404, "EVENT_NOT_FOUND")

        caplog.set_level(logging.INFO, logger="ticketgate.audit")
        created = await client.post(
            EVENTS, json={"event_id": event_id, "paused": True, "bucket_capacity": 20}, headers=DEV
        )
        assert created.status_code == 201, created.text
        view = created.json()
        assert (view["event_id"], view["registered"], view["state"]) == (event_id, True, "paused")
        assert view["settings"]["bucket_capacity"] == 20
        (record,) = [r for r in caplog.records if r.name == "ticketgate.audit"]
        assert (record.action, record.event_id) == ("event.create", event_id)  # type: ignore[attr-defined]

        again = await client.post(EVENTS, json={"event_id": event_id}, headers=DEV)
        assert_envelope(again, 409, "EVENT_EXISTS")
        token = await join(client, event_id)
        status = (await client.get(STATUS, params={"token": token})).json()
        assert status["event_state"] == "paused"
        listed = (await client.get(EVENTS, headers=DEV)).json()["events"]
        assert event_id in [e["event_id"] for e in listed]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "MISSING_EVENT_ID"),
        ({"event_id": "bad id"}, "INVALID_REQUEST"),
        ({"event_id": "evt_ok", "surprise": 1}, "INVALID_REQUEST"),
        ({"event_id": "evt_ok", "bucket_capacity": 0}, "INVALID_REQUEST"),
    ],
)
async def test_a_bad_registration_is_400(
    client: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    response = await client.post(EVENTS, json=body, headers=DEV)
    assert_envelope(response, 400, code)
    assert_envelope(await client.post(EVENTS, json=body, headers=as_user(1)), 403, "FORBIDDEN")


async def test_a_registration_on_one_replica_is_seen_by_another(
    redis_address: str, event_id: str
) -> None:
    """The registry lives in Redis next to the queue, not in a worker's memory."""
    env = dev_env(REDIS_ADDRESS=redis_address, **STRICT)
    async with (
        serve(create_app(load_settings(env))) as first,
        serve(create_app(load_settings(env))) as second,
    ):
        assert_envelope(
            await second.post(JOIN, json={"event_id": event_id}), 404, "EVENT_NOT_FOUND"
        )
        created = await first.post(EVENTS, json={"event_id": event_id}, headers=DEV)
        assert created.status_code == 201, created.text
        await join(second, event_id)


async def test_sold_out_refuses_joins_and_enters_and_every_waiter_is_told(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(**OPEN_DOOR) as client:
        tokens = [await join(client, event_id, headers=as_user(n)) for n in range(3)]
        marked = await client.patch(f"{EVENTS}/{event_id}", json={"sold_out": True}, headers=DEV)
        assert marked.status_code == 200, marked.text
        assert (marked.json()["state"], marked.json()["overridden"]) == ("sold_out", ["sold_out"])

        refused = await client.post(JOIN, json={"event_id": event_id}, headers=as_user(9))
        assert_envelope(refused, 409, "SOLD_OUT")
        assert_envelope(await client.post(JOIN, json={"event_id": event_id}), 409, "SOLD_OUT")
        for token in tokens:
            status = (await client.get(STATUS, params={"token": token})).json()
            assert status["event_state"] == "sold_out"
            assert (status["status"], status["ready_for_entry"], status["eta_sec"]) == (
                "waiting",
                False,
                None,
            )
        entered = await client.post(ENTER, json={"waiting_token": tokens[0]}, headers=as_user(0))
        assert_envelope(entered, 409, "SOLD_OUT")

        await client.patch(f"{EVENTS}/{event_id}", json={"sold_out": False}, headers=DEV)
        status = (await client.get(STATUS, params={"token": tokens[0]})).json()
        assert (status["event_state"], status["ready_for_entry"]) == ("open", True)


async def test_while_paused_status_says_so_and_promises_no_eta(
    gateway: GatewayFactory, event_id: str
) -> None:
    """Paused admissions once answered `waiting` with an ETA of 194 s."""
    async with gateway(QUEUE_ADMISSION_WINDOW="1") as client:
        tokens = [await join(client, event_id) for _ in range(3)]
        before = (await client.get(STATUS, params={"token": tokens[2]})).json()
        assert (before["event_state"], before["eta_sec"] > 0) == ("open", True)
        await client.patch(f"{EVENTS}/{event_id}", json={"paused": True}, headers=DEV)
        for token in tokens:
            status = (await client.get(STATUS, params={"token": token})).json()
            assert status["event_state"] == "paused"
            assert (status["status"], status["ready_for_entry"]) == ("waiting", False)
            assert status["eta_sec"] is None
            assert status["eta_confidence"] == 0.0
        await client.patch(f"{EVENTS}/{event_id}", json={"closed": True}, headers=DEV)
        both = (await client.get(STATUS, params={"token": tokens[0]})).json()
        assert both["event_state"] == "paused", "paused matters more to a waiter than closed"
        await client.patch(f"{EVENTS}/{event_id}", json={"paused": False}, headers=DEV)
        closed = (await client.get(STATUS, params={"token": tokens[0]})).json()
        assert (closed["event_state"], closed["ready_for_entry"]) == ("closed", True)


# ------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def strict_gateway() -> Iterator[str]:
    with threaded_gateway(dev_env(**STRICT)) as url:
        yield url


def run(url: str, *args: str) -> tuple[int, str]:
    env = {
        "TICKETGATE_URL": url,
        "TICKETGATE_ADMIN_TOKEN": "dev-super-key-local-testing",
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(cli, ["admin", *args], env=env)
    return result.exit_code, result.output


def test_the_cli_registers_an_event_and_marks_it_sold_out(strict_gateway: str) -> None:
    event_id = f"evt_cli_{uuid.uuid4().hex[:8]}"
    code, output = run(strict_gateway, "event", "set", event_id, "--pause")
    assert code == 1
    assert "404 EVENT_NOT_FOUND" in output
    code, output = run(strict_gateway, "event", "create", event_id, "--pause", "--rate", "5")
    assert code == 0, output
    assert event_id in output
    assert "paused" in output
    code, output = run(strict_gateway, "event", "create", event_id)
    assert code == 1
    assert "409 EVENT_EXISTS" in output
    code, output = run(strict_gateway, "event", "set", event_id, "--sold-out")
    assert code == 0, output
    assert "sold_out" in output
    joined = httpx.post(f"{strict_gateway}{JOIN}", json={"event_id": event_id})
    assert (joined.status_code, joined.json()["error"]["code"]) == (409, "SOLD_OUT")
    code, output = run(strict_gateway, "event", "set", event_id, "--on-sale", "--resume")
    assert code == 0, output
    assert httpx.post(f"{strict_gateway}{JOIN}", json={"event_id": event_id}).status_code == 202


async def test_a_seeded_demo_event_is_registered_in_production() -> None:
    """In-process services seeding the demo seats (asked for outside development) register
    its queue too, so the walk-through's event works where events must be registered."""
    env = app_env(
        SERVER_ENVIRONMENT="production",
        QUEUE_TOKEN_SECRET="registry-secret-registry-secret-0123",
        BACKEND_EMBEDDED="true",
        SERVICES_SEED_DEMO_EVENT="true",
    )
    async with serve(create_app(load_settings(env))) as client:
        joined = await client.post(JOIN, json={"event_id": "evt_2025_1001"})
        assert joined.status_code == 202, joined.text
        other = await client.post(JOIN, json={"event_id": "evt_2025_1002"})
        assert_envelope(other, 404, "EVENT_NOT_FOUND")
