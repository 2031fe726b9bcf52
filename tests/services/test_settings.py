"""ServiceSettings.from_env: defaults, the webhook secret rule, and one-line refusals."""

from __future__ import annotations

import pytest

from ticketgate.envparse import ConfigError
from ticketgate.services.server import dial_address
from ticketgate.services.settings import ServiceSettings, split_address

SECRET = "s" * 32


def test_defaults_in_development_generate_a_webhook_secret() -> None:
    settings = ServiceSettings.from_env({"SERVER_ENVIRONMENT": "development"})
    assert settings.inventory_address == "127.0.0.1:50051"
    assert settings.reservation_address == "127.0.0.1:50052"
    assert settings.payment_address == "127.0.0.1:50053"
    assert settings.hold_ttl_sec == 60
    assert settings.payment_delay_sec == 3.0
    assert settings.seed_demo_event is True
    assert settings.webhook_secret_generated is True
    assert len(settings.webhook_secret) >= 32
    other = ServiceSettings.from_env({"SERVER_ENVIRONMENT": "development"})
    assert other.webhook_secret != settings.webhook_secret


def test_the_webhook_secret_is_required_outside_development() -> None:
    for environment in ("", "production", "staging"):
        with pytest.raises(ConfigError, match="PAYMENT_WEBHOOK_SECRET is required"):
            ServiceSettings.from_env({"SERVER_ENVIRONMENT": environment})
    with pytest.raises(ConfigError, match="at least 32"):
        ServiceSettings.from_env({"PAYMENT_WEBHOOK_SECRET": "short"})
    settings = ServiceSettings.from_env({"PAYMENT_WEBHOOK_SECRET": f" {SECRET} "})
    assert settings.webhook_secret == SECRET.encode()
    assert settings.webhook_secret_generated is False


def test_an_in_process_gateway_hands_over_its_own_secret() -> None:
    for environment in ("production", "development"):
        settings = ServiceSettings.from_env(
            {"SERVER_ENVIRONMENT": environment, "PAYMENT_WEBHOOK_SECRET": "ignored" * 8},
            webhook_secret=b"gateway-secret-gateway-secret-gateway",
        )
        assert settings.webhook_secret == b"gateway-secret-gateway-secret-gateway"
        assert settings.webhook_secret_generated is False
    # No variable needed at all, even in production.
    assert ServiceSettings.from_env({}, webhook_secret=b"x" * 32).webhook_secret == b"x" * 32


def test_every_variable_is_read() -> None:
    settings = ServiceSettings.from_env(
        {
            "PAYMENT_WEBHOOK_SECRET": SECRET,
            "SERVICES_INVENTORY_ADDRESS": "0.0.0.0:6001",
            "SERVICES_RESERVATION_ADDRESS": "[::1]:6002",
            "SERVICES_PAYMENT_ADDRESS": "localhost:0",
            "RESERVATION_HOLD_TTL_SEC": "90",
            "RESERVATION_SWEEP_INTERVAL_SEC": "0.5",
            "SERVICES_UPSTREAM_TIMEOUT_SEC": "2.5",
            "PAYMENT_DELAY_SEC": "0.25",
            "PAYMENT_WEBHOOK_TIMEOUT_SEC": "4",
            "PAYMENT_WEBHOOK_MAX_ATTEMPTS": "7",
            "SERVICES_SEED_DEMO_EVENT": "false",
        }
    )
    assert settings.inventory_address == "0.0.0.0:6001"
    assert settings.reservation_address == "[::1]:6002"
    assert settings.payment_address == "localhost:0"
    assert settings.hold_ttl_sec == 90
    assert settings.sweep_interval_sec == 0.5
    assert settings.upstream_timeout_sec == 2.5
    assert settings.payment_delay_sec == 0.25
    assert settings.webhook_timeout_sec == 4.0
    assert settings.webhook_max_attempts == 7
    assert settings.seed_demo_event is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVICES_INVENTORY_ADDRESS", "50051"),
        ("SERVICES_RESERVATION_ADDRESS", "host:port"),
        ("SERVICES_PAYMENT_ADDRESS", "host:70000"),
        ("SERVICES_PAYMENT_ADDRESS", "[::1:50053"),
        ("RESERVATION_HOLD_TTL_SEC", "0"),
        ("RESERVATION_HOLD_TTL_SEC", "1.5"),
        ("PAYMENT_DELAY_SEC", "-1"),
        ("PAYMENT_DELAY_SEC", "soon"),
        ("PAYMENT_WEBHOOK_MAX_ATTEMPTS", "0"),
        ("SERVICES_SEED_DEMO_EVENT", "maybe"),
        ("SERVER_ENVIRONMENT", "prod"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ServiceSettings.from_env({"PAYMENT_WEBHOOK_SECRET": SECRET, name: value})


def test_wildcard_binds_are_dialled_on_loopback() -> None:
    assert split_address("[::1]:50051") == ("[::1]", 50051)
    assert dial_address("0.0.0.0:0", 41234) == "127.0.0.1:41234"
    assert dial_address("[::]:0", 41234) == "[::1]:41234"
    assert dial_address("10.0.0.5:50051", 50051) == "10.0.0.5:50051"
