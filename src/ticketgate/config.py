"""Every setting comes from the environment, is validated once at start, and is frozen.

Names follow the reference gateway (GROUP_NAME style) so existing deployment manifests keep
working. An invalid value stops the process with a one-line reason naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ticketgate.envparse import ConfigError, env_bool, env_decimal, env_int, env_text, parse_bool
from ticketgate.redisio.settings import RedisSettings
from ticketgate.waitingroom.settings import QueueSettings, token_secret_from_env

if TYPE_CHECKING:
    from ticketgate.accounts.settings import AccountSettings
    from ticketgate.backends.settings import BackendSettings
    from ticketgate.database import DatabaseSettings
    from ticketgate.http.cors import CorsSettings
    from ticketgate.http.frontdoor import FrontdoorSettings
    from ticketgate.http.system import ReadinessSettings
    from ticketgate.middleware.idempotency import IdempotencySettings
    from ticketgate.middleware.jwt_auth import JwtSettings
    from ticketgate.middleware.ratelimit import RateLimitSettings
    from ticketgate.observability.logs import LogSettings
    from ticketgate.observability.tracing import TracingSettings
    from ticketgate.services.server import ServiceSettings

ENVIRONMENTS = ("development", "staging", "production")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    environment: str = "production"
    workers: int = 1
    max_body_bytes: int = 16_384
    body_timeout_sec: float = 10.0  # SERVER_BODY_TIMEOUT_SEC: a slower body gets 408
    shutdown_timeout_sec: int = 20  # SERVER_SHUTDOWN_TIMEOUT_SEC: graceful drain bound
    dev_bypass_enabled: bool = False
    log_level: str = "info"
    redis: RedisSettings = field(default_factory=RedisSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    token_secret_generated: bool = False
    metrics_enabled: bool = True  # OBSERVABILITY_METRICS_ENABLED: /metrics and its recorders
    replicas_expected: int = 1  # SERVER_REPLICAS_EXPECTED: >1 refuses single-process parts
    # Settings owned by the edge modules; loaded by load_settings (they import this module).
    jwt: JwtSettings | None = None
    accounts: AccountSettings | None = None
    accounts_enabled: bool = False
    database: DatabaseSettings | None = None
    rate_limit: RateLimitSettings | None = None
    idempotency: IdempotencySettings | None = None
    backends: BackendSettings | None = None
    services: ServiceSettings | None = None  # the in-process services of embedded mode
    readiness: ReadinessSettings | None = None  # READINESS_REQUIRED (http/system.py)
    tracing: TracingSettings | None = None  # OBSERVABILITY_TRACING_*, OTEL_* (tracing.py)
    logs: LogSettings | None = None  # LOG_FORMAT, LOG_ACCESS (observability/logs.py)
    cors: CorsSettings | None = None  # CORS_ALLOWED_ORIGINS (http/cors.py)
    frontdoor: FrontdoorSettings | None = None  # FRONTDOOR_* (http/frontdoor.py)

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    @property
    def store_name(self) -> str:
        return self.redis.store_name


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the frozen settings from `env` (the process environment by default)."""
    source: Mapping[str, str] = os.environ if env is None else env

    environment = env_text(source, "SERVER_ENVIRONMENT").lower() or "production"
    if environment not in ENVIRONMENTS:
        raise ConfigError(
            f"SERVER_ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}"
        )
    is_dev = environment == "development"

    log_level = env_text(source, "LOG_LEVEL").lower() or "info"
    if log_level not in {"debug", "info", "warning", "error", "critical"}:
        raise ConfigError(
            f"LOG_LEVEL must be debug, info, warning, error or critical, got {log_level!r}"
        )

    dev_bypass = env_bool(source, "AUTH_DEV_BYPASS_ENABLED", is_dev)
    if dev_bypass and not is_dev:
        raise ConfigError(
            "AUTH_DEV_BYPASS_ENABLED=true is refused outside SERVER_ENVIRONMENT=development"
        )

    token_secret, generated = token_secret_from_env(source, development=is_dev)
    redis = RedisSettings.from_env(source)
    queue = QueueSettings.from_env(source, development=is_dev, token_secret=token_secret)
    edge = _edge_settings(source)
    queue = dataclasses.replace(queue, idempotency_ttl_ms=edge["idempotency"].ttl_ms)

    settings = Settings(
        host=env_text(source, "SERVER_HOST") or "127.0.0.1",
        port=env_int(source, "SERVER_PORT", 8000, 1, 65_535),
        environment=environment,
        workers=env_int(source, "SERVER_WORKERS", 1, 1, 256),
        max_body_bytes=env_int(source, "SERVER_MAX_BODY_BYTES", 16_384, 256, 10_485_760),
        body_timeout_sec=env_decimal(source, "SERVER_BODY_TIMEOUT_SEC", 10.0, 0.1, 3600),
        shutdown_timeout_sec=env_int(source, "SERVER_SHUTDOWN_TIMEOUT_SEC", 20, 1, 3600),
        dev_bypass_enabled=dev_bypass,
        log_level=log_level,
        redis=redis,
        queue=queue,
        token_secret_generated=generated,
        metrics_enabled=env_bool(source, "OBSERVABILITY_METRICS_ENABLED", True),
        replicas_expected=env_int(source, "SERVER_REPLICAS_EXPECTED", 1, 1, 100_000),
        **edge,
    )
    check_workers(settings)
    from ticketgate.topology import check_replicas  # it imports Settings from here

    check_replicas(settings)
    return settings


