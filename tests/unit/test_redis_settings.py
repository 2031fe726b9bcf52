"""REDIS_*: where Redis is and how long to wait for it, refused at start in one line."""

from __future__ import annotations

import pytest

from ticketgate.envparse import ConfigError
from ticketgate.redisio.settings import RedisSettings


def test_no_address_means_the_embedded_store() -> None:
    settings = RedisSettings.from_env({})
    assert not settings.enabled
    assert settings.store_name == "memory (embedded)"
    assert RedisSettings.from_env({"REDIS_ADDRESS": "h:1"}).store_name == "redis"


def test_cluster_mode_is_named_as_the_store() -> None:
    settings = RedisSettings.from_env(
        {"REDIS_ADDRESS": "a:7000,b:7001", "REDIS_CLUSTER_MODE": "true"}
    )
    assert settings.store_name == "redis-cluster"


@pytest.mark.parametrize(
    "address", ["127.0.0.1:6379", "[::1]:6379", "redis://h:1/0", "rediss://u:p@h:6380", "unix:///s"]
)
def test_accepted_redis_addresses(address: str) -> None:
    assert RedisSettings.from_env({"REDIS_ADDRESS": address}).address == address


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_ADDRESS", "localhost"),
        ("REDIS_ADDRESS", ":6379"),
        ("REDIS_ADDRESS", "h:99999"),
        ("REDIS_ADDRESS", "h:port"),
        ("REDIS_ADDRESS", "http://h:6379"),
        ("REDIS_DB", "16"),
        ("REDIS_DB", "zero"),
        ("REDIS_TLS_ENABLED", "2"),
        ("REDIS_CLUSTER_MODE", "cluster"),
        ("REDIS_COMMAND_TIMEOUT_MS", "5"),
        ("REDIS_COMMAND_TIMEOUT_MS", "1.5"),
        ("REDIS_CONNECT_TIMEOUT_MS", "0"),
        ("REDIS_MAX_PENDING", "0"),
    ],
)
def test_an_invalid_value_is_refused_in_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RedisSettings.from_env({name: value})
    message = str(refused.value)
    assert name in message
    assert "\n" not in message


def test_cluster_mode_needs_db_zero() -> None:
    env = {"REDIS_ADDRESS": "h:1", "REDIS_CLUSTER_MODE": "true", "REDIS_DB": "2"}
    with pytest.raises(ConfigError, match="REDIS_DB"):
        RedisSettings.from_env(env)


def test_a_password_in_the_address_is_kept_out_of_the_refusal() -> None:
    with pytest.raises(ConfigError) as refused:
        RedisSettings.from_env({"REDIS_ADDRESS": "http://user:secret@h:6379"})
    assert "secret" not in str(refused.value)
    assert "***" in str(refused.value)
