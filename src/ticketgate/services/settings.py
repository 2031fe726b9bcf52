"""Settings of the reference services (SERVICES_*, RESERVATION_*, PAYMENT_*), read from the
environment by `ServiceSettings.from_env`; server.py serves them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from ticketgate.digits import ascii_int
from ticketgate.envparse import (
    MIN_SECRET_LENGTH,
    ConfigError,
    check_secret,
    env_bool,
    env_decimal,
    env_environment,
    env_int,
    env_text,
)
from ticketgate.services.inventory import DEFAULT_MAX_SEATS_PER_USER


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Where the services listen and how they behave; `from_env` reads the environment."""

    inventory_address: str = "127.0.0.1:50051"
    reservation_address: str = "127.0.0.1:50052"
    payment_address: str = "127.0.0.1:50053"
    hold_ttl_sec: int = 60
    sweep_interval_sec: float = 1.0
    upstream_timeout_sec: float = 5.0
    webhook_secret: bytes = b""
    webhook_secret_generated: bool = False
    payment_delay_sec: float = 3.0
    payment_approve_delay_sec: float = 0.1
    payment_timeout_stall_sec: float = 30.0
    payment_approve_probability: float = 0.8
    payment_recovery_interval_sec: float = 1.0
    webhook_timeout_sec: float = 2.0
    webhook_max_attempts: int = 5
    webhook_backoff_sec: float = 0.2
    seed_demo_event: bool = True
    max_seats_per_user: int = DEFAULT_MAX_SEATS_PER_USER
    stop_grace_sec: float = 1.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, webhook_secret: bytes | None = None
    ) -> ServiceSettings:
        """Validate every variable; raise ConfigError naming the first bad one.

        PAYMENT_WEBHOOK_SECRET is required outside SERVER_ENVIRONMENT=development; in
        development one is generated (`webhook_secret_generated`), which a gateway in another
        process cannot know. A gateway running the services in-process passes its own secret
        as `webhook_secret` instead: then nothing is read, required or generated.
        """

        environment = env_environment(env)
        secret = env_text(env, "PAYMENT_WEBHOOK_SECRET")
        generated = False
        if webhook_secret is not None:
            if not webhook_secret:
                raise ValueError("webhook_secret must not be empty")
        elif not secret:
            if environment != "development":
                raise ConfigError(
                    "PAYMENT_WEBHOOK_SECRET is required outside development "
                    f"(at least {MIN_SECRET_LENGTH} characters)"
                )
            secret, generated = secrets.token_urlsafe(32), True
        else:
            check_secret("PAYMENT_WEBHOOK_SECRET", secret)
        defaults = cls()
        return cls(
            inventory_address=_address(
                env, "SERVICES_INVENTORY_ADDRESS", defaults.inventory_address
            ),
            reservation_address=_address(
                env, "SERVICES_RESERVATION_ADDRESS", defaults.reservation_address
            ),
            payment_address=_address(env, "SERVICES_PAYMENT_ADDRESS", defaults.payment_address),
            hold_ttl_sec=env_int(env, "RESERVATION_HOLD_TTL_SEC", 60, 1, 3600),
            sweep_interval_sec=env_decimal(env, "RESERVATION_SWEEP_INTERVAL_SEC", 1.0, 0.05, 3600),
            upstream_timeout_sec=env_decimal(env, "SERVICES_UPSTREAM_TIMEOUT_SEC", 5.0, 0.05, 600),
            webhook_secret=secret.encode() if webhook_secret is None else webhook_secret,
            webhook_secret_generated=generated,
            payment_delay_sec=env_decimal(env, "PAYMENT_DELAY_SEC", 3.0, 0, 3600),
            webhook_timeout_sec=env_decimal(env, "PAYMENT_WEBHOOK_TIMEOUT_SEC", 2.0, 0.05, 60),
            webhook_max_attempts=env_int(env, "PAYMENT_WEBHOOK_MAX_ATTEMPTS", 5, 1, 100),
            max_seats_per_user=env_int(
                env, "BOOKING_MAX_SEATS_PER_USER", DEFAULT_MAX_SEATS_PER_USER, 1, 10_000
            ),
            # The demo seat map is for trying things out: never in a real sale unless asked.
            seed_demo_event=env_bool(env, "SERVICES_SEED_DEMO_EVENT", environment == "development"),
        )


def split_address(address: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"; ValueError when malformed."""
    host, separator, port_text = address.rpartition(":")
    port = ascii_int(port_text)
    if not separator or not host or port is None:
        raise ValueError(address)
    if port > 65_535 or (host.startswith("[") != host.endswith("]")):
        raise ValueError(address)
    return host, port


def _address(env: Mapping[str, str], name: str, default: str) -> str:
    address = env_text(env, name) or default
    try:
        split_address(address)
    except ValueError:
        raise ConfigError(
            f"{name} must be host:port (port 0 picks a free one), got {address!r}"
        ) from None
    return address
