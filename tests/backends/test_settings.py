"""BackendSettings.from_env: defaults, the accepted spellings, and every refusal."""

from __future__ import annotations

import pytest

from ticketgate.backends.settings import BackendSettings, parse_duration_ms
from ticketgate.envparse import ConfigError

SECRET = "w" * 32
EMBEDDED = {"BACKEND_EMBEDDED": "true"}


def test_defaults_are_embedded_with_a_generated_secret_and_the_local_webhook() -> None:
    settings = BackendSettings.from_env(EMBEDDED)
    assert settings.embedded
    assert settings.reservation_address == ""
    assert settings.payment_address == ""
    assert settings.reservation_timeout_ms == 600
    assert settings.payment_timeout_ms == 400
    assert settings.breaker_failures == 5
    assert settings.breaker_reset_sec == 5.0
    assert settings.webhook_secret_generated
    assert len(settings.webhook_secret) >= 32
    assert settings.webhook_url == "http://127.0.0.1:8000/api/v1/payment/webhook"
    assert BackendSettings.from_env(EMBEDDED).webhook_secret != settings.webhook_secret


def test_webhook_url_follows_the_server_port() -> None:
    settings = BackendSettings.from_env({**EMBEDDED, "SERVER_PORT": "9123"})
    assert settings.webhook_url == "http://127.0.0.1:9123/api/v1/payment/webhook"


def test_every_variable_is_read() -> None:
    settings = BackendSettings.from_env(
        {
            "BACKEND_RESERVATION_API_GRPC_ADDRESS": "reservation:9090",
            "BACKEND_PAYMENT_API_GRPC_ADDRESS": "[::1]:9092",
            "BACKEND_RESERVATION_API_TLS_ENABLED": "true",
            "BACKEND_PAYMENT_API_TLS_ENABLED": "no",
            "BACKEND_RESERVATION_API_TIMEOUT": "0.75s",
            "BACKEND_PAYMENT_API_TIMEOUT": "250ms",
            "BACKEND_BREAKER_FAILURES": "3",
            "BACKEND_BREAKER_RESET_SEC": "0.5",
            "PAYMENT_WEBHOOK_SECRET": SECRET,
            "PAYMENT_WEBHOOK_URL": "https://gw.example.com/api/v1/payment/webhook",
        }
    )
    assert not settings.embedded
    assert settings.reservation_address == "reservation:9090"
    assert settings.payment_address == "[::1]:9092"
    assert settings.reservation_tls
    assert not settings.payment_tls
    assert settings.reservation_timeout_ms == 750
    assert settings.payment_timeout_ms == 250
    assert settings.breaker_failures == 3
    assert settings.breaker_reset_sec == 0.5
    assert settings.webhook_secret == SECRET
    assert not settings.webhook_secret_generated
    assert settings.webhook_url == "https://gw.example.com/api/v1/payment/webhook"


@pytest.mark.parametrize(
    ("raw", "ms"),
    [("600ms", 600), ("0.6s", 600), ("600", 600), (" 1s ", 1000), ("1.5", 2), ("60s", 60_000)],
)
def test_durations_accept_ms_seconds_and_bare_milliseconds(raw: str, ms: int) -> None:
    assert parse_duration_ms("X", raw) == ms


