"""Issue 10 item 17: `ticketgate admin create-user` needs only the database and says which one;
`admin login` keeps a token for an hour in a user-private file; `admin event watch` is a live
table. Against a really served gateway and real SQLite files."""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.envs import TEST_DATABASE_PATH
from tests.integration.conftest import JOIN, dev_env, threaded_gateway
from ticketgate.admin_cli import DEFAULT_URL, credentials_path
from ticketgate.cli import cli

PASSWORD = "an operator passphrase"


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    with threaded_gateway(dev_env()) as url:
        yield url


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("TICKETGATE_ADMIN_TOKEN", raising=False)
    return home


def invoke(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["admin", *args], env={"COLUMNS": "200", **(env or {})}, input=stdin
    )
    return result.exit_code, result.output


def production_db_env(path: str) -> dict[str, str]:
    """What an operator's shell has: the database only (no QUEUE_TOKEN_SECRET, no backends)."""
    return {"DATABASE_PATH": path, "QUEUE_TOKEN_SECRET": "", "SERVER_ENVIRONMENT": ""}


def create_admin(username: str, roles: tuple[str, ...] = ("admin", "user")) -> None:
    role_args = [arg for role in roles for arg in ("--role", role)]
    code, output = invoke(
        "create-user",
        "--username",
        username,
        *role_args,
        "--password-stdin",
        env=production_db_env(TEST_DATABASE_PATH),
        stdin=PASSWORD + "\n",
    )
    assert code == 0, output


def test_create_user_needs_only_the_database_and_prints_it(gateway_url: str) -> None:
    username = f"ops_{uuid.uuid4().hex[:8]}"
    code, output = invoke(
        "create-user",
        "--username",
        username,
        "--role",
        "admin",
        "--password-stdin",
        env=production_db_env(TEST_DATABASE_PATH),
        stdin=PASSWORD + "\n",
    )
    assert code == 0, output
    assert f"database: sqlite+aiosqlite:///{TEST_DATABASE_PATH}" in output
    assert f"created {username}" in output


def test_a_relative_path_to_no_database_is_refused_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = invoke(
        "create-user",
        "--username",
        "ops",
        "--password-stdin",
        env=production_db_env("./var/ticketgate.db"),
        stdin=PASSWORD + "\n",
    )
    assert code == 2, output
    assert f"no database at {tmp_path.resolve()}/var/ticketgate.db" in " ".join(output.split())
    assert not (tmp_path / "var").exists()
    code, output = invoke(
        "create-user",
        "--username",
        "ops",
        "--password-stdin",
        "--create-database",
        env=production_db_env("./var/ticketgate.db"),
        stdin=PASSWORD + "\n",
    )
    assert code == 0, output
    assert (tmp_path / "var" / "ticketgate.db").exists()


def test_unknown_roles_are_refused(tmp_path: Path) -> None:
    code, output = invoke(
        "create-user",
        "--username",
        "ops",
        "--role",
        "superuser",
        "--password-stdin",
        env=production_db_env(str(tmp_path / "never.db")),
        stdin=PASSWORD + "\n",
    )
    assert code == 2, output
    assert "unknown role 'superuser': roles are admin, user" in output
    assert not (tmp_path / "never.db").exists()


def test_the_default_gateway_url_is_the_servers_port() -> None:
    assert DEFAULT_URL == "http://127.0.0.1:8000"
    code, output = invoke("events", "--help")
    assert code == 0
    assert "http://127.0.0.1:8000" in output


def test_login_keeps_a_private_token_that_the_other_commands_use(
    gateway_url: str, config_home: Path
) -> None:
    username = f"ops_{uuid.uuid4().hex[:8]}"
    create_admin(username)
    code, output = invoke(
        "login",
        "--url",
        gateway_url,
        "--username",
        username,
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, output
    assert f"logged in as {username}" in output
    path = credentials_path()
    assert path.is_relative_to(config_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    record = json.loads(path.read_text())
    assert 3500 < record["expires_at"] - time.time() <= 3600
    assert PASSWORD not in path.read_text()

    code, output = invoke("events", "--url", gateway_url)  # no --token, no --username
    assert code == 0, output
    assert "events (most waiting first)" in output
    code, output = invoke("events", "--url", "http://127.0.0.1:9")  # kept for another URL
    assert code == 1
    assert "no credentials" in output

    record["expires_at"] = time.time() - 1
    path.write_text(json.dumps(record))
    code, output = invoke("events", "--url", gateway_url)
    assert code == 1
    assert "no credentials: run `ticketgate admin login`" in output


def test_login_of_a_non_admin_keeps_nothing(gateway_url: str, config_home: Path) -> None:
    username = f"fan_{uuid.uuid4().hex[:8]}"
    create_admin(username, roles=("user",))
    code, output = invoke(
        "login",
        "--url",
        gateway_url,
        "--username",
        username,
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 1
    assert "403 FORBIDDEN" in output
    assert not credentials_path().exists()


def test_event_watch_refreshes_a_live_table(gateway_url: str, config_home: Path) -> None:
    event_id = f"evt_watch_{uuid.uuid4().hex[:8]}"
    joined = httpx.post(f"{gateway_url}{JOIN}", json={"event_id": event_id})
    assert joined.status_code == 202
    token_env = {"TICKETGATE_ADMIN_TOKEN": "dev-super-key-local-testing"}
    started = time.monotonic()
    code, output = invoke(
        "event",
        "watch",
        event_id,
        "--url",
        gateway_url,
        "--interval",
        "0.2",
        "--count",
        "3",
        env=token_env,
    )
    assert code == 0, output
    assert time.monotonic() - started >= 0.4  # two pauses between three refreshes
    assert f"event {event_id}" in output
    assert "update 3 at" in output
    assert "waiting" in output

    code, output = invoke(
        "event",
        "watch",
        event_id,
        "--url",
        gateway_url,
        "--count",
        "1",
        env={"TICKETGATE_ADMIN_TOKEN": "load-test-bypass-token-1"},
    )
    assert code == 1
    assert "403 FORBIDDEN" in output


def test_event_watch_survives_an_unreachable_gateway(config_home: Path) -> None:
    code, output = invoke(
        "event",
        "watch",
        "evt_x",
        "--url",
        "http://127.0.0.1:9",
        "--interval",
        "0.2",
        "--count",
        "2",
        env={"TICKETGATE_ADMIN_TOKEN": "t"},
    )
    assert code == 0, output
    assert "cannot reach" in output
    assert "update 2 at" in output
    assert os.environ.get("XDG_CONFIG_HOME") == str(config_home)
