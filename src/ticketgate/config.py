"""Every setting comes from the environment, is validated once at start, and is frozen.

This is the composition root of the settings: each package owns its settings class and reads
its own variables (`<package>/settings.py`, parsed with `envparse`), and this module, the only
one that imports them all, gathers them into `Settings` and checks the rules that span
packages (workers and the embedded store, accounts and JWKS, and which parts of a
configuration live in one process only, which a fleet of replicas must not have).

Names follow the reference gateway (GROUP_NAME style) so existing deployment manifests keep
working. An invalid value stops the process with a one-line reason naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ticketgate.accounts.settings import AccountSettings
from ticketgate.backends.settings import BackendSettings
from ticketgate.database.settings import DatabaseSettings
from ticketgate.envparse import (
    ConfigError,
    env_bool,
    env_decimal,
    env_environment,
    env_int,
    env_text,
)
from ticketgate.http.settings import CorsSettings, FrontdoorSettings, ReadinessSettings
from ticketgate.middleware.settings import IdempotencySettings, JwtSettings, RateLimitSettings
from ticketgate.observability.settings import LogSettings, TracingSettings, log_level_from_env
from ticketgate.redisio.settings import RedisSettings
from ticketgate.services.settings import ServiceSettings
from ticketgate.waitingroom.settings import QueueSettings, token_secret_from_env


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
    jwt: JwtSettings = field(default_factory=JwtSettings)  # JWT_* (middleware)
    accounts: AccountSettings = field(default_factory=AccountSettings)  # AUTH_* (accounts)
    accounts_enabled: bool = False  # AUTH_ACCOUNTS_ENABLED: the built-in accounts serve
    database: DatabaseSettings = field(default_factory=DatabaseSettings)  # DATABASE_*
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)  # RATE_LIMIT_*
    idempotency: IdempotencySettings = field(default_factory=IdempotencySettings)
    backends: BackendSettings = field(default_factory=BackendSettings)  # BACKEND_*, PAYMENT_*
    # The reference services run in this process only in embedded mode (no BACKEND_*
    # addresses): None means they run elsewhere, which is a fact of the deployment, not an
    # unread setting.
    services: ServiceSettings | None = None
    readiness: ReadinessSettings = field(default_factory=ReadinessSettings)  # READINESS_*
    tracing: TracingSettings = field(default_factory=TracingSettings)  # OBSERVABILITY_*, OTEL_*
    logs: LogSettings = field(default_factory=LogSettings)  # LOG_FORMAT, LOG_ACCESS
    cors: CorsSettings = field(default_factory=CorsSettings)  # CORS_ALLOWED_ORIGINS
    frontdoor: FrontdoorSettings = field(default_factory=FrontdoorSettings)  # FRONTDOOR_*

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    @property
    def store_name(self) -> str:
        return self.redis.store_name


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the frozen settings from `env` (the process environment by default)."""
    source: Mapping[str, str] = os.environ if env is None else env

    environment = env_environment(source)
    is_dev = environment == "development"

    log_level = log_level_from_env(source)

    dev_bypass = env_bool(source, "AUTH_DEV_BYPASS_ENABLED", is_dev)
    if dev_bypass and not is_dev:
        raise ConfigError(
            "AUTH_DEV_BYPASS_ENABLED=true is refused outside SERVER_ENVIRONMENT=development"
        )

    token_secret, generated = token_secret_from_env(source, development=is_dev)
    redis = RedisSettings.from_env(source)
    queue = QueueSettings.from_env(source, development=is_dev, token_secret=token_secret)
    jwt = JwtSettings.from_env(source)
    accounts_enabled = _accounts_enabled(source, jwt)
    backends = BackendSettings.from_env(source)
    idempotency = IdempotencySettings.from_env(source)
    queue = dataclasses.replace(queue, idempotency_ttl_ms=idempotency.ttl_ms)

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
        jwt=jwt,
        accounts=AccountSettings.from_env(source),
        accounts_enabled=accounts_enabled,
        database=DatabaseSettings.from_env(source),
        rate_limit=RateLimitSettings.from_env(source),
        idempotency=idempotency,
        backends=backends,
        services=_embedded_services(source, backends),
        readiness=ReadinessSettings.from_env(source),
        tracing=TracingSettings.from_env(source),
        cors=CorsSettings.from_env(source),
        frontdoor=FrontdoorSettings.from_env(source),
        logs=LogSettings.from_env(source, development=is_dev),
    )
    check_workers(settings)
    check_replicas(settings)
    return settings


