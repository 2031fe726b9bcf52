"""The shared SQL layer on SQLite and PostgreSQL; also the database helpers of the accounts tests.

PostgreSQL tests run in a schema of their own (dropped afterwards), so parallel runs on one
server never see each other's tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from tests.required import backend_unavailable
from ticketgate.accounts.keys import generate_private_pem
from ticketgate.accounts.settings import AccountSettings
from ticketgate.database import Database
from ticketgate.database.settings import DatabaseSettings, normalize_database_url
from ticketgate.envparse import ConfigError

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")
# Cheap argon2 parameters: the tests check behaviour, not hashing cost.
FAST_HASHING = AccountSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)

_postgres_status: list[str] = []  # [] unknown, [""] reachable, [reason] unreachable
_test_key: list[bytes] = []


def shared_key_pem() -> bytes:
    """One RSA key for tests that configure a key, so they skip 2048-bit generation."""
    if not _test_key:
        _test_key.append(generate_private_pem())
    return _test_key[0]


async def postgres_unreachable() -> str:
    """Why PostgreSQL cannot be used ("" when it can); probed once per session."""
    if not _postgres_status:
        probe = Database(TEST_DATABASE_URL, pool_size=1, connect_timeout_sec=3)
        try:
            async with probe.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            _postgres_status.append("")
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            _postgres_status.append(
                f"PostgreSQL unreachable at {probe.display_url} ({exc}); set TEST_DATABASE_URL"
            )
        finally:
            await probe.dispose()
    return _postgres_status[0]


class DatabaseFactory:
    """Opens any number of `Database` objects on one fresh database, as separate processes
    would, and removes the database afterwards."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp_path}/data/ticketgate.db"
            self.schema: str | None = None
        else:
            self.url = TEST_DATABASE_URL
            self.schema = f"tg_accounts_{uuid.uuid4().hex[:16]}"
        self.opened: list[Database] = []

    def open(self) -> Database:
        database = Database(self.url, schema=self.schema, pool_size=5)
        self.opened.append(database)
        return database

    async def close(self) -> None:
        for database in self.opened:
            await database.dispose()
        if self.schema is not None:
            cleaner = Database(self.url, schema=self.schema, pool_size=1)
            await cleaner.drop_schema()
            await cleaner.dispose()


@contextlib.asynccontextmanager
async def database_factory(backend: str, tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    if backend == "postgresql":
        reason = await postgres_unreachable()
        if reason:
            backend_unavailable(reason)
    factory = DatabaseFactory(backend, tmp_path)
    try:
        yield factory
    finally:
        await factory.close()


@pytest.fixture(params=BACKENDS)
async def databases(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DatabaseFactory]:
    async with database_factory(request.param, tmp_path) as factory:
        yield factory


# --- the tests of this module -------------------------------------------------------------

counters_metadata = MetaData()
counters = Table(
    "test_counters",
    counters_metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/tg", "postgresql+asyncpg://u:p@db:5432/tg"),
        ("postgresql://u@db/tg", "postgresql+asyncpg://u@db/tg"),
        ("postgresql+asyncpg://u@db/tg", "postgresql+asyncpg://u@db/tg"),
        ("postgres://u@db/tg?sslmode=require", "postgresql+asyncpg://u@db/tg?ssl=require"),
        ("sqlite:///var/tg.db", "sqlite+aiosqlite:///var/tg.db"),
        ("sqlite:////abs/tg.db", "sqlite+aiosqlite:////abs/tg.db"),
        ("sqlite+aiosqlite:///tg.db", "sqlite+aiosqlite:///tg.db"),
    ],
)
def test_database_urls_are_rewritten_to_the_async_drivers(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("mysql://u@db/tg", "sqlite:// or postgresql://"),
        ("postgresql+psycopg2://u@db/tg", "asyncpg"),
        ("postgresql://u@db", "must name a database"),
        ("sqlite://", "must name a SQLite file"),
        ("sqlite:///:memory:", "must name a SQLite file"),
        ("not a url", "not a database URL"),
    ],
)
def test_unusable_database_urls_are_refused_with_a_reason(given: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        normalize_database_url(given)


def test_a_refused_url_never_echoes_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        normalize_database_url("mysql://admin:hunter2secret@db/tg")
    assert "hunter2secret" not in str(caught.value)


def test_default_database_is_a_sqlite_file_under_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = DatabaseSettings.from_env({})
    assert settings.url == f"sqlite+aiosqlite:///{tmp_path}/var/ticketgate.db"
    custom = DatabaseSettings.from_env({"DATABASE_PATH": "data/x.db", "DATABASE_POOL_SIZE": "3"})
    assert custom.url == f"sqlite+aiosqlite:///{tmp_path}/data/x.db"
    assert custom.pool_size == 3
    both = DatabaseSettings.from_env(
        {"DATABASE_PATH": "data/x.db", "DATABASE_URL": "postgres://u@db/tg"}
    )
    assert both.url == "postgresql+asyncpg://u@db/tg"
    with pytest.raises(ConfigError, match="DATABASE_POOL_SIZE"):
        DatabaseSettings.from_env({"DATABASE_POOL_SIZE": "0"})


async def test_sqlite_folder_is_created_and_the_file_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "tg.db"
    database = Database(f"sqlite:///{path}")
    database.register(counters_metadata)
    await database.create_all()
    async with database.read() as conn:
        mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
        timeout = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
    await database.dispose()
    assert path.exists()
    assert mode == "wal"
    assert timeout == 5000
    with contextlib.closing(sqlite3.connect(path)) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert "test_counters" in tables


async def test_create_all_is_idempotent_and_safe_when_processes_start_together(
    databases: DatabaseFactory,
) -> None:
    instances = [databases.open() for _ in range(4)]
    for database in instances:
        database.register(counters_metadata)
    await asyncio.gather(*(database.create_all() for database in instances))
    await instances[0].create_all()
    async with instances[1].write() as conn:
        await conn.execute(counters.insert().values(name="a", value=1))
    async with instances[2].read() as conn:
        assert (await conn.execute(select(counters.c.value))).scalar_one() == 1


async def test_write_transactions_roll_back_on_error(databases: DatabaseFactory) -> None:
    database = databases.open()
    database.register(counters_metadata)
    await database.create_all()

    async def insert_then_fail() -> None:
        async with database.write() as conn:
            await conn.execute(counters.insert().values(name="a", value=1))
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await insert_then_fail()
    async with database.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(counters))).scalar_one() == 0


