"""Where the database lives (DATABASE_URL or DATABASE_PATH) and how many connections a
process may hold (DATABASE_*): DatabaseSettings, and the URL normalisation that maps the
URLs people paste onto the async drivers we ship.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ticketgate.envparse import ConfigError, env_int, env_text

DEFAULT_DATABASE_PATH = "./var/ticketgate.db"
SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Where the database lives and how many connections a process may hold."""

    url: str = ""
    pool_size: int = 10
    busy_timeout_ms: int = 5_000
    connect_timeout_sec: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DatabaseSettings:
        """Read DATABASE_URL (or DATABASE_PATH for the default SQLite file) and the pool knobs."""
        url = normalize_database_url(env_text(env, "DATABASE_URL"), "DATABASE_URL")
        if not url:
            raw_path = env_text(env, "DATABASE_PATH") or DEFAULT_DATABASE_PATH
            path = Path(raw_path).expanduser().resolve()
            url = URL.create(SQLITE_DRIVER, database=str(path)).render_as_string()
        return cls(
            url=url,
            pool_size=env_int(env, "DATABASE_POOL_SIZE", 10, 1, 1_000),
            busy_timeout_ms=env_int(env, "DATABASE_BUSY_TIMEOUT_MS", 5_000, 0, 600_000),
        )


def normalize_database_url(raw: str, name: str = "DATABASE_URL") -> str:
    """Map the URLs people paste (postgres://, sqlite:///) onto the async drivers we ship.

    Returns "" for an empty input; raises ConfigError for anything we cannot serve.
    """
    if not raw:
        return ""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"{name} is not a database URL: {_redact(raw)!r}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend in {"postgres", "postgresql"}:
        if driver not in {"", "asyncpg"}:
            raise ConfigError(f"{name}: only the asyncpg driver is installed, got {driver!r}")
        if not url.database:
            raise ConfigError(f"{name} must name a database, e.g. postgresql://host/ticketgate")
        url = url.set(drivername=POSTGRES_DRIVER)
        if "sslmode" in url.query:
            # libpq spelling, common in hosted-database URLs; asyncpg calls it `ssl`.
            mode = url.query["sslmode"]
            url = url.difference_update_query(["sslmode"])
            if "ssl" not in url.query:
                url = url.update_query_dict({"ssl": mode if isinstance(mode, str) else mode[0]})
    elif backend == "sqlite":
        if driver not in {"", "aiosqlite"}:
            raise ConfigError(f"{name}: only the aiosqlite driver is installed, got {driver!r}")
        if not url.database or url.database == ":memory:" or "mode=memory" in raw:
            raise ConfigError(
                f"{name} must name a SQLite file: an in-memory database is private to one "
                "pooled connection"
            )
        url = url.set(drivername=SQLITE_DRIVER)
    else:
        raise ConfigError(f"{name} must be a sqlite:// or postgresql:// URL, got {backend!r}")
    return url.render_as_string(hide_password=False)


def _redact(raw: str) -> str:
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", raw)
