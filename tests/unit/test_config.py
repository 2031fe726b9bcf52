"""Settings from the environment: design defaults, and a one-line refusal naming the variable."""

from __future__ import annotations

import pytest

from ticketgate.config import Settings, load_settings
from ticketgate.envparse import MIN_SECRET_LENGTH, ConfigError
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings

SECRET = "s" * MIN_SECRET_LENGTH
PROD = {"QUEUE_TOKEN_SECRET": SECRET, "BACKEND_EMBEDDED": "true"}
DEV = {"SERVER_ENVIRONMENT": "development"}


def load(**env: str) -> Settings:
    return load_settings({**DEV, **env})


def test_defaults_follow_the_design() -> None:
    settings = load_settings(PROD)
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.environment == "production"
    assert not settings.is_development
    assert not settings.dev_bypass_enabled
    assert settings.log_level == "info"
    assert not settings.redis.enabled
    assert settings.store_name == "memory (embedded)"
    queue = settings.queue
    assert queue.token_secret == SECRET.encode()
    assert queue.heartbeat_ttl_ms == 300_000
    assert queue.admission_window == 100
    assert queue.min_wait == (MinWaitRule(10, 0), MinWaitRule(50, 2_000), MinWaitRule(100, 5_000))
    assert (queue.bucket_capacity, queue.bucket_refill_per_sec) == (500, 50.0)
    assert queue.reservation_token_ttl_ms == 30_000
    assert queue.idempotency_ttl_ms == 86_400_000
    assert not queue.auto_create_events, "outside development events are registered first"
    # The dataclass default is for embedding and tests; load_settings applies the environment.
    assert queue == QueueSettings(token_secret=SECRET.encode(), auto_create_events=False)


def test_events_are_created_on_first_join_in_development_only() -> None:
    assert load().queue.auto_create_events
    assert load_settings({**PROD, "QUEUE_AUTO_CREATE_EVENTS": "true"}).queue.auto_create_events
    assert not load(QUEUE_AUTO_CREATE_EVENTS="false").queue.auto_create_events


def test_the_joins_idempotency_key_lives_idempotency_ttl_sec() -> None:
    assert load(IDEMPOTENCY_TTL_SEC="90").queue.idempotency_ttl_ms == 90_000


def test_development_defaults_enable_the_bypass_and_generate_a_secret() -> None:
    settings = load()
    assert settings.is_development
    assert settings.dev_bypass_enabled
    assert settings.token_secret_generated
    assert len(settings.queue.token_secret) >= MIN_SECRET_LENGTH
    assert load().queue.token_secret != settings.queue.token_secret


def test_every_setting_is_read() -> None:
    settings = load(
        SERVER_HOST="0.0.0.0",
        SERVER_PORT="9000",
        SERVER_WORKERS="4",
        SERVER_MAX_BODY_BYTES="4096",
        LOG_LEVEL="DEBUG",
        AUTH_DEV_BYPASS_ENABLED="false",
        QUEUE_TOKEN_SECRET=SECRET,
        REDIS_ADDRESS="redis.internal:6380",
        REDIS_USERNAME="gate",
        REDIS_PASSWORD="pw",
        REDIS_DB="3",
        REDIS_TLS_ENABLED="yes",
        REDIS_COMMAND_TIMEOUT_MS="250",
        REDIS_CONNECT_TIMEOUT_MS="750",
        REDIS_MAX_PENDING="1000",
        QUEUE_HEARTBEAT_TTL_SEC="1.5",
        QUEUE_SWEEP_INTERVAL_MS="200",
        QUEUE_SWEEP_BATCH="50",
        QUEUE_ADMISSION_WINDOW="20",
        QUEUE_MIN_WAIT="5:0, 20:0.25",
        QUEUE_BUCKET_CAPACITY="7",
        QUEUE_BUCKET_REFILL_PER_SEC="0.5",
        QUEUE_RESERVATION_TOKEN_TTL_SEC="12",
    )
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9000, 4)
    assert settings.max_body_bytes == 4096
    assert settings.log_level == "debug"
    assert not settings.dev_bypass_enabled
    assert not settings.token_secret_generated
    redis = settings.redis
    assert (redis.address, redis.username, redis.password, redis.db) == (
        "redis.internal:6380",
        "gate",
        "pw",
        3,
    )
    assert redis.tls_enabled
    assert not redis.cluster_mode
    assert (redis.command_timeout_ms, redis.connect_timeout_ms, redis.max_pending) == (
        250,
        750,
        1000,
    )
    assert settings.store_name == "redis"
    assert settings.queue == QueueSettings(
        token_secret=SECRET.encode(),
        heartbeat_ttl_ms=1_500,
        sweep_interval_ms=200,
        sweep_batch=50,
        admission_window=20,
        min_wait=(MinWaitRule(5, 0), MinWaitRule(20, 250)),
        bucket_capacity=7,
        bucket_refill_per_sec=0.5,
        reservation_token_ttl_ms=12_000,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVER_ENVIRONMENT", "test"),
        ("SERVER_PORT", "0"),
        ("SERVER_PORT", "65536"),
        ("SERVER_PORT", "http"),
        ("SERVER_WORKERS", "0"),
        ("SERVER_MAX_BODY_BYTES", "10"),
        ("LOG_LEVEL", "loud"),
        ("AUTH_DEV_BYPASS_ENABLED", "maybe"),
        ("QUEUE_TOKEN_SECRET", "too-short"),
    ],
)
def test_an_invalid_value_is_refused_in_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(**{name: value})
    message = str(refused.value)
    assert name in message
    assert "\n" not in message


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_outside_development_a_token_secret_is_required(environment: str) -> None:
    with pytest.raises(ConfigError, match="QUEUE_TOKEN_SECRET is required"):
        load_settings({"SERVER_ENVIRONMENT": environment})
    assert load_settings({"SERVER_ENVIRONMENT": environment, **PROD}).environment == environment


def test_production_is_the_default_environment() -> None:
    with pytest.raises(ConfigError, match="QUEUE_TOKEN_SECRET"):
        load_settings({})


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_the_dev_bypass_is_refused_outside_development(environment: str) -> None:
    env = {"SERVER_ENVIRONMENT": environment, **PROD, "AUTH_DEV_BYPASS_ENABLED": "true"}
    with pytest.raises(ConfigError, match="AUTH_DEV_BYPASS_ENABLED"):
        load_settings(env)


def test_several_workers_without_redis_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"SERVER_WORKERS=2 needs REDIS_ADDRESS"):
        load_settings({**PROD, "SERVER_WORKERS": "2"})
    assert load_settings({**PROD, "SERVER_WORKERS": "2", "REDIS_ADDRESS": "h:1"}).workers == 2


def test_several_workers_need_one_shared_secret() -> None:
    with pytest.raises(ConfigError, match="QUEUE_TOKEN_SECRET"):
        load(SERVER_WORKERS="2", REDIS_ADDRESS="h:1")


def test_blank_values_mean_the_default() -> None:
    settings = load(SERVER_PORT="  ", REDIS_DB="", QUEUE_MIN_WAIT=" ")
    assert settings.port == 8000
    assert settings.queue.min_wait == QueueSettings().min_wait


@pytest.mark.parametrize(("raw", "expected"), [("TRUE", True), ("on", True), ("0", False)])
def test_booleans_are_case_insensitive(raw: str, expected: bool) -> None:
    assert load(REDIS_TLS_ENABLED=raw).redis.tls_enabled is expected


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
