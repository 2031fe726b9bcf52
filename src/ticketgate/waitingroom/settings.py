"""Tunables of the waiting room and the QUEUE_* variables they come from.

Defaults are the ones README's configuration table states; the dataclass defaults are for
embedding and tests, `from_env` applies the environment (some defaults depend on
SERVER_ENVIRONMENT, which the composition root reads and passes in as `development`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from ticketgate.envparse import (
    MIN_SECRET_LENGTH,
    ConfigError,
    check_secret,
    env_bool,
    env_decimal,
    env_int,
    env_text,
    parse_decimal,
    parse_int,
)


@dataclass(frozen=True, slots=True)
class MinWaitRule:
    """Admission requires `min_wait_ms` of waiting for positions up to `max_position`."""

    max_position: int
    min_wait_ms: int


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Tunables of the waiting room; defaults are the ones README's configuration table states."""

    token_secret: bytes = b""
    heartbeat_ttl_ms: int = 300_000
    sweep_interval_ms: int = 1_000
    sweep_batch: int = 500
    admission_window: int = 100
    min_wait: tuple[MinWaitRule, ...] = (
        MinWaitRule(10, 0),
        MinWaitRule(50, 2_000),
        MinWaitRule(100, 5_000),
    )
    bucket_capacity: int = 500
    bucket_refill_per_sec: float = 50.0
    reservation_token_ttl_ms: int = 30_000
    # How long a join's Idempotency-Key is replayed: IDEMPOTENCY_TTL_SEC, like every route's
    # (the composition root copies it from the idempotency settings).
    idempotency_ttl_ms: int = 86_400_000
    # QUEUE_AUTO_CREATE_EVENTS: a join may open a queue for any event id. `from_env` turns it
    # on in development only; elsewhere an operator registers events first.
    auto_create_events: bool = True

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, development: bool, token_secret: bytes
    ) -> QueueSettings:
        """Read QUEUE_*; `token_secret` comes from `token_secret_from_env`."""
        if env_text(env, "QUEUE_BYPASS_TOP"):
            raise ConfigError(
                "QUEUE_BYPASS_TOP is retired: admission follows the serving frontier, which"
                " serves the head of the line first without borrowing past the bucket; remove it"
            )
        raw_min_wait = env_text(env, "QUEUE_MIN_WAIT")
        return cls(
            token_secret=token_secret,
            heartbeat_ttl_ms=int(
                env_decimal(env, "QUEUE_HEARTBEAT_TTL_SEC", 300, 0.5, 86_400) * 1000
            ),
            sweep_interval_ms=env_int(env, "QUEUE_SWEEP_INTERVAL_MS", 1000, 50, 600_000),
            sweep_batch=env_int(env, "QUEUE_SWEEP_BATCH", 500, 1, 100_000),
            admission_window=env_int(env, "QUEUE_ADMISSION_WINDOW", 100, 1, 100_000),
            min_wait=(
                parse_min_wait("QUEUE_MIN_WAIT", raw_min_wait) if raw_min_wait else cls().min_wait
            ),
            bucket_capacity=env_int(env, "QUEUE_BUCKET_CAPACITY", 500, 1, 10_000_000),
            bucket_refill_per_sec=env_decimal(
                env, "QUEUE_BUCKET_REFILL_PER_SEC", 50.0, 0.001, 1_000_000
            ),
            reservation_token_ttl_ms=int(
                env_decimal(env, "QUEUE_RESERVATION_TOKEN_TTL_SEC", 30, 1, 3600) * 1000
            ),
            auto_create_events=env_bool(env, "QUEUE_AUTO_CREATE_EVENTS", development),
        )


def token_secret_from_env(env: Mapping[str, str], *, development: bool) -> tuple[bytes, bool]:
    """QUEUE_TOKEN_SECRET, and whether it was generated (allowed in development only: tokens
    then die with the process and no second worker can check them)."""
    text = env_text(env, "QUEUE_TOKEN_SECRET")
    if text:
        check_secret("QUEUE_TOKEN_SECRET", text)
        return text.encode(), False
    if not development:
        raise ConfigError(
            f"QUEUE_TOKEN_SECRET is required outside development "
            f"(at least {MIN_SECRET_LENGTH} characters)"
        )
    return secrets.token_urlsafe(32).encode(), True


def parse_min_wait(name: str, raw: str) -> tuple[MinWaitRule, ...]:
    """Parse `10:0,50:2,100:5` (position:seconds) into ordered rules."""
    rules: list[MinWaitRule] = []
    for part in raw.split(","):
        pos_text, _, sec_text = part.strip().partition(":")
        if not sec_text:
            raise ConfigError(f"{name} must look like '10:0,50:2,100:5', got {raw!r}")
        position = parse_int(name, pos_text, 1, 1_000_000)
        wait_ms = int(parse_decimal(name, sec_text, 0, 3600) * 1000)
        rules.append(MinWaitRule(position, wait_ms))
    positions = [rule.max_position for rule in rules]
    if positions != sorted(positions) or len(set(positions)) != len(positions):
        raise ConfigError(f"{name} positions must be strictly increasing, got {raw!r}")
    return tuple(rules)
