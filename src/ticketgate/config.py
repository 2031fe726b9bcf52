"""Every setting comes from the environment, is validated once at start, and is frozen.

Names follow the reference gateway (GROUP_NAME style) so existing deployment manifests keep
working. An invalid value stops the process with a one-line reason naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ticketgate.digits import ascii_decimal, ascii_int

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
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
MIN_SECRET_LENGTH = 32


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line fit for a terminal."""


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
    # How long a join's Idempotency-Key is replayed: IDEMPOTENCY_TTL_SEC, like every route's.
    idempotency_ttl_ms: int = 86_400_000
    # QUEUE_AUTO_CREATE_EVENTS: a join may open a queue for any event id. load_settings
    # turns it on in development only; elsewhere an operator registers events first.
    auto_create_events: bool = True


@dataclass(frozen=True, slots=True)
class RedisSettings:
    address: str = ""
    username: str = ""
    password: str = ""
    db: int = 0
    tls_enabled: bool = False
    cluster_mode: bool = False
    command_timeout_ms: int = 500
    connect_timeout_ms: int = 500
    max_pending: int = 20_000

    @property
    def enabled(self) -> bool:
        return bool(self.address)


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
        if not self.redis.enabled:
            return "memory (embedded)"
        return "redis-cluster" if self.redis.cluster_mode else "redis"


def _int(name: str, raw: str, low: int, high: int) -> int:
    text = raw.strip()
    digits = ascii_int(text.removeprefix("-"))
    if digits is None:
        raise ConfigError(f"{name} must be an integer, got {raw!r}")
    value = -digits if text.startswith("-") else digits
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A true/false setting (1/0, true/false, yes/no, on/off); `default` when unset or empty."""
    raw = env.get(name, "").strip()
    return default if raw == "" else _bool(name, raw)


def env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer setting in [low, high]; `default` when unset or empty. Every module's
    settings use it, so every integer variable is refused with the same one-line reason."""
    raw = env.get(name, "").strip()
    return default if raw == "" else _int(name, raw, low, high)