async def test_insert_if_absent_keeps_the_first_row(databases: DatabaseFactory) -> None:
    database = databases.open()
    database.register(counters_metadata)
    await database.create_all()
    for value in (1, 2):
        async with database.write() as conn:
            await conn.execute(
                database.insert(counters).values(name="a", value=value).on_conflict_do_nothing()
            )
    async with database.read() as conn:
        assert (await conn.execute(select(counters.c.value))).scalar_one() == 1


async def test_sqlite_read_then_write_transactions_from_two_processes_lose_no_update(
    tmp_path: Path,
) -> None:
    """BEGIN IMMEDIATE: a deferred BEGIN would fail these with 'database is locked'."""
    async with database_factory("sqlite", tmp_path) as factory:
        first, second = factory.open(), factory.open()
        for database in (first, second):
            database.register(counters_metadata)
        await first.create_all()
        async with first.write() as conn:
            await conn.execute(counters.insert().values(name="n", value=0))

        async def increment(database: Database) -> None:
            async with database.write() as conn:
                value = (await conn.execute(select(counters.c.value))).scalar_one()
                await asyncio.sleep(0.001)  # let the other process try to interleave
                await conn.execute(update(counters).values(value=value + 1))

        await asyncio.gather(*(increment(db) for _ in range(15) for db in (first, second)))
        async with first.read() as conn:
            assert (await conn.execute(select(counters.c.value))).scalar_one() == 30


async def test_libpq_sslmode_in_the_url_reaches_the_driver(tmp_path: Path) -> None:
    if reason := await postgres_unreachable():
        backend_unavailable(reason)
    separator = "&" if "?" in TEST_DATABASE_URL else "?"
    database = Database(f"{TEST_DATABASE_URL}{separator}sslmode=disable", pool_size=1)
    assert await database.ping() is True
    await database.dispose()


async def test_ping_reports_an_unreachable_server(databases: DatabaseFactory) -> None:
    assert await databases.open().ping() is True
    unreachable = Database("postgresql://postgres@127.0.0.1:1/test", connect_timeout_sec=1)
    assert await unreachable.ping() is False
    await unreachable.dispose()


def test_registering_two_features_with_one_table_name_is_refused(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/x.db")
    database.register(counters_metadata)
    database.register(counters_metadata)  # same feature again: no-op
    clash = MetaData()
    Table("test_counters", clash, Column("id", Integer, primary_key=True))
    with pytest.raises(ValueError, match="registered twice"):
        database.register(clash)


def test_a_schema_is_refused_on_sqlite_and_must_be_a_plain_identifier(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only supported on PostgreSQL"):
        Database(f"sqlite:///{tmp_path}/x.db", schema="s")
    with pytest.raises(ValueError, match="schema must match"):
        Database("postgresql://u@db/tg", schema='x"; DROP TABLE users; --')
