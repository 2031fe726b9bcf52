"""Where Redis is and how long to wait for it: RedisSettings and the REDIS_* variables.

An empty REDIS_ADDRESS means no Redis (the embedded memory store). Every address the client
would read differently than the operator is refused at start, not at the first command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ticketgate.envparse import ConfigError, env_bool, env_int, env_text, parse_int


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

    @property
    def store_name(self) -> str:
        """The queue store these settings select, as /version and the start line name it."""
        if not self.enabled:
            return "memory (embedded)"
        return "redis-cluster" if self.cluster_mode else "redis"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RedisSettings:
        """Read REDIS_*; an unset or empty variable takes the default."""
        settings = cls(
            address=env_text(env, "REDIS_ADDRESS"),
            username=env_text(env, "REDIS_USERNAME"),
            password=env_text(env, "REDIS_PASSWORD"),
            db=env_int(env, "REDIS_DB", 0, 0, 15),
            tls_enabled=env_bool(env, "REDIS_TLS_ENABLED", False),
            cluster_mode=env_bool(env, "REDIS_CLUSTER_MODE", False),
            command_timeout_ms=env_int(env, "REDIS_COMMAND_TIMEOUT_MS", 500, 10, 60_000),
            connect_timeout_ms=env_int(env, "REDIS_CONNECT_TIMEOUT_MS", 500, 10, 60_000),
            max_pending=env_int(env, "REDIS_MAX_PENDING", 20_000, 1, 1_000_000),
        )
        if settings.address:
            _validate_address(
                settings.address, cluster=settings.cluster_mode, tls=settings.tls_enabled
            )
        if settings.cluster_mode and settings.db != 0:
            raise ConfigError("REDIS_DB must be 0 when REDIS_CLUSTER_MODE=true")
        return settings


def _validate_address(address: str, *, cluster: bool, tls: bool) -> None:
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
        parse_int("REDIS_ADDRESS port", port_text, 1, 65_535)


def _redacted(address: str) -> str:
    """The address without the password a URL may carry (error messages reach logs)."""
    parts = urlsplit(address)
    if parts.password is None:
        return address
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