def _edge_settings(source: Mapping[str, str]) -> dict[str, Any]:
    """Settings of auth, accounts, rate limiting and idempotency, each validated by its owner.

    Imported here, not at the top: those modules import `ConfigError` from this one.
    """
    from ticketgate.accounts.settings import AccountSettings
    from ticketgate.backends.settings import BackendSettings
    from ticketgate.database import DatabaseSettings
    from ticketgate.http.cors import CorsSettings
    from ticketgate.http.frontdoor import FrontdoorSettings
    from ticketgate.http.system import ReadinessSettings
    from ticketgate.middleware.idempotency import IdempotencySettings
    from ticketgate.middleware.jwt_auth import JwtSettings
    from ticketgate.middleware.ratelimit import RateLimitSettings
    from ticketgate.observability.logs import LogSettings
    from ticketgate.observability.tracing import TracingSettings
    from ticketgate.services.server import ServiceSettings

    jwt = JwtSettings.from_env(source)
    backends = BackendSettings.from_env(source)
    services = None
    if backends.embedded:
        # The services run inside the gateway: they sign webhooks with the gateway's secret
        # and listen on free loopback ports that the gateway's clients are then aimed at.
        services = ServiceSettings.from_env(
            {
                **source,
                **{
                    f"SERVICES_{name}_ADDRESS": "127.0.0.1:0"
                    for name in ("INVENTORY", "RESERVATION", "PAYMENT")
                },
            },
            webhook_secret=backends.webhook_secret.encode(),
        )
    raw_accounts = source.get("AUTH_ACCOUNTS_ENABLED", "").strip()
    accounts_enabled = (
        not jwt.jwks_endpoint
        if raw_accounts == ""
        else parse_bool("AUTH_ACCOUNTS_ENABLED", raw_accounts)
    )
    if accounts_enabled and jwt.jwks_endpoint:
        raise ConfigError(
            "AUTH_ACCOUNTS_ENABLED=true and JWT_JWKS_ENDPOINT cannot be combined yet: "
            "tokens are validated against one key set"
        )
    return {
        "jwt": jwt,
        "accounts": AccountSettings.from_env(source),
        "accounts_enabled": accounts_enabled,
        "database": DatabaseSettings.from_env(source),
        "rate_limit": RateLimitSettings.from_env(source),
        "idempotency": IdempotencySettings.from_env(source),
        "backends": backends,
        "services": services,
        "readiness": ReadinessSettings.from_env(source),
        "tracing": TracingSettings.from_env(source),
        "cors": CorsSettings.from_env(source),
        "frontdoor": FrontdoorSettings.from_env(source),
        "logs": LogSettings.from_env(
            source,
            development=source.get("SERVER_ENVIRONMENT", "").strip().lower() == "development",
        ),
    }


def check_workers(settings: Settings) -> None:
    """The embedded store lives in one process, so several workers would split the queue."""
    if settings.workers > 1 and not settings.redis.enabled:
        raise ConfigError(
            f"SERVER_WORKERS={settings.workers} needs REDIS_ADDRESS: the embedded memory "
            "store serves one worker only"
        )
    if settings.workers > 1 and settings.token_secret_generated:
        raise ConfigError("several workers need one shared QUEUE_TOKEN_SECRET; set it")
