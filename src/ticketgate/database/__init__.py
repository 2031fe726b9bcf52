"""The SQL layer: one async engine per process, tables created at start, SQLite or PostgreSQL.

A self-contained install must run with nothing but a file on disk, and a production install on
PostgreSQL, with the same code. SQLAlchemy Core (no ORM) keeps the SQL explicit: accounts now,
inventory and reservations later, each feature defining its tables on its own `MetaData` and
registering it with the shared `Database`.

SQLite needs care to behave under concurrency: WAL so readers never block the writer, a busy
timeout so writers queue instead of failing, and explicit `BEGIN` statements (the sqlite3
driver's legacy mode would otherwise skip BEGIN before SELECTs and DDL). `Database.write()`
starts `BEGIN IMMEDIATE` on SQLite: a transaction that reads then writes holds the write lock
from its first statement, so it can never fail to upgrade its lock mid-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from ticketgate.database.settings import SQLITE_DRIVER, DatabaseSettings, normalize_database_url
from ticketgate.envparse import ConfigError

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Any constant works; it only has to be the same in every process of every release.
_DDL_LOCK_KEY = 0x7469636B6574  # "ticket"
_BEGIN_OPTION = "ticketgate_sqlite_begin"
_CREATE_ATTEMPTS = 5


class Database:
    """The engine plus the tables every feature registered; safe to share across tasks.

    Construction opens no connection (so the app can be built before the event loop runs;
    it only makes the SQLite file's folder);
    `create_all()` at start-up creates whatever is missing and is safe to run from several
    processes at once.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = 10,
        busy_timeout_ms: int = 5_000,
        connect_timeout_sec: float = 5.0,
    ) -> None:
        normalized = normalize_database_url(url, "database URL")
        if not normalized:
            raise ConfigError("database URL is empty")
        self.url = make_url(normalized)
        self.dialect = "sqlite" if self.url.drivername == SQLITE_DRIVER else "postgresql"
        if schema is not None:
            if self.dialect != "postgresql":
                raise ValueError("a schema is only supported on PostgreSQL")
            if _SCHEMA_NAME.fullmatch(schema) is None:
                raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}, got {schema!r}")
        self.schema = schema
        self.metadata = MetaData()
        self._registered: list[MetaData] = []
        self.engine = self._build_engine(pool_size, busy_timeout_ms, connect_timeout_sec)
        # Same pool, but transactions opened through it take SQLite's write lock up front.
        self._write_engine = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> Database:
        return cls(
            settings.url,
            pool_size=settings.pool_size,
            busy_timeout_ms=settings.busy_timeout_ms,
            connect_timeout_sec=settings.connect_timeout_sec,
        )

    @property
    def display_url(self) -> str:
        """The URL with the password masked, fit for logs and banners."""
        return self.url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def _build_engine(
        self, pool_size: int, busy_timeout_ms: int, connect_timeout_sec: float
    ) -> AsyncEngine:
        if self.dialect == "sqlite":
            path = self.url.database or ""
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"timeout": busy_timeout_ms / 1000},
            )
            _install_sqlite_hooks(engine, busy_timeout_ms)
            return engine
        connect_args: dict[str, Any] = {"timeout": connect_timeout_sec}
        if self.schema is not None:
            connect_args["server_settings"] = {"search_path": self.schema}
        return create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args=connect_args,
        )

    def register(self, metadata: MetaData) -> None:
        """Add a feature's tables; registering the same MetaData twice is a no-op.

        Features keep querying through their own module-level `Table` objects; `self.metadata`
        is the merged copy that `create_all` works from, so foreign keys may cross features.
        """
        if any(existing is metadata for existing in self._registered):
            return
        for table in metadata.tables.values():
            if table.name in self.metadata.tables:
                raise ValueError(f"table {table.name!r} is registered twice")
        self._registered.append(metadata)
        for table in metadata.tables.values():
            table.to_metadata(self.metadata)

    def insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """The dialect's INSERT, which offers `on_conflict_do_nothing()` / `_do_update()`.

        Both dialects spell insert-if-absent the same way, so callers stay portable.
        """
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def create_all(self) -> None:
        """Create missing tables (and the schema, when one is set), idempotently.

        Concurrent first starts (several workers or pods) serialise on a PostgreSQL advisory
        lock, or on SQLite's write lock, so no two of them race through CREATE TABLE.
        """
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                async with self.write() as conn:
                    if self.dialect == "postgresql":
                        await conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK_KEY}
                        )
                        if self.schema is not None:
                            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                    await conn.run_sync(self.metadata.create_all, checkfirst=True)
                return
            except OperationalError as exc:
                # Several processes opening a brand-new SQLite file at once: the one switching
                # it to WAL can make the others' first statement fail with "database is
                # locked" without the busy timeout being consulted. Seen in tests (about one
                # run in ten); a short wait and a retry is all it takes.
                if not self.is_sqlite or "locked" not in str(exc) or attempt == _CREATE_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * attempt)

    async def drop_schema(self) -> None:
        """Remove this instance's PostgreSQL schema and everything in it (test clean-up)."""
        if self.schema is None:
            raise ValueError("drop_schema needs a schema")
        async with self.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for reads (and writes that need no read-before-write guarantee)."""
        async with self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that will write: BEGIN IMMEDIATE on SQLite, a plain BEGIN elsewhere.

        Committed on normal exit, rolled back on an exception. On SQLite the writers of this
        process queue on an asyncio lock first: SQLite has one writer at a time, and waiting
        in the event loop is fair and cheap, where waiting on the file lock (busy timeout)
        polls from driver threads and fails outright once a loaded loop stretches the holder's
        transaction past the timeout. Other processes still meet on the file lock. Never nest
        write() inside write().
        """
        async with self._writer_gate(), self._write_engine.begin() as conn:
            yield conn

    def _writer_gate(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if not self.is_sqlite:
            return contextlib.nullcontext()
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate[0] is not loop:
            self._gate = (loop, asyncio.Lock())
        return self._gate[1]

    async def ping(self) -> bool:
        """True when a connection can be had and answers; for readiness probes."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError, TimeoutError):
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the driver; `_on_begin` below emits it for every transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
