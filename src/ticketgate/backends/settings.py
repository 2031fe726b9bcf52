"""Settings of the gRPC backends: addresses, deadlines, breaker and the payment webhook.

Empty addresses mean "embedded": the application starts the reference services in-process
and hands their loopback addresses in (`with_addresses`), so a newcomer gets the whole flow
from one command. That is the development default only: elsewhere each replica would run its
own inventory (one seat sold by two replicas), so outside SERVER_ENVIRONMENT=development the
addresses are required unless BACKEND_EMBEDDED=true asks for the in-process services.
Deadlines accept the reference gateway's spellings ("600ms", "0.6s") and a bare number of
milliseconds.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ticketgate.envparse import (
    ConfigError,
    check_secret,
    env_bool,
    env_decimal,
    env_environment,
    env_int,
    env_text,
    parse_duration_sec,
)

WEBHOOK_PATH = "/api/v1/payment/webhook"
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})")
MAX_TIMEOUT_MS = 60_000


@dataclass(frozen=True, slots=True)
class BackendSettings:
    reservation_address: str = ""
    payment_address: str = ""
    reservation_tls: bool = False
    payment_tls: bool = False
    reservation_timeout_ms: int = 600
    payment_timeout_ms: int = 400
    breaker_failures: int = 5
    breaker_reset_sec: float = 5.0
    webhook_secret: str = ""
    webhook_secret_generated: bool = False
    webhook_url: str = f"http://127.0.0.1:8000{WEBHOOK_PATH}"
    # False when PAYMENT_WEBHOOK_URL was left to its loopback default, which only an
    # in-process payment service can reach.
    webhook_url_set: bool = False

    @property
    def embedded(self) -> bool:
        """True when at least one backend is to be started in-process by the application."""
        return not self.reservation_address or not self.payment_address

    def with_addresses(self, reservation: str, payment: str) -> BackendSettings:
        """The same settings aimed at in-process services (embedded mode)."""
        return dataclasses.replace(
            self,
            reservation_address=self.reservation_address or reservation,
            payment_address=self.payment_address or payment,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BackendSettings:
        """Read BACKEND_* and PAYMENT_WEBHOOK_*; an unset or empty variable takes the default."""

        defaults = cls()
        reservation = _address(env, "BACKEND_RESERVATION_API_GRPC_ADDRESS")
        payment = _address(env, "BACKEND_PAYMENT_API_GRPC_ADDRESS")
        secret = env_text(env, "PAYMENT_WEBHOOK_SECRET")
        generated = False
        if not secret:
            if payment:
                raise ConfigError(
                    "PAYMENT_WEBHOOK_SECRET is required with BACKEND_PAYMENT_API_GRPC_ADDRESS: "
                    "the gateway must verify the payment service's webhook signatures"
                )
            # Embedded: the in-process simulator is handed the same generated secret.
            secret = secrets.token_urlsafe(32)
            generated = True
        else:
            check_secret("PAYMENT_WEBHOOK_SECRET", secret)
        # The gateway's own port (config.py parses it the same way) for the default URL.
        port = env_int(env, "SERVER_PORT", 8000, 1, 65_535)
        webhook_url = (
            env_text(env, "PAYMENT_WEBHOOK_URL") or f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        )
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"PAYMENT_WEBHOOK_URL must be an absolute http(s) URL, got {webhook_url!r}"
            )
        development = env_environment(env) == "development"
        if not env_bool(env, "BACKEND_EMBEDDED", development):
            missing = [
                name
                for name, value in (
                    ("BACKEND_RESERVATION_API_GRPC_ADDRESS", reservation),
                    ("BACKEND_PAYMENT_API_GRPC_ADDRESS", payment),
                )
                if not value
            ]
            if missing:
                raise ConfigError(
                    f"{' and '.join(missing)} required outside development, or "
                    "BACKEND_EMBEDDED=true to run the reference services in this process "
                    "(one replica only)"
                )
        return cls(
            reservation_address=reservation,
            payment_address=payment,
            reservation_tls=env_bool(env, "BACKEND_RESERVATION_API_TLS_ENABLED", False),
            payment_tls=env_bool(env, "BACKEND_PAYMENT_API_TLS_ENABLED", False),
            reservation_timeout_ms=_duration_ms(
                env, "BACKEND_RESERVATION_API_TIMEOUT", defaults.reservation_timeout_ms
            ),
            payment_timeout_ms=_duration_ms(
                env, "BACKEND_PAYMENT_API_TIMEOUT", defaults.payment_timeout_ms
            ),
            breaker_failures=env_int(
                env, "BACKEND_BREAKER_FAILURES", defaults.breaker_failures, 1, 10_000
            ),
            breaker_reset_sec=env_decimal(
                env, "BACKEND_BREAKER_RESET_SEC", defaults.breaker_reset_sec, 0.01, 3600
            ),
            webhook_secret=secret,
            webhook_secret_generated=generated,
            webhook_url=webhook_url,
            webhook_url_set=bool(env_text(env, "PAYMENT_WEBHOOK_URL")),
        )


def parse_duration_ms(name: str, raw: str) -> int:
    """`600ms`, `0.6s` or `600` (milliseconds) -> 600; between 1 ms and 60 s."""
    example = "a duration like '600ms', '0.6s' or '600',"
    seconds = parse_duration_sec(
        name, raw, 0.001, MAX_TIMEOUT_MS / 1000, bare_unit="ms", example=example
    )
    return round(seconds * 1000)


def _duration_ms(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env_text(env, name)
    return parse_duration_ms(name, raw) if raw else default


def _address(env: Mapping[str, str], name: str) -> str:
    """host:port, [v6]:port, or a gRPC target with a scheme (dns:///..., unix:...)."""
    raw = env_text(env, name)
    if not raw or ":///" in raw or raw.startswith("unix:"):
        return raw
    match = _HOST_PORT.fullmatch(raw)
    if match is None or not 1 <= int(match.group("port")) <= 65_535:
        raise ConfigError(f"{name} must be host:port, got {raw!r}")
    return raw