def _embedded_services(
    source: Mapping[str, str], backends: BackendSettings
) -> ServiceSettings | None:
    """The in-process services' settings in embedded mode, else None.

    They sign webhooks with the gateway's secret and listen on free loopback ports that the
    gateway's clients are then aimed at.
    """
    if not backends.embedded:
        return None
    loopback = {
        f"SERVICES_{name}_ADDRESS": "127.0.0.1:0"
        for name in ("INVENTORY", "RESERVATION", "PAYMENT")
    }
    return ServiceSettings.from_env(
        {**source, **loopback}, webhook_secret=backends.webhook_secret.encode()
    )


def _accounts_enabled(source: Mapping[str, str], jwt: JwtSettings) -> bool:
    """AUTH_ACCOUNTS_ENABLED; by default the built-in accounts serve unless a JWKS does."""
    enabled = env_bool(source, "AUTH_ACCOUNTS_ENABLED", not jwt.jwks_endpoint)
    if enabled and jwt.jwks_endpoint:
        raise ConfigError(
            "AUTH_ACCOUNTS_ENABLED=true and JWT_JWKS_ENDPOINT cannot be combined yet: "
            "tokens are validated against one key set"
        )
    return enabled


def check_workers(settings: Settings) -> None:
    """The embedded store lives in one process, so several workers would split the queue."""
    if settings.workers > 1 and not settings.redis.enabled:
        raise ConfigError(
            f"SERVER_WORKERS={settings.workers} needs REDIS_ADDRESS: the embedded memory "
            "store serves one worker only"
        )
    if settings.workers > 1 and settings.token_secret_generated:
        raise ConfigError("several workers need one shared QUEUE_TOKEN_SECRET; set it")


# ------------------------------------------------------------ single-process components
# A gateway replica is stateless only when everything a second replica needs is shared (queue,
# idempotency keys and rate limits in Redis; accounts and bookings in PostgreSQL; the booking
# services out of process) or derived from configuration (secrets, the signing key). Each part
# that is not is a *single-process component*: right for one process, wrong for a fleet, where
# two replicas would each sell seat C-5 or refuse each other's login tokens. Outside development
# the CLI names every such component at start; with `SERVER_REPLICAS_EXPECTED` > 1 any of them
# stops the start instead.


SQLITE_PREFIX = "sqlite"


def uses_database(settings: Settings) -> bool:
    """Accounts or in-process services need the database; the queue alone does not."""
    return settings.accounts_enabled or settings.services is not None


def single_process_components(settings: Settings) -> list[str]:
    """Each component of `settings` that one process owns, as a short phrase naming the
    setting that would share it; [] for a configuration every replica can run alike."""
    found: list[str] = []
    if not settings.redis.enabled:
        found.append(
            "embedded memory store (queue, idempotency keys, rate limits; set REDIS_ADDRESS)"
        )
    if settings.services is not None:
        found.append(
            "in-process reference services (own inventory and payments; set BACKEND_*_GRPC_ADDRESS)"
        )
    database = settings.database
    if uses_database(settings) and database.url.startswith(SQLITE_PREFIX):
        path = database.url.partition(":///")[2]
        found.append(f"SQLite database {path} (set DATABASE_URL=postgresql://...)")
        if settings.accounts_enabled and settings.accounts.signing_key_source == "database":
            found.append(
                "token signing key generated into that SQLite file "
                "(set AUTH_SIGNING_KEY_FILE, or share the database)"
            )
    if settings.token_secret_generated:
        found.append("generated QUEUE_TOKEN_SECRET (set it)")
    backends = settings.backends
    if backends.webhook_secret_generated:
        found.append("generated PAYMENT_WEBHOOK_SECRET (set it)")
    if settings.services is None and not backends.webhook_url_set:
        found.append(
            f"PAYMENT_WEBHOOK_URL defaulting to {backends.webhook_url}: the payment service "
            "would post outcomes to its own host (set it to the gateways' load-balanced URL)"
        )
    return found


def check_replicas(settings: Settings) -> None:
    """Refuse a fleet configuration in which replicas would silently diverge."""
    if settings.replicas_expected <= 1:
        return
    components = single_process_components(settings)
    if components:
        raise ConfigError(
            f"SERVER_REPLICAS_EXPECTED={settings.replicas_expected} but these would differ "
            f"between replicas: {'; '.join(components)}"
        )


def single_process_warning(settings: Settings) -> str | None:
    """The start-up warning outside development; None when there is nothing to say."""
    if settings.is_development:
        return None
    components = single_process_components(settings)
    if not components:
        return None
    return (
        "single-process components in use (fine for one replica, wrong for several; "
        f"SERVER_REPLICAS_EXPECTED>1 refuses them): {'; '.join(components)}"
    )
