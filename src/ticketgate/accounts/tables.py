"""The accounts tables, on their own MetaData so the shared `Database` can register them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    # As typed at registration, for display; uniqueness and login use `username_key`.
    Column("username", String(64), nullable=False),
    # Case-folded, so "Alice" and "alice" cannot be two different people.
    Column("username_key", String(64), nullable=False, unique=True),
    Column("password_hash", String(512), nullable=False),
    Column("roles", String(256), nullable=False),  # space-separated
    Column("created_at", DateTime(timezone=True), nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    # One row per slot; the unique slot is what makes concurrent first starts converge.
    Column("slot", String(32), nullable=False, unique=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; everything we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
