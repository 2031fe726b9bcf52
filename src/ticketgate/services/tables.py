"""The booking tables, one MetaData per service so each can live in its own database.

Times are integer Unix milliseconds rather than DATETIME columns: the hold conditions
(`hold_expires_ms < :now`) then compare plain integers on SQLite and PostgreSQL alike,
with no driver-specific timezone handling in the hot UPDATEs.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# --- inventory ---------------------------------------------------------------------------

inventory_metadata = MetaData()

SEAT_AVAILABLE = "AVAILABLE"
SEAT_HELD = "HELD"
SEAT_SOLD = "SOLD"

seats = Table(
    "inventory_seats",
    inventory_metadata,
    Column("event_id", String(64), primary_key=True),
    Column("seat_id", String(32), primary_key=True),
    Column("section", String(32), nullable=False),
    Column("row", String(8), nullable=False),
    Column("number", Integer, nullable=False),
    # Best-available order: front rows first, then seat number.
    Column("rank", Integer, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("hold_id", String(64), nullable=True),
    Column("hold_expires_ms", BigInteger, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_inventory_seats_event_status_rank", "event_id", "status", "rank"),
    Index("ix_inventory_seats_hold", "hold_id"),
)

HOLD_HELD = "HELD"
HOLD_COMMITTED = "COMMITTED"
HOLD_RELEASED = "RELEASED"

# One row per hold: what it asked for (so a retried ReserveSeat is recognised), how many
# seats it got (so a commit can tell that none was lost to another hold after expiry).
holds = Table(
    "inventory_holds",
    inventory_metadata,
    Column("hold_id", String(64), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("request", String(1024), nullable=False),
    Column("seat_count", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    # The per-user seat cap counts a user's live holds of an event in every hold.
    Index("ix_inventory_holds_event_user", "event_id", "user_id"),
)

# --- reservation -------------------------------------------------------------------------

reservation_metadata = MetaData()

# Stored statuses are the contract's names; CONFIRMING is internal (reported as HOLD): the
# reservation is claimed for confirmation but its seats are not committed yet.
RESERVATION_HOLD = "HOLD"
RESERVATION_CONFIRMING = "CONFIRMING"
RESERVATION_CONFIRMED = "CONFIRMED"
RESERVATION_CANCELLED = "CANCELLED"
RESERVATION_EXPIRED = "EXPIRED"
RESERVATION_FAILED = "FAILED"

reservations = Table(
    "reservations",
    reservation_metadata,
    Column("id", String(40), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("reservation_token", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("seats", Text, nullable=False),  # JSON list of the seats held, with prices
    Column("total_amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("hold_expires_ms", BigInteger, nullable=True),
    Column("payment_intent_id", String(64), nullable=True),
    Column("order_id", String(40), nullable=True),
    Column("error_code", Integer, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    # NULL keys never collide, so calls without a key are simply not deduplicated.
    UniqueConstraint("user_id", "idempotency_key", name="uq_reservations_user_key"),
    Index("ix_reservations_status_expiry", "status", "hold_expires_ms"),
)
# A reservation token buys at most one reservation that got seats, whatever the gateway does.
Index(
    "uq_reservations_token",
    reservations.c.reservation_token,
    unique=True,
    postgresql_where=reservations.c.status != RESERVATION_FAILED,
    sqlite_where=reservations.c.status != RESERVATION_FAILED,
)

# --- payment -----------------------------------------------------------------------------

payment_metadata = MetaData()

WEBHOOK_NONE = "NONE"
WEBHOOK_PENDING = "PENDING"
WEBHOOK_DELIVERED = "DELIVERED"
WEBHOOK_FAILED = "FAILED"

payment_intents = Table(
    "payment_intents",
    payment_metadata,
    Column("id", String(40), primary_key=True),
    Column("reservation_id", String(64), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("method", String(32), nullable=False),
    Column("scenario", String(16), nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    # Decided at creation (RANDOM included), applied at `due_ms`: a restart changes nothing.
    Column("outcome", String(16), nullable=False),
    Column("due_ms", BigInteger, nullable=False),
    Column("webhook_url", Text, nullable=False),
    Column("webhook_state", String(16), nullable=False),
    Column("webhook_attempts", Integer, nullable=False),
    Column("webhook_next_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    UniqueConstraint("user_id", "idempotency_key", name="uq_payment_intents_user_key"),
    Index("ix_payment_intents_status_due", "status", "due_ms"),
    Index("ix_payment_intents_webhook", "webhook_state", "webhook_next_ms"),
)
