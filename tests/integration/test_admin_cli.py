"""`ticketgate admin ...` against a really served gateway: tables, changes, errors, login."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from tests.integration.conftest import JOIN, dev_env, threaded_gateway
from ticketgate.cli import cli

DEV_TOKEN = "dev-super-key-local-testing"


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    with threaded_gateway(dev_env()) as url:
        yield url


def run(url: str, *args: str, token: str = DEV_TOKEN, stdin: str | None = None) -> tuple[int, str]:
    env = {"TICKETGATE_URL": url, "TICKETGATE_ADMIN_TOKEN": token, "COLUMNS": "200"}
    result = CliRunner().invoke(cli, ["admin", *args], env=env, input=stdin)
    return result.exit_code, result.output


def test_events_and_show_print_tables(gateway_url: str) -> None:
    event_id = f"evt_cli_{uuid.uuid4().hex[:8]}"
    for user in range(2):
        joined = httpx.post(
            f"{gateway_url}{JOIN}",
            json={"event_id": event_id},
            headers={"Authorization": f"Bearer load-test-bypass-token-{user}"},
        )
        assert joined.status_code == 202
    code, output = run(gateway_url, "events")
    assert code == 0, output
    assert "admitted/min" in output
    assert event_id in output
    code, output = run(gateway_url, "event", "show", event_id)
    assert code == 0, output
    assert "waiting" in output
    assert "admission_window" in output
    assert "100" in output


def test_set_changes_the_event_and_errors_exit_1_with_the_envelope(gateway_url: str) -> None:
    event_id = f"evt_cli_{uuid.uuid4().hex[:8]}"
    code, output = run(
        gateway_url, "event", "set", event_id, "--window", "50", "--pause", "--close"
    )
    assert code == 0, output
    assert "(runtime override)" in output
    view = httpx.get(
        f"{gateway_url}/api/v1/admin/events/{event_id}",
        headers={"Authorization": f"Bearer {DEV_TOKEN}"},
    ).json()
    assert view["settings"]["admission_window"] == 50
    assert view["settings"]["paused"] is True
    assert view["settings"]["closed"] is True
    code, output = run(
        gateway_url,
        "event",
        "set",
        event_id,
        "--resume",
        "--open",
        "--rate",
        "7.5",
        "--bucket-size",
        "20",
    )
    assert code == 0, output
    view = httpx.get(
        f"{gateway_url}/api/v1/admin/events/{event_id}",
        headers={"Authorization": f"Bearer {DEV_TOKEN}"},
    ).json()
    assert view["settings"]["paused"] is False
    assert view["settings"]["closed"] is False
    assert view["settings"]["bucket_refill_per_sec"] == 7.5
    assert view["settings"]["bucket_capacity"] == 20
    assert view["settings"]["admission_window"] == 50
    code, output = run(gateway_url, "event", "sweep", event_id)
    assert code == 0, output
    assert "swept 0 ghost waiters" in output

    code, output = run(gateway_url, "event", "set", event_id, "--window", "0")
    assert code == 1
    assert "400 INVALID_REQUEST" in output
    assert "admission_window" in output
    code, output = run(gateway_url, "events", token="load-test-bypass-token-1")
    assert code == 1
    assert "403 FORBIDDEN" in output
    code, output = run(gateway_url, "event", "set", event_id)
    assert code == 1
    assert "nothing to change" in output
    code, output = run("http://127.0.0.1:9", "events")
    assert code == 1
    assert "cannot reach" in output


def test_username_logs_in_with_the_password_from_stdin(gateway_url: str) -> None:
    username = f"ops_{uuid.uuid4().hex[:8]}"
    password = "correct horse battery"
    created = CliRunner().invoke(
        cli,
        ["admin", "create-user", "--username", username, "--role", "admin", "--password-stdin"],
        env=dev_env(),
        input=password + "\n",
    )
    assert created.exit_code == 0, created.output
    code, output = run(
        gateway_url,
        "events",
        "--username",
        username,
        "--password-stdin",
        token="",
        stdin=password + "\n",
    )
    assert code == 0, output
    assert "events (most waiting first)" in output
    code, output = run(
        gateway_url,
        "events",
        "--username",
        username,
        "--password-stdin",
        token="",
        stdin="wrong password\n",
    )
    assert code == 1
    assert "401 INVALID_CREDENTIALS" in output
