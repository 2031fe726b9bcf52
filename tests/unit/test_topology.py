"""Single-process components and the replica rules (issue 10 item 4, issue 15 item 4).

Two production replicas on one Redis used to each run their own inventory and signing key;
now a production start names every single-process part it uses, and a declared fleet
(`SERVER_REPLICAS_EXPECTED` > 1) refuses to start with any of them.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.redis_server import free_port
from tests.unit.test_accounts_database import shared_key_pem
from ticketgate.config import load_settings, single_process_components, single_process_warning
from ticketgate.envparse import ConfigError
from ticketgate.services.settings import ServiceSettings

SECRET = "q" * 32
SHARED = {
    "QUEUE_TOKEN_SECRET": SECRET,
    "REDIS_ADDRESS": "redis.internal:6379",
    "DATABASE_URL": "postgresql://gate@db.internal/ticketgate",
    "BACKEND_RESERVATION_API_GRPC_ADDRESS": "reservation:9090",
    "BACKEND_PAYMENT_API_GRPC_ADDRESS": "payment:9092",
    "PAYMENT_WEBHOOK_SECRET": "w" * 32,
    "PAYMENT_WEBHOOK_URL": "http://gateways.internal/api/v1/payment/webhook",
}


def shared_env(**overrides: str) -> dict[str, str]:
    return {**SHARED, "AUTH_SIGNING_KEY": shared_key_pem().decode(), **overrides}


def test_a_fully_shared_configuration_starts_as_a_fleet_without_warning() -> None:
    settings = load_settings(shared_env(SERVER_REPLICAS_EXPECTED="3"))
    assert settings.replicas_expected == 3
    assert single_process_components(settings) == []
    assert single_process_warning(settings) is None


def test_the_generated_signing_key_is_shared_through_postgresql() -> None:
    """A generated key lives in the database: on PostgreSQL every replica reads the same row."""
    env = {**SHARED, "SERVER_REPLICAS_EXPECTED": "3"}
    assert single_process_components(load_settings(env)) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"REDIS_ADDRESS": ""}, "embedded memory store"),
        (
            {"BACKEND_RESERVATION_API_GRPC_ADDRESS": "", "BACKEND_EMBEDDED": "true"},
            "in-process reference services",
        ),
        ({"DATABASE_URL": "", "DATABASE_PATH": "/srv/tg.db"}, "SQLite database /srv/tg.db"),
        # The multi-host test's finding: outcomes posted to the payment service's own host.
        ({"PAYMENT_WEBHOOK_URL": ""}, "PAYMENT_WEBHOOK_URL defaulting to http://127.0.0.1:8000"),
    ],
)
def test_a_declared_fleet_refuses_each_single_process_component(
    change: dict[str, str], named: str
) -> None:
    env = shared_env(**change)
    assert named in "; ".join(single_process_components(load_settings(env)))
    with pytest.raises(ConfigError) as refused:
        load_settings({**env, "SERVER_REPLICAS_EXPECTED": "2"})
    message = str(refused.value)
    assert message.startswith("SERVER_REPLICAS_EXPECTED=2 but these would differ")
    assert named in message
    assert "\n" not in message


def test_sqlite_with_a_generated_key_names_both() -> None:
    env = {**SHARED, "DATABASE_URL": "", "DATABASE_PATH": "/srv/tg.db"}
    components = "; ".join(single_process_components(load_settings(env)))
    assert "SQLite database /srv/tg.db" in components
    assert "token signing key generated into that SQLite file" in components


def test_the_embedded_default_names_every_part_outside_development() -> None:
    env = {"QUEUE_TOKEN_SECRET": SECRET, "BACKEND_EMBEDDED": "true", "DATABASE_PATH": "/x/t.db"}
    warning = single_process_warning(load_settings(env))
    assert warning is not None
    for part in (
        "embedded memory store",
        "in-process reference services",
        "SQLite database /x/t.db",
        "token signing key generated",
    ):
        assert part in warning
    development = load_settings({**env, "SERVER_ENVIRONMENT": "development"})
    assert single_process_warning(development) is None


def test_replicas_expected_is_validated() -> None:
    with pytest.raises(ConfigError, match="SERVER_REPLICAS_EXPECTED"):
        load_settings(shared_env(SERVER_REPLICAS_EXPECTED="zero"))
    with pytest.raises(ConfigError, match="SERVER_REPLICAS_EXPECTED"):
        load_settings(shared_env(SERVER_REPLICAS_EXPECTED="0"))


def test_demo_seeding_is_a_development_default_only() -> None:
    production = ServiceSettings.from_env({"PAYMENT_WEBHOOK_SECRET": "w" * 32})
    assert production.seed_demo_event is False
    asked = ServiceSettings.from_env(
        {"PAYMENT_WEBHOOK_SECRET": "w" * 32, "SERVICES_SEED_DEMO_EVENT": "true"}
    )
    assert asked.seed_demo_event is True
    assert ServiceSettings.from_env({"SERVER_ENVIRONMENT": "development"}).seed_demo_event


def _serve(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    binary = Path(sys.executable).with_name("ticketgate")
    return subprocess.Popen(
        [str(binary), "serve", "--port", str(free_port())],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "COLUMNS": "80",
            "LOG_FORMAT": "console",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_serve_refuses_a_fleet_of_embedded_gateways_in_one_line(tmp_path: Path) -> None:
    env = {
        "QUEUE_TOKEN_SECRET": SECRET,
        "BACKEND_EMBEDDED": "true",
        "DATABASE_PATH": str(tmp_path / "tg.db"),
        "SERVER_REPLICAS_EXPECTED": "2",
    }
    process = _serve(env, tmp_path)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2, output
    assert "SERVER_REPLICAS_EXPECTED=2" in output
    assert "embedded memory store" in output


def test_serve_warns_about_single_process_parts_in_production(tmp_path: Path) -> None:
    env = {
        "QUEUE_TOKEN_SECRET": SECRET,
        "BACKEND_EMBEDDED": "true",
        "DATABASE_PATH": str(tmp_path / "tg.db"),
    }
    process = _serve(env, tmp_path)
    assert process.stdout is not None
    seen = ""
    try:
        deadline = time.monotonic() + 60
        while "single-process components" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            if ready:
                line = process.stdout.readline()
                if not line:
                    break
                seen += line
    finally:
        process.terminate()
        process.wait(20)
    assert "single-process components in use" in seen, seen
    assert "in-process reference services" in seen