def test_with_addresses_fills_only_the_embedded_ones() -> None:
    settings = BackendSettings.from_env({**EMBEDDED, "BACKEND_RESERVATION_API_GRPC_ADDRESS": "r:1"})
    assert settings.embedded
    filled = settings.with_addresses("127.0.0.1:5000", "127.0.0.1:5001")
    assert filled.reservation_address == "r:1"
    assert filled.payment_address == "127.0.0.1:5001"
    assert not filled.embedded


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"BACKEND_RESERVATION_API_TIMEOUT": "fast"}, "BACKEND_RESERVATION_API_TIMEOUT"),
        ({"BACKEND_RESERVATION_API_TIMEOUT": "0ms"}, "BACKEND_RESERVATION_API_TIMEOUT"),
        ({"BACKEND_PAYMENT_API_TIMEOUT": "61s"}, "BACKEND_PAYMENT_API_TIMEOUT"),
        ({"BACKEND_PAYMENT_API_TIMEOUT": "5m"}, "BACKEND_PAYMENT_API_TIMEOUT"),
        ({"BACKEND_PAYMENT_API_TIMEOUT": "-1"}, "BACKEND_PAYMENT_API_TIMEOUT"),
        ({"BACKEND_BREAKER_FAILURES": "0"}, "BACKEND_BREAKER_FAILURES"),
        ({"BACKEND_BREAKER_FAILURES": "many"}, "BACKEND_BREAKER_FAILURES"),
        ({"BACKEND_BREAKER_RESET_SEC": "nan"}, "BACKEND_BREAKER_RESET_SEC"),
        ({"BACKEND_BREAKER_RESET_SEC": "0"}, "BACKEND_BREAKER_RESET_SEC"),
        ({"BACKEND_BREAKER_RESET_SEC": "soon"}, "BACKEND_BREAKER_RESET_SEC"),
        ({"BACKEND_RESERVATION_API_GRPC_ADDRESS": "no-port"}, "GRPC_ADDRESS"),
        ({"BACKEND_RESERVATION_API_GRPC_ADDRESS": "h:99999"}, "GRPC_ADDRESS"),
        ({"BACKEND_RESERVATION_API_TLS_ENABLED": "maybe"}, "TLS_ENABLED"),
        ({"BACKEND_PAYMENT_API_GRPC_ADDRESS": "p:9092"}, "PAYMENT_WEBHOOK_SECRET"),
        ({"PAYMENT_WEBHOOK_SECRET": "short"}, "PAYMENT_WEBHOOK_SECRET"),
        ({"PAYMENT_WEBHOOK_URL": "/api/v1/payment/webhook"}, "PAYMENT_WEBHOOK_URL"),
        ({"PAYMENT_WEBHOOK_URL": "ftp://x/y"}, "PAYMENT_WEBHOOK_URL"),
        ({"SERVER_PORT": "eighty"}, "SERVER_PORT"),
        ({"BACKEND_EMBEDDED": "perhaps"}, "BACKEND_EMBEDDED"),
    ],
)
def test_invalid_values_are_refused_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        BackendSettings.from_env({**EMBEDDED, **env})


def test_grpc_targets_with_a_scheme_pass_through() -> None:
    settings = BackendSettings.from_env(
        {
            "BACKEND_RESERVATION_API_GRPC_ADDRESS": "dns:///reservation.svc:9090",
            "BACKEND_PAYMENT_API_GRPC_ADDRESS": "unix:/run/payment.sock",
            "PAYMENT_WEBHOOK_SECRET": SECRET,
        }
    )
    assert settings.reservation_address == "dns:///reservation.svc:9090"
    assert settings.payment_address == "unix:/run/payment.sock"


@pytest.mark.parametrize("environment", ["production", "staging", ""])
def test_outside_development_the_services_are_never_started_in_process_unasked(
    environment: str,
) -> None:
    """Issue 10 item 4: a production start used to run the reference services in-process,
    so two replicas each had their own inventory (seat C-5 held on both)."""
    env = {"SERVER_ENVIRONMENT": environment} if environment else {}
    with pytest.raises(ConfigError) as refused:
        BackendSettings.from_env(env)
    message = str(refused.value)
    assert "BACKEND_RESERVATION_API_GRPC_ADDRESS and BACKEND_PAYMENT_API_GRPC_ADDRESS" in message
    assert "BACKEND_EMBEDDED=true" in message
    with pytest.raises(ConfigError, match="BACKEND_PAYMENT_API_GRPC_ADDRESS required"):
        BackendSettings.from_env({**env, "BACKEND_RESERVATION_API_GRPC_ADDRESS": "r:1"})
    assert BackendSettings.from_env({**env, **EMBEDDED}).embedded


def test_development_embeds_by_default_and_can_refuse_to() -> None:
    assert BackendSettings.from_env({"SERVER_ENVIRONMENT": "development"}).embedded
    with pytest.raises(ConfigError, match="BACKEND_RESERVATION_API_GRPC_ADDRESS"):
        BackendSettings.from_env({"SERVER_ENVIRONMENT": "development", "BACKEND_EMBEDDED": "no"})
