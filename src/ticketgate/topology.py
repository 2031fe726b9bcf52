"""What of a configuration lives in one process only, and the start-up rules built on it.

A gateway replica is stateless only when everything a second replica needs is shared (queue,
idempotency keys and rate limits in Redis; accounts and bookings in PostgreSQL; the booking
services out of process) or derived from configuration (secrets, the signing key). Each part
that is not is a *single-process component*: right for one process, wrong for a fleet, where
two replicas would each sell seat C-5 or refuse each other's login tokens. Outside development
the CLI names every such component at start; with `SERVER_REPLICAS_EXPECTED` > 1 any of them
stops the start instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ticketgate.envparse import ConfigError

if TYPE_CHECKING:
    from ticketgate.config import Settings

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