def _float(name: str, raw: str, low: float, high: float) -> float:
    value = ascii_decimal(raw.strip())
    if value is None:
        raise ConfigError(f"{name} must be a number, got {raw!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _min_wait(name: str, raw: str) -> tuple[MinWaitRule, ...]:
    """Parse `10:0,50:2,100:5` (position:seconds) into ordered rules."""
    rules: list[MinWaitRule] = []
    for part in raw.split(","):
        pos_text, _, sec_text = part.strip().partition(":")
        if not sec_text:
            raise ConfigError(f"{name} must look like '10:0,50:2,100:5', got {raw!r}")
        position = _int(name, pos_text, 1, 1_000_000)
        wait_ms = int(_float(name, sec_text, 0, 3600) * 1000)
        rules.append(MinWaitRule(position, wait_ms))
    positions = [rule.max_position for rule in rules]
    if positions != sorted(positions) or len(set(positions)) != len(positions):
        raise ConfigError(f"{name} positions must be strictly increasing, got {raw!r}")
    return tuple(rules)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the frozen settings from `env` (the process environment by default)."""
    source: Mapping[str, str] = os.environ if env is None else env

    def get(name: str, default: str = "") -> str:
        return source.get(name, default).strip()

    def opt(name: str, parse: Callable[[str, str], Any], default: Any) -> Any:
        raw = get(name)
        return default if raw == "" else parse(name, raw)

    environment = get("SERVER_ENVIRONMENT", "production").lower() or "production"
    if environment not in ENVIRONMENTS:
        raise ConfigError(
            f"SERVER_ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}"
        )
    is_dev = environment == "development"

    log_level = get("LOG_LEVEL", "info").lower() or "info"
    if log_level not in {"debug", "info", "warning", "error", "critical"}:
        raise ConfigError(
            f"LOG_LEVEL must be debug, info, warning, error or critical, got {log_level!r}"
        )

    dev_bypass = opt("AUTH_DEV_BYPASS_ENABLED", _bool, is_dev)
    if dev_bypass and not is_dev:
        raise ConfigError(
            "AUTH_DEV_BYPASS_ENABLED=true is refused outside SERVER_ENVIRONMENT=development"
        )

    secret_text = get("QUEUE_TOKEN_SECRET")
    generated = False
    if not secret_text:
        if not is_dev:
            raise ConfigError(
                f"QUEUE_TOKEN_SECRET is required outside development "
                f"(at least {MIN_SECRET_LENGTH} characters)"
            )
        secret_text = secrets.token_urlsafe(32)
        generated = True
    elif len(secret_text) < MIN_SECRET_LENGTH:
        raise ConfigError(f"QUEUE_TOKEN_SECRET must be at least {MIN_SECRET_LENGTH} characters")

    redis = RedisSettings(
        address=get("REDIS_ADDRESS"),
        username=get("REDIS_USERNAME"),
        password=get("REDIS_PASSWORD"),
        db=opt("REDIS_DB", lambda n, r: _int(n, r, 0, 15), 0),
        tls_enabled=opt("REDIS_TLS_ENABLED", _bool, False),
        cluster_mode=opt("REDIS_CLUSTER_MODE", _bool, False),
        command_timeout_ms=opt(
            "REDIS_COMMAND_TIMEOUT_MS", lambda n, r: _int(n, r, 10, 60_000), 500
        ),
        connect_timeout_ms=opt(
            "REDIS_CONNECT_TIMEOUT_MS", lambda n, r: _int(n, r, 10, 60_000), 500
        ),
        max_pending=opt("REDIS_MAX_PENDING", lambda n, r: _int(n, r, 1, 1_000_000), 20_000),
    )
    if redis.address:
        _validate_redis_address(redis.address, cluster=redis.cluster_mode, tls=redis.tls_enabled)
    if redis.cluster_mode and redis.db != 0:
        raise ConfigError("REDIS_DB must be 0 when REDIS_CLUSTER_MODE=true")

    if get("QUEUE_BYPASS_TOP"):
        raise ConfigError(
            "QUEUE_BYPASS_TOP is retired: admission follows the serving frontier, which serves"
            " the head of the line first without borrowing past the bucket; remove it"
        )
    window = opt("QUEUE_ADMISSION_WINDOW", lambda n, r: _int(n, r, 1, 100_000), 100)
    queue = QueueSettings(
        token_secret=secret_text.encode(),
        heartbeat_ttl_ms=int(
            opt("QUEUE_HEARTBEAT_TTL_SEC", lambda n, r: _float(n, r, 0.5, 86_400), 300.0) * 1000
        ),
        sweep_interval_ms=opt(
            "QUEUE_SWEEP_INTERVAL_MS", lambda n, r: _int(n, r, 50, 600_000), 1000
        ),
        sweep_batch=opt("QUEUE_SWEEP_BATCH", lambda n, r: _int(n, r, 1, 100_000), 500),
        admission_window=window,
        min_wait=opt("QUEUE_MIN_WAIT", _min_wait, QueueSettings().min_wait),
        bucket_capacity=opt("QUEUE_BUCKET_CAPACITY", lambda n, r: _int(n, r, 1, 10_000_000), 500),
        bucket_refill_per_sec=opt(
            "QUEUE_BUCKET_REFILL_PER_SEC", lambda n, r: _float(n, r, 0.001, 1_000_000), 50.0
        ),
        reservation_token_ttl_ms=int(
            opt("QUEUE_RESERVATION_TOKEN_TTL_SEC", lambda n, r: _float(n, r, 1, 3600), 30.0) * 1000
        ),
        auto_create_events=env_bool(source, "QUEUE_AUTO_CREATE_EVENTS", is_dev),
    )
    edge = _edge_settings(source)
    queue = dataclasses.replace(queue, idempotency_ttl_ms=edge["idempotency"].ttl_ms)

    settings = Settings(
        host=get("SERVER_HOST", "127.0.0.1") or "127.0.0.1",
        port=opt("SERVER_PORT", lambda n, r: _int(n, r, 1, 65_535), 8000),
        environment=environment,
        workers=opt("SERVER_WORKERS", lambda n, r: _int(n, r, 1, 256), 1),
        max_body_bytes=opt(
            "SERVER_MAX_BODY_BYTES", lambda n, r: _int(n, r, 256, 10_485_760), 16_384
        ),
        body_timeout_sec=opt("SERVER_BODY_TIMEOUT_SEC", lambda n, r: _float(n, r, 0.1, 3600), 10.0),
        shutdown_timeout_sec=opt(
            "SERVER_SHUTDOWN_TIMEOUT_SEC", lambda n, r: _int(n, r, 1, 3600), 20
        ),
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
    from ticketgate.topology import check_replicas  # it imports ConfigError from here

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
        else _bool("AUTH_ACCOUNTS_ENABLED", raw_accounts)
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


def _validate_redis_address(address: str, *, cluster: bool, tls: bool) -> None:
    """Refuse, at start, every address the client would read differently than the operator.

    redis-py's URL parser falls back to 127.0.0.1:6379 for a URL without a host, so
    `redis://` or `unix://` without a path would silently reach whatever Redis listens there.
    """
    if "://" in address:
        scheme = address.partition("://")[0].lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"REDIS_ADDRESS scheme must be redis, rediss or unix: {_redacted(address)!r}"
            )
        parts = urlsplit(address)
        if scheme == "unix":
            if not parts.path.startswith("/") or parts.netloc:
                raise ConfigError(
                    f"REDIS_ADDRESS unix:// needs an absolute socket path "
                    f"(unix:///run/redis.sock), got {_redacted(address)!r}"
                )
            if cluster:
                raise ConfigError("REDIS_CLUSTER_MODE=true needs host:port addresses, not unix://")
            if tls:
                raise ConfigError("REDIS_TLS_ENABLED=true cannot be used with a unix:// socket")
            return
        if not parts.hostname:
            raise ConfigError(
                f"REDIS_ADDRESS must name a host (redis://host:6379/0), got {_redacted(address)!r}"
            )
        try:
            port = parts.port  # raises ValueError for a non-numeric or too large port
        except ValueError:
            port = 0
        if port == 0:
            raise ConfigError(f"REDIS_ADDRESS port must be 1-65535, got {_redacted(address)!r}")
        return
    nodes = address.split(",")
    if len(nodes) > 1 and not cluster:
        raise ConfigError(
            f"REDIS_ADDRESS lists {len(nodes)} addresses, which only REDIS_CLUSTER_MODE=true "
            "accepts (the seed nodes of a cluster); a single Redis is one host:port"
        )
    for part in nodes:
        host, sep, port_text = part.strip().rpartition(":")
        if not sep or not host:
            raise ConfigError(f"REDIS_ADDRESS must be host:port, got {address!r}")
        _int("REDIS_ADDRESS port", port_text, 1, 65_535)


def _redacted(address: str) -> str:
    """The address without the password a URL may carry (error messages reach logs)."""
    parts = urlsplit(address)
    if parts.password is None:
        return address
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
