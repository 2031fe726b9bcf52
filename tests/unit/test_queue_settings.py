"""QUEUE_*: the waiting room's tunables, refused at start in one line naming the variable."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from ticketgate.envparse import MIN_SECRET_LENGTH, ConfigError
from ticketgate.waitingroom.settings import MinWaitRule, QueueSettings, token_secret_from_env

SECRET = b"s" * MIN_SECRET_LENGTH


def load(env: Mapping[str, str], *, development: bool = True) -> QueueSettings:
    return QueueSettings.from_env(env, development=development, token_secret=SECRET)


def test_unset_variables_take_the_defaults_readme_states() -> None:
    assert load({}, development=False) == QueueSettings(
        token_secret=SECRET, auto_create_events=False
    )
    assert load({}).auto_create_events, "a join opens its event in development"


def test_min_wait_reads_positions_and_seconds() -> None:
    rules = load({"QUEUE_MIN_WAIT": "5:0, 20:0.25"}).min_wait
    assert rules == (MinWaitRule(5, 0), MinWaitRule(20, 250))


def test_the_retired_bypass_setting_is_refused_with_its_reason() -> None:
    with pytest.raises(ConfigError, match="QUEUE_BYPASS_TOP is retired"):
        load({"QUEUE_BYPASS_TOP": "10"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("QUEUE_HEARTBEAT_TTL_SEC", "0.1"),
        ("QUEUE_HEARTBEAT_TTL_SEC", "nan"),
        ("QUEUE_HEARTBEAT_TTL_SEC", "soon"),
        ("QUEUE_SWEEP_INTERVAL_MS", "10"),
        ("QUEUE_SWEEP_BATCH", "0"),
        ("QUEUE_ADMISSION_WINDOW", "0"),
        ("QUEUE_MIN_WAIT", "10"),
        ("QUEUE_MIN_WAIT", "10:0,"),
        ("QUEUE_MIN_WAIT", "x:1,100:5"),
        ("QUEUE_MIN_WAIT", "10:-1,100:5"),
        ("QUEUE_MIN_WAIT", "10:inf,100:5"),
        ("QUEUE_MIN_WAIT", "50:0,10:2,100:5"),
        ("QUEUE_MIN_WAIT", "10:0,10:2,100:5"),
        ("QUEUE_BUCKET_CAPACITY", "0"),
        ("QUEUE_BUCKET_REFILL_PER_SEC", "0"),
        ("QUEUE_BUCKET_REFILL_PER_SEC", "-5"),
        ("QUEUE_RESERVATION_TOKEN_TTL_SEC", "0.5"),
    ],
)
def test_an_invalid_value_is_refused_in_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load({name: value})
    message = str(refused.value)
    assert name in message
    assert "\n" not in message


def test_the_token_secret_is_generated_in_development_only() -> None:
    secret, generated = token_secret_from_env({}, development=True)
    assert generated
    assert len(secret) >= MIN_SECRET_LENGTH
    assert token_secret_from_env({"QUEUE_TOKEN_SECRET": SECRET.decode()}, development=False) == (
        SECRET,
        False,
    )
    with pytest.raises(ConfigError, match="QUEUE_TOKEN_SECRET is required outside development"):
        token_secret_from_env({}, development=False)
    with pytest.raises(ConfigError, match=f"at least {MIN_SECRET_LENGTH} characters"):
        token_secret_from_env({"QUEUE_TOKEN_SECRET": "short"}, development=True)
